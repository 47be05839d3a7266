"""Sending limits: the decision, the limits file and the in-memory counters."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from services.common.settings import SettingsError, load_settings
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


async def test_memory_store_forgets_periods_that_are_over() -> None:
    store = MemoryUsageStore()
    await store.record("alice", NOW)
    await store.record("bob", NOW + 3600)
    await store.record("bob", NOW + 3601)
    hour = quota.windows(NOW)[0].period
    assert not [key for key in store._counts if key[2] == hour]
    assert await store.usage("bob", NOW + 3601) == Usage(2, 2, 2)
    assert await store.usage("alice", NOW + 3601) == Usage(0, 1, 1)


TABLE = quota.parse_limits(
    [
        "# who   limits",
        "alice   hour=100 month=6000",
        "newsletter: recipients=50 month=0  # lifts the default quota",
        "10.0.0.0/8   hour=500",
        "10.1.0.0/16  day=7",
        "192.0.2.7    day=100 recipients=5",
        "2001:db8::/32 hour=3",
        "::1: hour=4",
        "",
    ]
)
DEFAULT = SendingLimits(per_hour=10, per_month=1000)


def test_account_lines_override_the_defaults_field_by_field() -> None:
    assert TABLE.for_account("alice", DEFAULT) == SendingLimits(per_hour=100, per_month=6000)
    assert TABLE.for_account("newsletter", DEFAULT) == SendingLimits(per_hour=10, recipients=50)
    assert TABLE.for_account("carol", DEFAULT) == DEFAULT


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.9.9.9", ("10.9.9.9", SendingLimits(per_hour=500))),
        ("10.1.2.3", ("10.1.2.3", SendingLimits(per_day=7))),  # the most specific network
        ("::ffff:10.1.2.3", ("10.1.2.3", SendingLimits(per_day=7))),  # IPv4-mapped
        ("192.0.2.7", ("192.0.2.7", SendingLimits(per_day=100, recipients=5))),
        ("2001:db8::25", ("2001:db8::25", SendingLimits(per_hour=3))),
        ("::1", ("::1", SendingLimits(per_hour=4))),
        ("192.0.2.8", None),
        ("not an address", None),
    ],
)
def test_network_lines_cover_their_addresses(
    address: str, expected: tuple[str, SendingLimits] | None
) -> None:
    assert TABLE.for_address(address) == expected


def test_applicable_limits_and_their_counter_keys() -> None:
    assert quota.applicable(None, DEFAULT, "", "192.0.2.7") == ()
    assert quota.applicable(None, DEFAULT, "bob", "192.0.2.7") == (quota.Counted("bob", DEFAULT),)
    both = quota.applicable(TABLE, DEFAULT, "newsletter", "192.0.2.7")
    assert [c.key for c in both] == ["newsletter", "ip:192.0.2.7"]
    assert quota.max_recipients(1000, both) == 5
    assert quota.max_recipients(3, both) == 3
    assert quota.max_recipients(1000, ()) == 1000
    assert [c.key for c in quota.applicable(TABLE, DEFAULT, "", "10.1.2.3")] == ["ip:10.1.2.3"]


@pytest.mark.parametrize(
    "line",
    ["alice", "alice hour", "alice hour=", "alice hour=-1", "alice weeks=3", "alice hour=1x"],
)
def test_bad_limits_lines_are_refused_with_their_number(line: str) -> None:
    with pytest.raises(ValueError, match="line 2"):
        quota.parse_limits(["bob hour=1", line])


def test_the_limits_file_setting_names_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "limits"
    path.write_text("alice hour=1\n")
    assert load_settings({"STAFFETTA_SENDING_LIMITS_FILE": str(path)}).sending_limits_file == path
    with pytest.raises(SettingsError, match="STAFFETTA_SENDING_LIMITS_FILE: no such file"):
        load_settings({"STAFFETTA_SENDING_LIMITS_FILE": str(tmp_path / "missing")})
