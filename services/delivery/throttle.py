"""Per-destination limits: simultaneous deliveries and a message rate, per process.

Pure: :class:`DestinationLimiter` says whether a job for a destination may go
now. A job that may not is not attempted, not counted as a failure and never
bounced: the worker parks it for a moment in ``PREFIX.throttle.<ttl>``, a
delay queue that dead-letters back into ``PREFIX.delivery``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from services.common.durations import format_duration
from services.common.topology import QUORUM, QueueSpec, Topology

THROTTLE_DELAY = 1.0
MAX_BUCKETS = 10000
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)/([smh])\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}

Refusal = Literal["concurrency", "rate"]


def parse_rate(text: str) -> float:
    """``"60/m"`` -> 1.0 message per second; empty -> 0 (no limit)."""
    if not text.strip():
        return 0.0
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"invalid rate {text!r}: expected N/s, N/m or N/h")
    return float(match.group(1)) / _PER[match.group(2)]


@dataclass(frozen=True)
class DeliveryTopology(Topology):
    """The shared topology plus the delivery service's own throttle queue."""

    throttle_delay: float = THROTTLE_DELAY

    @property
    def throttle(self) -> str:
        return f"{self.prefix}.throttle.{format_duration(self.throttle_delay)}"

    def queues(self) -> list[QueueSpec]:
        arguments: dict[str, Any] = {
            **QUORUM,
            "x-message-ttl": int(self.throttle_delay * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.delivery,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        return [*super().queues(), QueueSpec(self.throttle, arguments)]


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class DestinationLimiter:
    """Concurrency cap (0 = none) and token-bucket rate (per second, 0 = none)."""

    concurrency: int = 0
    rate: float = 0.0
    active: dict[str, int] = field(default_factory=dict)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    @property
    def burst(self) -> float:
        """At most one second's worth of messages at once (and at least one)."""
        return max(1.0, self.rate)

    def acquire(self, destination: str, now: float) -> Refusal | None:
        """Take a slot (and a token) for ``destination``; the reason when it must wait."""
        if self.concurrency and self.active.get(destination, 0) >= self.concurrency:
            return "concurrency"
        if self.rate:
            bucket = self._buckets.get(destination) or _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[destination] = bucket
            if bucket.tokens < 1.0:
                return "rate"
            bucket.tokens -= 1.0
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_full(now)
        self.active[destination] = self.active.get(destination, 0) + 1
        return None

    def _forget_full(self, now: float) -> None:
        for destination, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst:
                del self._buckets[destination]

    def release(self, destination: str) -> None:
        left = self.active.get(destination, 0) - 1
        if left > 0:
            self.active[destination] = left
        else:
            self.active.pop(destination, None)
