"""Sending limits per account and per client address: messages per hour, day and
month, and recipients per message.

The decisions are pure (:func:`check`, :func:`applicable`); the counters live in a
:class:`UsageStore` adapter (:mod:`services.ingress.usage`), Redis when configured
so that every ingress replica shares them, else per process.

``STAFFETTA_SENDING_LIMITS_FILE`` (optional) sets limits per account and per client
network, one line each::

    # who          limits: hour, day, month (messages), recipients (per message)
    alice          hour=100 month=6000
    newsletter:    hour=1000 recipients=50 month=0
    10.0.0.0/8     hour=500               # every address inside, counted per address
    192.0.2.7      day=100

An account line overrides, field by field, the ``STAFFETTA_ACCOUNT_*`` limits that
apply to every authenticated account (``0`` lifts one). A network line limits
every client address inside it (authenticated or not), each address counted on
its own; the most specific network wins; a key that reads as an address or
network is one. ``0`` or a missing field means no limit.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from services.ingress import replies
from services.ingress.policy import IPNetwork, client_ip
from services.ingress.replies import Reply

FIELDS = {"hour": "per_hour", "day": "per_day", "month": "per_month", "recipients": "recipients"}


@dataclass(frozen=True)
class SendingLimits:
    """0 means unlimited."""

    per_hour: int = 0
    per_day: int = 0
    per_month: int = 0
    recipients: int = 0  # per message

    @property
    def enabled(self) -> bool:
        """Are messages counted (any of the hour, day, month limits set)?"""
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


@dataclass(frozen=True)
class LimitsTable:
    """The lines of the sending limits file: overrides per account, limits per network."""

    accounts: dict[str, dict[str, int]] = field(default_factory=dict)
    networks: tuple[tuple[IPNetwork, SendingLimits], ...] = ()  # most specific first

    def for_account(self, user: str, default: SendingLimits) -> SendingLimits:
        return replace(default, **self.accounts.get(user, {}))

    def for_address(self, address: str) -> tuple[str, SendingLimits] | None:
        """(the normalised address, its network's limits), or None when no line covers it."""
        ip = client_ip(address)
        if ip is None:
            return None
        for network, limits in self.networks:
            if ip.version == network.version and ip in network:
                return str(ip), limits
        return None


def _network(key: str) -> IPNetwork | None:
    for candidate in (key, key[:-1] if key.endswith(":") else None):
        if candidate:
            try:
                return ipaddress.ip_network(candidate, strict=False)
            except ValueError:
                continue
    return None


def parse_limits(lines: Iterable[str]) -> LimitsTable:
    """Parse the sending limits file; ValueError names the bad line."""
    accounts: dict[str, dict[str, int]] = {}
    networks: dict[IPNetwork, dict[str, int]] = {}
    for number, raw in enumerate(lines, start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        key, settings = words[0], words[1:]
        values: dict[str, int] = {}
        for setting in settings:
            name, equals, value = setting.partition("=")
            if name not in FIELDS or not equals or not value.isdigit():
                raise ValueError(
                    f"sending limits line {number}: expected 'who name=N ...' with names "
                    f"{', '.join(FIELDS)}; got {setting!r}"
                )
            values[FIELDS[name]] = int(value)
        if not settings:
            raise ValueError(f"sending limits line {number}: {key!r} has no limits")
        network = _network(key)
        if network is not None:
            networks.setdefault(network, {}).update(values)
        else:
            accounts.setdefault(key.removesuffix(":"), {}).update(values)
    ordered = sorted(networks.items(), key=lambda item: -item[0].prefixlen)
    return LimitsTable(accounts, tuple((net, SendingLimits(**v)) for net, v in ordered))


@dataclass(frozen=True)
class Counted:
    """One set of limits that applies to a session, and the key its counters use."""

    key: str
    limits: SendingLimits


def applicable(
    table: LimitsTable | None, default: SendingLimits, user: str, address: str
) -> tuple[Counted, ...]:
    """The limits on a session: the account's (when authenticated), its address's network's."""
    found: list[Counted] = []
    if user:
        found.append(Counted(user, table.for_account(user, default) if table else default))
    covered = table.for_address(address) if table is not None else None
    if covered is not None:
        # Account names cannot hold ':' (the users file), so these keys never meet them.
        found.append(Counted(f"ip:{covered[0]}", covered[1]))
    return tuple(found)


def max_recipients(limit: int, counted: Iterable[Counted]) -> int:
    """The smallest recipients-per-message limit of the session (``limit``: the global one)."""
    return min([limit, *(c.limits.recipients for c in counted if c.limits.recipients)])


def check(limits: SendingLimits, usage: Usage) -> Reply | None:
    """Refuse another message when a limit is reached (permanent for the monthly quota)."""
    if limits.per_month and usage.month >= limits.per_month:
        return replies.QUOTA_EXCEEDED
    if limits.per_day and usage.day >= limits.per_day:
        return replies.RATE_LIMITED
    if limits.per_hour and usage.hour >= limits.per_hour:
        return replies.RATE_LIMITED
    return None
