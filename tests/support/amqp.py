"""The test's own side of RabbitMQ: unique prefixes, queue clean-up, collecting and counting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterable

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from services.common.envelope import DeliveryJob, new_queue_id

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def unique_prefix() -> str:
    """A queue prefix no other test (or engineer) uses: ``test-<uuid8>``."""
    return f"test-{uuid.uuid4().hex[:8]}"


async def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll a condition that no awaitable event signals, with a hard deadline."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.02)


async def delete_queues(connection: AbstractConnection, names: Iterable[str]) -> None:
    """Delete the named (quorum) queues, full or not; one channel each, as a failed
    delete closes its channel. Queues that were never declared are skipped."""
    for name in names:
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(name, if_unused=False, if_empty=False)
        with contextlib.suppress(Exception):
            await channel.close()


async def delete_queues_at(url: str, names: Iterable[str]) -> None:
    """``delete_queues`` over a connection of its own."""
    connection = await aio_pika.connect(url)
    async with connection:
        await delete_queues(connection, names)


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


async def collect(connection: AbstractConnection, queue: str) -> Collector:
    collector = Collector()
    channel = await connection.channel()
    declared = await channel.get_queue(queue, ensure=True)
    await declared.consume(collector.on_message)
    return collector


async def message_count(connection: AbstractConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


def delivery_job() -> DeliveryJob:
    """A relay job with a fresh queue id, for tests that only need something to send."""
    return DeliveryJob(
        queue_id=new_queue_id(),
        sender="s@src.test",
        recipients=["a@example.test"],
        route="relay",
        domain="example.test",
        accepted_at=0.0,
    )
