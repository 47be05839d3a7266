"""The one adapter to RabbitMQ: confirmed publishing and bounded consuming.

Publishing always waits for the broker's confirm (persistent message, quorum
queue), so a caller that gets no exception may promise the message is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pydantic import BaseModel

from services.common import amqp_speedups  # noqa: F401  (installs the faster frame codecs)
from services.common.acks import AckBatcher
from services.common.amqp_speedups import BodyParts as BodyParts  # for publishers
from services.common.envelope import ENVELOPE_HEADER, encode
from services.common.topology import Topology

if TYPE_CHECKING:
    from services.common.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[["InboundMessage"], Awaitable[None]]
Output = tuple[str, BaseModel, str]  # queue, envelope, message id
OnDelivery = Callable[[DeliveredMessage], Coroutine[Any, Any, None]]


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


class InboundMessage:
    """A message a consumer took from a queue, and the one answer it owes the broker.

    Built straight from aiormq's delivery: aio-pika's ``IncomingMessage`` copied
    every property through a locked ``__setattr__``, about a fifth of a
    consume-and-ack's CPU, for the three fields the workers read.
    """

    __slots__ = ("_acks", "_channel", "_delivery_tag", "_settled", "body", "headers", "message_id")

    def __init__(self, delivered: DeliveredMessage, acks: AckBatcher) -> None:
        properties = delivered.header.properties
        self.body: bytes = delivered.body
        self.headers: dict[str, Any] = properties.headers or {}
        self.message_id: str | None = properties.message_id
        self._channel = delivered.channel
        self._delivery_tag: int = delivered.delivery_tag or 0
        self._acks = acks
        self._settled = False
        acks.delivered(self._delivery_tag)

    def _settle(self) -> None:
        # A second answer for one delivery tag would make the broker close the channel.
        if self._settled:
            raise RuntimeError("message already acknowledged or rejected")
        self._settled = True

    async def ack(self) -> None:
        """Done with it: the ack leaves within a few milliseconds, with others (see acks)."""
        self._settle()
        self._acks.ack(self._delivery_tag)

    async def nack(self, requeue: bool = True) -> None:
        self._settle()
        await self._channel.basic_nack(self._delivery_tag, requeue=requeue)
        self._acks.answered_alone(self._delivery_tag)

    async def reject(self, requeue: bool = False) -> None:
        self._settle()
        await self._channel.basic_reject(self._delivery_tag, requeue=requeue)
        self._acks.answered_alone(self._delivery_tag)


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
        # queue -> (its callback, the consumer tag on the current channel)
        self._consumers: dict[str, tuple[OnDelivery, str]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True
        self._acks: AckBatcher | None = None  # of the channel the consumers are on

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
        # Consumers are ours, not aio-pika's: the reopened channel gets them back here.
        channel.reopen_callbacks.add(self._resume_consumers)
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
        body: bytes | BodyParts,
        envelope: BaseModel,
        *,
        message_id: str,
        expiration: float | None = None,
    ) -> None:
        """Publish persistently and wait for the broker's confirm."""
        if not self.ready or self._channel is None:
            raise BrokerUnavailable("not connected to the broker")
        # The properties aio-pika's Message(...) would send, without building one.
        properties = Basic.Properties(
            content_type="message/rfc822",
            delivery_mode=2,  # persistent
            priority=0,
            expiration=None if expiration is None else str(int(expiration * 1000)),
            headers={ENVELOPE_HEADER: encode(envelope)},
            message_id=message_id,
        )
        try:
            async with asyncio.timeout(self._publish_timeout):
                channel = await self._channel.get_underlay_channel()
                confirmation = await channel.basic_publish(
                    # A BodyParts is cut into frames by amqp_speedups' _split_body.
                    body,  # type: ignore[arg-type]
                    routing_key=queue,
                    properties=properties,
                    mandatory=True,
                )
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"publish to {queue} not confirmed: {exc}") from exc
        if not isinstance(confirmation, Basic.Ack):
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

        async def on_message(delivered: DeliveredMessage) -> None:
            message = InboundMessage(delivered, self._acks_of(delivered.channel))
            if not self._accepting:
                # Draining: hand the message straight back for another consumer.
                with contextlib.suppress(*BROKER_ERRORS):
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

        self._consumers[queue] = (on_message, await self._start_consumer(queue, on_message))

    def _acks_of(self, channel: aiormq.abc.AbstractChannel) -> AckBatcher:
        """The batcher of the channel a delivery came on (a new one after a reconnect:
        the acks still held for the old channel died with it)."""
        if self._acks is None or self._acks.channel is not channel:
            self._acks = AckBatcher(channel, max_held=max(1, self._prefetch // 2))
        return self._acks

    async def _start_consumer(self, queue: str, callback: OnDelivery) -> str:
        assert self._channel is not None
        channel = await self._channel.get_underlay_channel()
        consume_ok = await channel.basic_consume(queue, callback)
        return str(consume_ok.consumer_tag)

    async def _resume_consumers(self, *_: object) -> None:
        """After a reconnect, consume again what was consumed (the old tags died with it)."""
        for queue, (callback, _tag) in list(self._consumers.items()):
            if not self._accepting:
                return
            try:
                self._consumers[queue] = (callback, await self._start_consumer(queue, callback))
            except BROKER_ERRORS as exc:
                # The next reconnect tries again; until then /readyz still shows the link.
                log.warning(
                    "could not resume consuming",
                    extra={"event": "consume_resume_error", "queue": queue, "error": str(exc)},
                )

    async def drain(self, grace: float = 25.0) -> None:
        """Stop taking work and wait for in-flight handlers (SIGTERM path)."""
        self._accepting = False
        if self.ready and self._channel is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._publish_timeout):
                    channel = await self._channel.get_underlay_channel()
                    for _callback, tag in self._consumers.values():
                        await channel.basic_cancel(tag)
        self._consumers.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await self._send_acks()

    async def _send_acks(self) -> None:
        """The acks still held: sent now, or the broker delivers those messages again."""
        if self._acks is not None:
            await self._acks.close()

    async def close(self) -> None:
        await self._send_acks()
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
