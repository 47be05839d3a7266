"""Operator commands on the queues: ``staffetta queue list|flush|delete`` and
``staffetta requeue-parked`` (the spirit of Postfix's mailq, postqueue -f, postsuper).

Deferred mail waits in the ``PREFIX.retry.<ttl>`` queues; poison jobs (that
crashed a worker ``STAFFETTA_AMQP_DELIVERY_LIMIT`` times) in ``PREFIX.parked``.
Messages are moved by basic.get, a confirmed publish of a copy, then an ack of
the original: a crash in between duplicates a job, it never loses one.
Listing holds each message unacknowledged and then returns it (the retry and
parked queues have no delivery limit, so returning costs nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from services.common.durations import format_duration
from services.common.envelope import ENVELOPE_HEADER
from services.common.settings import Settings
from services.common.topology import Topology

_BROKER_HEADERS = ("x-death", "x-delivery-count", "x-first-death-exchange")


@dataclass(frozen=True)
class QueueEntry:
    """One waiting message as ``queue list`` shows it."""

    queue: str  # without the prefix: "retry.5m", "parked"
    queue_id: str
    sender: str
    recipients: list[str]
    attempts: int
    age: float  # seconds since acceptance at the ingress
    last_error: str
    origin: str = ""  # parked only: the queue it was dead-lettered from


def envelope_fields(headers: dict[str, Any]) -> dict[str, Any]:
    raw = headers.get(ENVELOPE_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else {}
    except json.JSONDecodeError:
        parsed = {}
    return parsed if isinstance(parsed, dict) else {}


def origin_queue(headers: dict[str, Any]) -> str:
    """The queue a dead-lettered message came from (the latest ``x-death`` entry)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        queue = deaths[0].get("queue")
        if isinstance(queue, bytes):
            queue = queue.decode()
        if isinstance(queue, str):
            return queue
    first = headers.get("x-first-death-queue")
    return first.decode() if isinstance(first, bytes) else str(first or "")


def entry_of(queue: str, headers: dict[str, Any], now: float) -> QueueEntry:
    fields = envelope_fields(headers)
    recipients = fields.get("recipients")
    if recipients is None:  # a bounce job names its recipients in its results
        recipients = [r.get("recipient", "") for r in fields.get("results", [])]
    accepted_at = float(fields.get("accepted_at") or now)
    return QueueEntry(
        queue=queue,
        queue_id=str(fields.get("queue_id", "")),
        sender=str(fields.get("sender", "")),
        recipients=[str(r) for r in recipients],
        attempts=int(fields.get("attempts") or 0),
        age=max(now - accepted_at, 0.0),
        last_error=str(fields.get("last_error", "")),
    )


class QueueAdmin:
    def __init__(self, url: str, topology: Topology) -> None:
        self._url = url
        self.topology = topology
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    async def __aenter__(self) -> QueueAdmin:
        self._connection = await aio_pika.connect_robust(self._url)
        self._channel = await self._connection.channel(publisher_confirms=True)
        for spec in self.topology.queues():
            await self._channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def channel(self) -> AbstractChannel:
        assert self._channel is not None, "use QueueAdmin as an async context manager"
        return self._channel

    def _short(self, queue: str) -> str:
        return queue.removeprefix(f"{self.topology.prefix}.")

    def retry_queues(self) -> list[str]:
        return sorted(
            {self.topology.retry_queue(n) for n in range(1, len(self.topology.retry_schedule) + 1)}
        )

    async def _messages(self, queue: str) -> AsyncIterator[AbstractIncomingMessage]:
        declared = await self.channel.get_queue(queue, ensure=False)
        while True:
            message = await declared.get(no_ack=False, fail=False)
            if message is None:
                return
            yield message

    async def _copy_to(self, queue: str, message: AbstractIncomingMessage) -> None:
        headers = {
            key: value
            for key, value in (message.headers or {}).items()
            if key not in _BROKER_HEADERS and not key.startswith("x-first-death")
        }
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        confirmation = await self.channel.default_exchange.publish(
            copy, routing_key=queue, mandatory=True, timeout=15
        )
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise RuntimeError(f"publish to {queue} not confirmed")

    async def list(self, *, include_parked: bool = True) -> list[QueueEntry]:
        queues = [*self.retry_queues(), *([self.topology.parked] if include_parked else [])]
        entries: list[QueueEntry] = []
        now = time.time()
        for queue in queues:
            held: list[AbstractIncomingMessage] = []
            try:
                async for message in self._messages(queue):
                    held.append(message)
                    headers = dict(message.headers or {})
                    entry = entry_of(self._short(queue), headers, now)
                    if queue == self.topology.parked:
                        entry = replace(entry, origin=origin_queue(headers))
                    entries.append(entry)
            finally:
                for message in held:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
        return entries

    async def _move(
        self,
        queues: Sequence[str],
        choose: Callable[[AbstractIncomingMessage], str | None],
    ) -> int:
        """Move messages for which ``choose`` names a target ("" drops); the rest stay."""
        moved = 0
        for queue in queues:
            skipped: list[AbstractIncomingMessage] = []
            try:
                async for message in self._messages(queue):
                    target = choose(message)
                    if target is None:
                        skipped.append(message)
                        continue
                    if target:
                        await self._copy_to(target, message)
                    await message.ack()
                    moved += 1
            finally:
                for message in skipped:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
        return moved

    def _matches(self, queue_id: str | None) -> Callable[[AbstractIncomingMessage], bool]:
        def match(message: AbstractIncomingMessage) -> bool:
            if queue_id is None:
                return True
            found = envelope_fields(dict(message.headers or {})).get("queue_id", "")
            return str(found).upper() == queue_id.upper()

        return match

    async def flush(self, queue_id: str | None = None) -> int:
        """Deferred jobs (all, or one message's) go back to the delivery queue now."""
        match = self._matches(queue_id)
        return await self._move(
            self.retry_queues(), lambda m: self.topology.delivery if match(m) else None
        )

    async def delete(self, queue_id: str) -> int:
        """Drop a message's waiting jobs from the retry and parked queues (no bounce)."""
        match = self._matches(queue_id)
        queues = [*self.retry_queues(), self.topology.parked]
        return await self._move(queues, lambda m: "" if match(m) else None)

    async def requeue_parked(self, queue_id: str | None = None) -> int:
        """Parked messages go back to the queue they were parked from."""
        match = self._matches(queue_id)
        known = {self.topology.incoming, self.topology.delivery, self.topology.bounce}

        def target(message: AbstractIncomingMessage) -> str | None:
            origin = origin_queue(dict(message.headers or {}))
            if not match(message):
                return None
            return origin if origin in known else self.topology.delivery

        return await self._move([self.topology.parked], target)


def add_commands(commands: Any) -> None:
    """Register ``queue`` and ``requeue-parked`` on the ``staffetta`` sub-parsers."""
    queue = commands.add_parser("queue", help="list, flush or delete deferred mail")
    queue.add_argument("action", choices=["list", "flush", "delete"])
    queue.add_argument("queue_id", nargs="?", help="one message (required for delete)")
    queue.add_argument("--json", action="store_true", help="list as JSON lines")
    parked = commands.add_parser(
        "requeue-parked", help="return parked (poison) jobs to the queue they came from"
    )
    parked.add_argument("queue_id", nargs="?", help="only this message")


def format_table(entries: Sequence[QueueEntry]) -> str:
    lines = [f"{'QUEUE-ID':<22} {'QUEUE':<14} {'AGE':>8} {'TRIES':>5}  SENDER"]
    for entry in entries:
        queue = entry.queue + (f" (from {entry.origin})" if entry.origin else "")
        lines.append(
            f"{entry.queue_id:<22} {queue:<14} {format_duration(round(entry.age)):>8} "
            f"{entry.attempts:>5}  <{entry.sender}>"
        )
        lines.extend(f"{'':<24}{recipient}" for recipient in entry.recipients)
        if entry.last_error:
            lines.append(f"{'':<24}({entry.last_error})")
    total = sum(len(entry.recipients) for entry in entries)
    lines.append(f"-- {len(entries)} jobs, {total} recipients")
    return "\n".join(lines)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    topology = Topology.from_settings(settings)
    async with QueueAdmin(settings.amqp_url.get_secret_value(), topology) as admin:
        if args.command == "requeue-parked":
            count = await admin.requeue_parked(args.queue_id)
            print(f"requeued {count} parked jobs")
        elif args.action == "list":
            entries = await admin.list()
            if args.json:
                for entry in entries:
                    print(json.dumps(asdict(entry)))
            else:
                print(format_table(entries))
        elif args.action == "flush":
            print(f"flushed {await admin.flush(args.queue_id)} deferred jobs")
        else:
            if not args.queue_id:
                print("staffetta: queue delete needs a QUEUEID", file=sys.stderr)
                return 2
            count = await admin.delete(args.queue_id)
            print(f"deleted {count} jobs of {args.queue_id}")
            return 0 if count else 1
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (OSError, aiormq.exceptions.AMQPError) as exc:
        print(f"staffetta: broker unavailable: {exc}", file=sys.stderr)
        return 1
