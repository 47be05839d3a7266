"""Fixtures for the bounce service against the real RabbitMQ, under a unique queue prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from services.common.amqp import Broker
from services.common.settings import Settings, load_settings
from services.common.topology import Topology

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def service_settings(prefix: str, lifetime: str = "5d", local_domains: str = "") -> Settings:
    env = {
        "STAFFETTA_AMQP_URL": AMQP_URL,
        "STAFFETTA_AMQP_PREFIX": prefix,
        "STAFFETTA_HOSTNAME": "mx.staffetta.test",
        "STAFFETTA_RETRY_SCHEDULE": "1s,2s",
        "STAFFETTA_DNS_NAMESERVERS": "127.0.0.1:53",
        "STAFFETTA_HTTP_LISTEN": "127.0.0.1:0",
        "STAFFETTA_MAX_QUEUE_LIFETIME": lifetime,
        "STAFFETTA_LOCAL_DOMAINS": local_domains,
    }
    return load_settings(env)


async def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll a condition that no awaitable event signals, with a hard deadline."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.02)


class Collector:
    """Consumes one queue into an asyncio.Queue (acking), so tests can await messages."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        await self.messages.put(message)

    async def next(self, seconds: float = 10.0) -> AbstractIncomingMessage:
        return await asyncio.wait_for(self.messages.get(), seconds)

    async def take(self, count: int, seconds: float = 10.0) -> list[AbstractIncomingMessage]:
        return [await self.next(seconds) for _ in range(count)]


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def amqp(prefix: str) -> AsyncIterator[AbstractRobustConnection]:
    """A plain connection for the test's side; deletes every queue of the prefix afterwards."""
    connection = await aio_pika.connect_robust(AMQP_URL)
    yield connection
    topology = Topology(prefix, (1.0, 2.0))
    for spec in topology.queues():
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(spec.name, if_unused=False, if_empty=False)
        with contextlib.suppress(Exception):
            await channel.close()
    await connection.close()


@pytest.fixture
async def publisher(prefix: str, amqp: AbstractRobustConnection) -> AsyncIterator[Broker]:
    """The test plays the ingress: a confirmed publisher on the same topology."""
    broker = Broker(AMQP_URL, Topology(prefix, (1.0, 2.0)))
    await broker.connect()
    yield broker
    await broker.close()


async def collect(connection: AbstractRobustConnection, queue: str) -> Collector:
    collector = Collector()
    channel = await connection.channel()
    declared = await channel.get_queue(queue, ensure=True)
    await declared.consume(collector.on_message)
    return collector


async def message_count(connection: AbstractRobustConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()
