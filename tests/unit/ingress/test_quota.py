"""Per-account sending limits: the decision and the in-memory counters."""

from __future__ import annotations

import calendar

from services.ingress import quota, replies
from services.ingress.quota import SendingLimits, Usage
from services.ingress.usage import MemoryUsageStore

NOW = calendar.timegm((2026, 11, 28, 20, 30, 0))


def test_unlimited_by_default() -> None:
    assert not SendingLimits().enabled
    assert quota.check(SendingLimits(), Usage(10**6, 10**6, 10**6)) is None


def test_hourly_daily_and_monthly_limits() -> None:
    limits = SendingLimits(per_hour=2, per_day=5, per_month=7)
    assert quota.check(limits, Usage(1, 1, 1)) is None
    assert quota.check(limits, Usage(2, 2, 2)) == replies.RATE_LIMITED
    assert quota.check(limits, Usage(0, 5, 5)) == replies.RATE_LIMITED
    assert quota.check(limits, Usage(0, 0, 7)) == replies.QUOTA_EXCEEDED
    assert str(replies.RATE_LIMITED).startswith("450 4.7.1 ")
    assert str(replies.QUOTA_EXCEEDED).startswith("550 5.7.1 ")


def test_windows_are_utc_calendar_periods() -> None:
    hour, day, month = quota.windows(NOW)
    assert (hour.period, day.period, month.period) == ("2026112820", "20261128", "202611")


async def test_memory_store_counts_per_window() -> None:
    store = MemoryUsageStore()
    await store.record("alice", NOW)
    await store.record("alice", NOW)
    await store.record("bob", NOW)
    assert await store.usage("alice", NOW) == Usage(2, 2, 2)
    next_hour = NOW + 3600
    assert await store.usage("alice", next_hour) == Usage(0, 2, 2)
    await store.record("alice", next_hour)
    assert await store.usage("alice", next_hour) == Usage(1, 3, 3)
    next_month = calendar.timegm((2026, 12, 1, 0, 0, 0))
    assert await store.usage("alice", next_month) == Usage(0, 0, 0)
