"""Per-account sending limits: messages per hour and per day, and a monthly quota.

The decision is pure (:func:`check`); the counters live in a :class:`UsageStore`
adapter (:mod:`services.ingress.usage`), Redis when configured so that every
ingress replica shares them, else per process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.ingress import replies
from services.ingress.replies import Reply


@dataclass(frozen=True)
class SendingLimits:
    """0 means unlimited."""

    per_hour: int = 0
    per_day: int = 0
    per_month: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.per_hour or self.per_day or self.per_month)


@dataclass(frozen=True)
class Usage:
    hour: int = 0
    day: int = 0
    month: int = 0


@dataclass(frozen=True)
class Window:
    """One counting window: its name, the key of the current period, and its length."""

    name: str
    period: str
    seconds: int


def windows(now: float | None = None) -> tuple[Window, Window, Window]:
    """The hour, day and month (UTC calendar periods) that ``now`` falls in."""
    moment = time.gmtime(time.time() if now is None else now)
    return (
        Window("hour", time.strftime("%Y%m%d%H", moment), 2 * 3600),
        Window("day", time.strftime("%Y%m%d", moment), 2 * 86400),
        Window("month", time.strftime("%Y%m", moment), 32 * 86400),
    )


def check(limits: SendingLimits, usage: Usage) -> Reply | None:
    """Refuse another message when a limit is reached (permanent for the monthly quota)."""
    if limits.per_month and usage.month >= limits.per_month:
        return replies.QUOTA_EXCEEDED
    if limits.per_day and usage.day >= limits.per_day:
        return replies.RATE_LIMITED
    if limits.per_hour and usage.hour >= limits.per_hour:
        return replies.RATE_LIMITED
    return None
