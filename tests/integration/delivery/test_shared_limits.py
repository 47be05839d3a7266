"""Per-destination limits shared by several delivery workers through Redis."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.integration.delivery.conftest import StartDelivery
from tests.support.mx_server import MxServers

pytestmark = pytest.mark.broker

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A unique AMQP prefix; the Redis keys made under it are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(f"staffetta:{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_concurrency_cap_holds_across_workers(
    start_delivery: StartDelivery, mx: MxServers, redis_prefix: str
) -> None:
    mx[0].slow_data(0.3)
    settings = {"REDIS_URL": REDIS_URL, "DESTINATION_CONCURRENCY": "1"}
    first = await start_delivery(prefix=redis_prefix, **settings)
    second = await start_delivery(prefix=redis_prefix, **settings)
    for index in range(4):
        await first.submit(first.job([f"r{index}@example.test"]))
    received = await mx.messages_received(4, within=30)
    assert sorted(r for m in received for r in m.recipients) == [
        f"r{index}@example.test" for index in range(4)
    ]
    assert mx[0].max_parallel_data == 1
    throttled = sum(
        worker.metric("staffetta_delivery_throttled_jobs_total", reason="concurrency")
        for worker in (first, second)
    )
    assert throttled >= 1
    client = aioredis.Redis.from_url(REDIS_URL)
    assert await client.zcard(f"staffetta:{redis_prefix}:delivery:slots:example.test") == 0
    await client.aclose()


async def test_rate_limit_holds_across_workers(
    start_delivery: StartDelivery, mx: MxServers, redis_prefix: str
) -> None:
    settings = {"REDIS_URL": REDIS_URL, "DESTINATION_RATE_LIMIT": "1/s"}
    first = await start_delivery(prefix=redis_prefix, **settings)
    await start_delivery(prefix=redis_prefix, **settings)
    for index in range(3):
        await first.submit(first.job([f"r{index}@example.test"]))
    received = await mx.messages_received(3, within=30)
    times = sorted(message.received_at for message in received)
    assert times[2] - times[0] >= 1.0  # at most one a second, whichever worker sends it


async def test_limits_fall_back_to_the_process_while_redis_is_down(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    mx[0].slow_data(0.3)
    delivery = await start_delivery(REDIS_URL=dead, DESTINATION_CONCURRENCY="1")
    for index in range(3):
        await delivery.submit(delivery.job([f"r{index}@example.test"]))
    received = await mx.messages_received(3, within=30)
    assert len(received) == 3
    assert mx[0].max_parallel_data == 1
    assert delivery.bounces.empty()
