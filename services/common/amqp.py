"""The one adapter to RabbitMQ: confirmed publishing and bounded consuming.

Publishing always waits for the broker's confirm (persistent message, quorum
queue), so a caller that gets no exception may promise the message is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pydantic import BaseModel

from services.common.envelope import ENVELOPE_HEADER, encode
from services.common.topology import Topology

if TYPE_CHECKING:
    from services.common.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]
Output = tuple[str, BaseModel, str]  # queue, envelope, message id


# What a broker operation raises when the connection or channel is in trouble.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    RuntimeError,
)


class BrokerUnavailable(Exception):
    """The broker could not confirm a publish; nothing may be promised."""


class Broker:
    """A robust connection, one confirming channel, and the declared topology."""

    def __init__(
        self,
        url: str,
        topology: Topology,
        *,
        prefetch: int = 32,
        publish_timeout: float = 15.0,
        reconnect_interval: float = 1.0,
    ) -> None:
        self._url = url
        self.topology = topology
        self._prefetch = prefetch
        self._publish_timeout = publish_timeout
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True

    @classmethod
    def from_settings(cls, settings: Settings, topology: Topology | None = None) -> Broker:
        """The broker of ``settings`` (``topology`` defaults to the shared one)."""
        return cls(
            settings.amqp_url.get_secret_value(),
            topology if topology is not None else Topology.from_settings(settings),
            prefetch=settings.amqp_prefetch,
        )

    @property
    def ready(self) -> bool:
        """Connected, with an open channel: able to publish and consume now."""
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def connect(self) -> None:
        """Connect once, declare the topology; raises when the broker is unreachable."""
        connection = await aio_pika.connect_robust(
            self._url, reconnect_interval=self._reconnect_interval
        )
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self._prefetch)
        for spec in self.topology.queues():
            await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        self._connection = connection
        self._channel = channel

    async def connect_forever(self) -> None:
        """Retry :meth:`connect` until it succeeds (services start before the broker)."""
        while True:
            try:
                await self.connect()
                return
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                log.warning(
                    "broker unreachable, retrying",
                    extra={"event": "broker_retry", "error": str(exc)},
                )
                await asyncio.sleep(self._reconnect_interval)

    async def publish(
        self,
        queue: str,
        body: bytes,
        envelope: BaseModel,
        *,
        message_id: str,
        expiration: float | None = None,
    ) -> None:
        """Publish persistently and wait for the broker's confirm."""
        if not self.ready or self._channel is None:
            raise BrokerUnavailable("not connected to the broker")
        message = aio_pika.Message(
            body,
            headers={ENVELOPE_HEADER: encode(envelope)},
            message_id=message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="message/rfc822",
            expiration=expiration,
        )
        try:
            confirmation = await self._channel.default_exchange.publish(
                message, routing_key=queue, mandatory=True, timeout=self._publish_timeout
            )
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"publish to {queue} not confirmed: {exc}") from exc
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise BrokerUnavailable(f"publish to {queue} not confirmed: {confirmation!r}")

    async def publish_all(self, body: bytes, outputs: Sequence[Output]) -> None:
        """Publish one body to several queues at once; raise the first failure.

        Every publish has settled when this returns or raises, so a caller that
        then acknowledges (or requeues) its input never races its own outputs.
        """
        results = await asyncio.gather(
            *(
                self.publish(queue, body, envelope, message_id=message_id)
                for queue, envelope, message_id in outputs
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def consume(self, queue: str, handler: Handler) -> None:
        """Start consuming ``queue``; each message runs ``handler`` in its own task.

        The handler acks or rejects the message itself. An exception escaping
        it returns the message to the queue (the quorum queue counts the
        redelivery, and parks the job after the delivery limit).
        """
        if self._channel is None:
            raise BrokerUnavailable("not connected to the broker")
        declared = await self._channel.get_queue(queue, ensure=False)

        async def on_message(message: AbstractIncomingMessage) -> None:
            if not self._accepting:
                # Draining: hand the message straight back for another consumer.
                await message.nack(requeue=True)
                return
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            self._idle.clear()
            try:
                await handler(message)
            except Exception:
                log.exception(
                    "handler failed",
                    extra={"event": "handler_error", "queue_id": message.message_id or ""},
                )
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
            finally:
                self._in_flight.discard(task)
                if not self._in_flight:
                    self._idle.set()

        tag = await declared.consume(on_message)
        self._consumers.append((declared, tag))

    async def drain(self, grace: float = 25.0) -> None:
        """Stop taking work and wait for in-flight handlers (SIGTERM path)."""
        self._accepting = False
        for queue, tag in self._consumers:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        self._consumers.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = None
        self._channel = None

    async def queue_depth(self, queue: str) -> tuple[int, int]:
        """(messages ready, consumers) of a queue, by a passive declare.

        On a short-lived channel of its own: the broker closes the channel of a
        passive declare that finds no queue (404), and that must not be the one
        the consumers and publishes use. (Nor RobustChannel.declare_queue: for a
        queue it declared before it returns the cached counts of that declare.)
        """
        if self._connection is None or self._connection.is_closed:
            raise BrokerUnavailable("not connected to the broker")
        async with asyncio.timeout(self._publish_timeout):
            channel = await self._connection.channel(publisher_confirms=False)
            try:
                underlay = await channel.get_underlay_channel()
                result: Any = await underlay.queue_declare(queue, passive=True)
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
        return int(result.message_count or 0), int(result.consumer_count or 0)
