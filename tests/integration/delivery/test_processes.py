"""``staffetta delivery`` as real processes: several consumers, and SIGTERM draining."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from services.common.amqp import Broker
from services.common.envelope import DeliveryJob, new_queue_id
from services.delivery.throttle import DeliveryTopology
from tests.integration.delivery.conftest import AMQP_URL, BODY, HOSTNAME
from tests.support.amqp import delete_queues
from tests.support.dns_server import DnsServer
from tests.support.mx_server import MxServers
from tests.support.stack import free_port

pytestmark = pytest.mark.broker

Spawn = Callable[[], subprocess.Popen[bytes]]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def topology() -> DeliveryTopology:
    return DeliveryTopology(f"test-{os.urandom(4).hex()}", (1.0,))


@pytest.fixture
async def channel(topology: DeliveryTopology) -> AsyncIterator[AbstractChannel]:
    """The test's own channel; deletes the queues afterwards."""
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel()
    yield channel
    await delete_queues(connection, (spec.name for spec in topology.queues()))
    await connection.close()


@pytest.fixture
async def broker(topology: DeliveryTopology, channel: AbstractChannel) -> AsyncIterator[Broker]:
    broker = Broker(AMQP_URL, topology)
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
def spawn(
    topology: DeliveryTopology, dns_server: DnsServer, mx: MxServers, tmp_path: Path
) -> Iterator[Spawn]:
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        port = free_port()
        env = {
            **os.environ,
            "STAFFETTA_AMQP_URL": AMQP_URL,
            "STAFFETTA_AMQP_PREFIX": topology.prefix,
            "STAFFETTA_HOSTNAME": HOSTNAME,
            "STAFFETTA_DNS_NAMESERVERS": dns_server.address,
            "STAFFETTA_REMOTE_SMTP_PORT": str(mx.port),
            "STAFFETTA_RETRY_SCHEDULE": "1s",
            "STAFFETTA_HTTP_LISTEN": f"127.0.0.1:{port}",
            "STAFFETTA_MAILDIR_ROOT": str(tmp_path / "mail"),
        }
        log = (tmp_path / f"delivery-{len(processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "delivery"], env=env, stderr=log
        )
        log.close()
        processes.append(process)
        deadline = time.monotonic() + 30
        while not _ready(port):
            assert process.poll() is None, "the delivery process died at start"
            assert time.monotonic() < deadline, "the delivery process never got ready"
            time.sleep(0.05)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _job(recipient: str) -> DeliveryJob:
    return DeliveryJob(
        queue_id=new_queue_id(),
        sender="s@src.test",
        recipients=[recipient],
        route="relay",
        domain="example.test",
        accepted_at=time.time(),
    )


async def _submit(broker: Broker, job: DeliveryJob) -> None:
    await broker.publish(broker.topology.delivery, BODY, job, message_id=job.queue_id)


async def test_several_processes_share_the_queue_and_deliver_each_job_once(
    spawn: Spawn, broker: Broker, mx: MxServers
) -> None:
    mx[0].slow_data(0.2)
    await asyncio.gather(asyncio.to_thread(spawn), asyncio.to_thread(spawn))
    recipients = [f"r{index}@example.test" for index in range(12)]
    for recipient in recipients:
        await _submit(broker, _job(recipient))
    received = await mx.messages_received(12, within=30)
    assert sorted(r for message in received for r in message.recipients) == sorted(recipients)
    assert len({message.peer[1] for message in received}) >= 2  # more than one session
    assert mx[0].max_parallel_data >= 2


async def test_sigterm_finishes_the_delivery_in_flight_and_exits_0(
    spawn: Spawn, broker: Broker, channel: AbstractChannel, mx: MxServers
) -> None:
    mx[0].slow_data(2.0)
    process = await asyncio.to_thread(spawn)
    await _submit(broker, _job("a@example.test"))
    await asyncio.to_thread(mx[0].data_started.wait, 15)
    process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, 30)
    assert code == 0
    assert [m.recipients for m in mx[0].messages] == [["a@example.test"]]
    # The job was acknowledged before the exit: nothing went back to the queue.
    queue = await channel.get_queue(broker.topology.delivery, ensure=False)
    assert await queue.get(no_ack=False, fail=False) is None
