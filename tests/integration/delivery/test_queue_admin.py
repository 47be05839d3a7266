"""``staffetta queue list|flush|delete`` and ``requeue-parked`` against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractQueue

from services.common.envelope import ENVELOPE_HEADER, DeliveryJob, new_queue_id
from services.common.topology import Topology
from services.delivery import service as service_module
from services.delivery.queue_admin import QueueAdmin, format_table
from tests.integration.delivery.conftest import (
    AMQP_URL,
    BODY,
    StartDelivery,
    defer_two,
)
from tests.support.mx_server import MxServers

pytestmark = pytest.mark.broker


async def _cli(prefix: str, *args: str, schedule: str = "1h", limit: str = "5") -> tuple[int, str]:
    env = {
        **os.environ,
        "STAFFETTA_AMQP_URL": AMQP_URL,
        "STAFFETTA_AMQP_PREFIX": prefix,
        "STAFFETTA_RETRY_SCHEDULE": schedule,
        "STAFFETTA_AMQP_DELIVERY_LIMIT": limit,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode()


async def test_list_delete_and_flush_deferred_mail(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    delivery = await start_delivery(RETRY_SCHEDULE="1h")
    first, second = await defer_two(delivery, mx)

    assert delivery.metric("staffetta_delivery_oldest_deferred_age_seconds") > 0

    code, output = await _cli(delivery.prefix, "queue", "list", "--json")
    assert code == 0, output
    listed = {entry["queue_id"]: entry for entry in map(json.loads, output.splitlines())}
    assert set(listed) == {first, second}
    assert listed[second]["recipients"] == ["b@example.test", "c@example.test"]
    assert listed[second]["queue"] == "retry.1h"
    assert listed[second]["attempts"] == 1
    assert "451 4.7.1 greylisted" in listed[second]["last_error"]
    async with QueueAdmin(AMQP_URL, delivery.topology) as admin:
        assert len(await admin.list()) == 2  # listing returned every message

    code, output = await _cli(delivery.prefix, "queue", "delete", first)
    assert (code, output.strip()) == (0, f"deleted 1 jobs of {first}")

    for server in mx.servers:
        server.clear_script()
    async with QueueAdmin(AMQP_URL, delivery.topology) as admin:
        [entry] = await admin.list()
        assert entry.queue_id == second
        assert second in format_table([entry])
        assert await admin.flush() == 1
    received = await mx.messages_received(1)
    assert received[0].recipients == ["b@example.test", "c@example.test"]
    async with QueueAdmin(AMQP_URL, delivery.topology) as admin:
        assert await admin.list() == []
    assert delivery.bounces.empty()


async def test_poison_job_is_parked_counted_and_requeued(
    start_delivery: StartDelivery, mx: MxServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "PARKED_POLL_INTERVAL", 0.2)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    topology = Topology(prefix, (1.0,), delivery_limit=2)
    job = DeliveryJob(
        queue_id=new_queue_id(),
        sender="s@src.test",
        recipients=["a@example.test"],
        route="relay",
        domain="example.test",
        accepted_at=time.time(),
    )
    async with QueueAdmin(AMQP_URL, topology) as admin:
        try:
            await admin.channel.default_exchange.publish(
                Message(
                    BODY,
                    headers={ENVELOPE_HEADER: job.model_dump_json()},
                    message_id=f"{job.queue_id}.test",
                    delivery_mode=DeliveryMode.PERSISTENT,
                ),
                routing_key=topology.delivery,
            )
            queue = await admin.channel.get_queue(topology.delivery, ensure=False)
            for _ in range(10):  # a worker dying on the job, again and again
                message = await queue.get(no_ack=False, fail=False, timeout=5)
                if message is None:
                    break
                await message.nack(requeue=True)
            parked = await admin.channel.get_queue(topology.parked, ensure=False)
            await wait_for_async(lambda: _depth(parked), 10, "the job to be parked")
            [entry] = await admin.list()
            assert (entry.queue, entry.origin, entry.queue_id) == (
                "parked",
                topology.delivery,
                job.queue_id,
            )
        except BaseException:
            for spec in topology.queues():
                await admin.channel.queue_delete(spec.name)
            raise

    delivery = await start_delivery(prefix=prefix, AMQP_DELIVERY_LIMIT="2")
    await delivery.wait_metric("staffetta_delivery_parked_jobs", 1, 10, "the parked gauge")
    code, output = await _cli(prefix, "requeue-parked", schedule="1s", limit="2")
    assert (code, output.strip()) == (0, "requeued 1 parked jobs")
    received = await mx.messages_received(1)
    assert received[0].recipients == ["a@example.test"]
    assert received[0].data == BODY
    async with QueueAdmin(AMQP_URL, topology) as admin:
        assert await admin.list() == []


async def _depth(queue: AbstractQueue) -> bool:
    declared = await queue.declare()
    return bool(declared.message_count)


async def wait_for_async(
    condition: Callable[[], Awaitable[bool]], seconds: float, what: str
) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.05)
