"""The wiring every consuming service shares: one queue, one handler, a clean stop.

A :class:`QueueConsumer` connects in the background (services start before the
broker; ``/readyz`` says 503 meanwhile), consumes one queue with one handler,
starts optional background jobs once consuming (queue metrics, reapers), and on
stop cancels them, drains in-flight handlers, runs the service's own clean-ups
and closes the broker. :class:`ConsumerService` is the ``Service`` built on it.

Helpers for handlers live here too, for the behaviour the workers share:
:func:`decode_or_park` (with :func:`park_unreadable`) and :func:`requeue_after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.common.amqp import Broker, Handler, InboundMessage
from services.common.envelope import ModelT, decode

log = logging.getLogger(__name__)

BackgroundJob = Callable[[], Coroutine[Any, Any, None]]
CleanUp = Callable[[], Awaitable[None]]


class QueueConsumer:
    """Consume ``queue`` with ``handler`` on ``broker``, connected in the background."""

    def __init__(
        self,
        broker: Broker,
        queue: str,
        handler: Handler,
        *,
        background: Sequence[BackgroundJob] = (),
        cleanups: Sequence[CleanUp] = (),
    ) -> None:
        self.broker = broker
        self.queue = queue
        self._handler = handler
        self._background = tuple(background)  # started once consuming, cancelled on stop
        self._cleanups = tuple(cleanups)  # run after draining, before the broker closes
        self._consuming = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> bool:
        return self._consuming and self.broker.ready

    async def start(self) -> None:
        starting = asyncio.create_task(self._connect_and_consume())
        starting.add_done_callback(_report_failure)
        self._tasks.append(starting)

    async def _connect_and_consume(self) -> None:
        await self.broker.connect_forever()
        await self.broker.consume(self.queue, self._handler)
        self._consuming = True
        log.info("consuming", extra={"event": "consuming", "queue": self.queue})
        for job in self._background:
            task = asyncio.create_task(job())
            task.add_done_callback(_report_crash)
            self._tasks.append(task)

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks.clear()
        self._consuming = False
        await self.broker.drain()
        for cleanup in self._cleanups:
            await cleanup()
        await self.broker.close()


async def cancel_all(tasks: Iterable[asyncio.Task[None]], retry: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    A task that swallowed its cancellation (aio-pika can, when it arrives inside a
    channel open or close) is cancelled again every ``retry`` seconds, so a stop
    never hangs on it. Failures are reported by the tasks' done callbacks.
    """
    running = {task for task in tasks if not task.done()}
    while running:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=retry)


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "could not start consuming",
            extra={"event": "start_failed", "error": str(task.exception())},
        )


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "background job failed",
            extra={"event": "background_failed", "error": str(task.exception())},
        )


class ConsumerService:
    """A ``Service`` whose work is one :class:`QueueConsumer`.

    A subclass sets ``name``, and in ``__init__`` ``self.registry`` and ``self.consumer``.
    """

    name: str
    registry: CollectorRegistry
    consumer: QueueConsumer

    def is_ready(self) -> bool:
        return self.consumer.ready

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()


async def park_unreadable(message: InboundMessage, what: str, error: Exception) -> None:
    """An envelope that cannot be decoded: retrying cannot help, so reject it.

    Rejecting without requeue dead-letters it to ``PREFIX.parked``.
    """
    log.error(
        f"unreadable {what}, parked",
        extra={
            "event": "invalid_envelope",
            "queue_id": message.message_id or "",
            "error": str(error),
        },
    )
    await message.reject(requeue=False)


async def decode_or_park(model: type[ModelT], message: InboundMessage, what: str) -> ModelT | None:
    """The ``model`` envelope of ``message``, or ``None`` once an unreadable one is parked."""
    try:
        return decode(model, message.headers)
    except (ValueError, ValidationError) as exc:
        await park_unreadable(message, what, exc)
        return None


async def requeue_after(message: InboundMessage, pause: float) -> None:
    """Hand a message back after a failed publish, but only after ``pause`` seconds.

    The queue's delivery limit counts requeues, so a tight loop during a broker
    hiccup would park the message within milliseconds.
    """
    await asyncio.sleep(pause)
    with contextlib.suppress(Exception):
        await message.nack(requeue=True)
