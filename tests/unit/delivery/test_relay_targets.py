"""Relay.targets from cached answers (no look-up, no gather) gives what it gives
when every answer is looked up afresh, for every shape of MX set."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from services.common.settings import ListenAddress
from services.delivery.dns_lookup import DnsResolver
from services.delivery.metrics import DeliveryMetrics
from services.delivery.mx import Identity, MxRecord, NoRecords, NoSuchName, Records
from services.delivery.relay import Relay, RelayConfig
from services.delivery.smtp_client import ClientConfig, Timeouts
from tests.unit.delivery.test_dns_cache import TTL, FakeClock

IDENTITY = Identity("relay.staffetta.test", frozenset({"192.0.2.99"}))
DOMAINS = [
    "one.test",
    "many.test",
    "v6.test",
    "dual.test",
    "loop-name.test",
    "loop-address.test",
    "loop-backup.test",
    "ip-exchange.test",
    "implicit.test",
    "no-address.test",
    "part-missing.test",
    "nowhere.test",
    "[192.0.2.7]",
    "[IPv6:2001:db8::7]",
    "[192.0.2.99]",
]


class Zone:
    """Stands in for DnsResolver._resolve: answers in a fixed order (dnspython's rrsets
    have none), NXDOMAIN for names it does not hold, and counts the look-ups."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.records: dict[tuple[str, str], Records | NoRecords] = {}
        self.calls: Counter[tuple[str, str]] = Counter()

    def host(self, name: str, a: tuple[str, ...] = (), aaaa: tuple[str, ...] = ()) -> None:
        for rdtype, values in (("A", a), ("AAAA", aaaa)):
            self.records[(name, rdtype)] = Records(values=values) if values else NoRecords()

    def mx(self, name: str, *pairs: tuple[int, str]) -> None:
        records = tuple(MxRecord(preference, exchange) for preference, exchange in pairs)
        self.records[(name, "MX")] = Records(mx=records) if records else NoRecords()

    async def resolve(
        self, qname: str, rdtype: str
    ) -> tuple[float, Records | NoRecords] | NoSuchName:
        key = (qname.lower(), rdtype)  # names are case-insensitive
        self.calls[key] += 1
        answer = self.records.get(key)
        if answer is None:
            return NoSuchName()
        return self.clock() + TTL, answer


def zone(clock: FakeClock) -> Zone:
    z = Zone(clock)
    z.mx("one.test.", (10, "mx.one.test."))
    z.host("mx.one.test.", ("192.0.2.1",))
    z.mx("many.test.", *((10, f"{name}.many.test.") for name in "aBc"), (20, "d.many.test."))
    for index, name in enumerate("abcd"):
        z.host(f"{name}.many.test.", (f"192.0.2.{10 + index}", f"192.0.2.{20 + index}"))
    z.mx("v6.test.", (10, "mx.v6.test."))
    z.host("mx.v6.test.", aaaa=("2001:db8::1",))
    z.mx("dual.test.", (5, "mx.dual.test."))
    z.host("mx.dual.test.", ("192.0.2.30",), ("2001:db8::30",))
    z.mx("loop-name.test.", (10, "relay.staffetta.test."))
    z.host("relay.staffetta.test.", ("192.0.2.99",))
    z.mx("loop-address.test.", (10, "alias.loop.test."), (20, "mx.one.test."))
    z.host("alias.loop.test.", ("192.0.2.99",))
    z.mx("loop-backup.test.", (10, "mx.one.test."), (20, "alias.loop.test."), (30, "mx.v6.test."))
    z.mx("ip-exchange.test.", (10, "192.0.2.40."), (20, "mx.one.test."))
    z.mx("implicit.test.")
    z.host("implicit.test.", ("192.0.2.50",))
    z.mx("no-address.test.", (10, "bare.no-address.test."))
    z.host("bare.no-address.test.")
    z.mx("part-missing.test.", (10, "gone.part-missing.test."), (20, "mx.one.test."))
    return z


def relay(fake: Zone, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, cache: int) -> Relay:
    resolver = DnsResolver([ListenAddress("127.0.0.1", 53)], 2.0, clock=clock, cache_size=cache)
    monkeypatch.setattr(resolver, "_resolve", fake.resolve)
    config = RelayConfig(IDENTITY, 25, ClientConfig("relay.staffetta.test", Timeouts(5, 5, 5)))
    metrics = DeliveryMetrics.create(CollectorRegistry())
    return Relay(resolver, config, metrics, rng=random.Random(3))


async def test_cached_answers_give_the_same_targets_as_fresh_look_ups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    fresh_zone, cached_zone = zone(clock), zone(clock)
    fresh = relay(fresh_zone, clock, monkeypatch, cache=0)  # keeps nothing: always looks up
    cached = relay(cached_zone, clock, monkeypatch, cache=1000)
    for round_ in range(12):
        if round_ == 6:
            clock.advance(TTL + 1)  # everything expired once: looked up again
        for domain in DOMAINS:
            assert await cached.targets(domain) == await fresh.targets(domain), (round_, domain)
    # The cached relay asked once per name and expiry, except for names that do not exist.
    assert cached_zone.calls[("mx.one.test.", "A")] == 2
    assert cached_zone.calls[("gone.part-missing.test.", "A")] == 12
    assert fresh_zone.calls[("mx.one.test.", "A")] > 12


async def test_cached_is_what_query_would_answer_from_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    fake = zone(clock)
    resolver = relay(fake, clock, monkeypatch, cache=1000)._resolver
    assert resolver.cached("mx.one.test", "A") is None
    assert await resolver.query("MX.one.test.", "A") == Records(values=("192.0.2.1",))
    assert resolver.cached("mx.one.test", "A") == Records(values=("192.0.2.1",))
    assert resolver.cached("mx.ONE.test.", "A") == Records(values=("192.0.2.1",))
    assert resolver.cached("mx.one.test", "AAAA") is None
    assert await resolver.query("mx.one.test", "AAAA") == NoRecords()
    assert resolver.cached("mx.one.test", "AAAA") == NoRecords()
    assert await resolver.query("nowhere.test", "A") == NoSuchName()
    assert resolver.cached("nowhere.test", "A") is None  # NXDOMAIN is never kept
    calls = sum(fake.calls.values())
    clock.advance(TTL + 1)
    assert resolver.cached("mx.one.test", "A") is None
    assert sum(fake.calls.values()) == calls  # cached() never asks
