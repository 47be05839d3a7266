"""DnsResolver's answer cache: hits skip dnspython, entries expire with their TTL, size bounded.

dnspython's resolve() is replaced by a fake that answers from real dnspython
Answer objects (so ``expiration`` is computed as dnspython does) and counts calls.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from services.common.settings import ListenAddress
from services.delivery.dns_lookup import DnsResolver
from services.delivery.mx import LookupFailed, MxRecord, NoRecords, NoSuchName, Records

TTL = 60


class FakeClock:
    """time.time() moved forward by hand (dnspython's expirations are absolute time.time())."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def __call__(self) -> float:
        return time.time() + self.offset


def _answer(name: str, rdtype: str, texts: list[str], ttl: int = TTL) -> dns.resolver.Answer:
    qname = dns.name.from_text(name)
    response = dns.message.make_response(dns.message.make_query(qname, rdtype))
    if texts:
        response.answer.append(dns.rrset.from_text_list(qname, ttl, "IN", rdtype, texts))
    # Through the wire format, as a response from a server is parsed (and indexed).
    received = dns.message.from_wire(response.to_wire())
    assert isinstance(received, dns.message.QueryMessage)
    return dns.resolver.Answer(qname, dns.rdatatype.from_text(rdtype), dns.rdataclass.IN, received)


class FakeDns:
    """Stands in for dnspython's resolve(): a zone of answers, NXDOMAIN or a timeout."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.ttl = TTL
        self.timeout = False
        self.calls: Counter[tuple[str, str]] = Counter()

    async def resolve(self, qname: str, rdtype: str, **_: Any) -> dns.resolver.Answer:
        self.calls[(qname, rdtype)] += 1
        if self.timeout:
            raise dns.exception.Timeout
        if not any(name == qname for name, _ in self.records):
            raise dns.resolver.NXDOMAIN(qnames=[dns.name.from_text(qname)])
        return _answer(qname, rdtype, self.records.get((qname, rdtype), []), self.ttl)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake() -> FakeDns:
    fake = FakeDns()
    fake.records[("mx.test.", "A")] = ["192.0.2.1"]
    fake.records[("d.test.", "MX")] = ["10 mx.test."]
    return fake


def _resolver(
    fake: FakeDns, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, size: int = 100
) -> DnsResolver:
    resolver = DnsResolver([ListenAddress("127.0.0.1", 53)], 2.0, clock=clock, cache_size=size)
    monkeypatch.setattr(resolver._resolver, "resolve", fake.resolve)
    return resolver


async def test_a_cached_answer_is_served_without_asking_dnspython(
    fake: FakeDns, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = _resolver(fake, clock, monkeypatch)
    first = await resolver.mx("d.test")
    assert first == Records(mx=(MxRecord(10, "mx.test."),))
    assert await resolver.mx("D.test.") == first  # same name, other spelling
    assert await resolver.query("mx.test", "A") == Records(values=("192.0.2.1",))
    assert await resolver.query("mx.test", "A") == Records(values=("192.0.2.1",))
    assert fake.calls == {("d.test.", "MX"): 1, ("mx.test.", "A"): 1}


async def test_an_answer_expires_with_its_ttl(
    fake: FakeDns, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = _resolver(fake, clock, monkeypatch)
    await resolver.query("mx.test", "A")
    clock.advance(TTL - 1)
    await resolver.query("mx.test", "A")
    assert fake.calls[("mx.test.", "A")] == 1
    fake.records[("mx.test.", "A")] = ["192.0.2.2"]
    clock.advance(2)
    assert await resolver.query("mx.test", "A") == Records(values=("192.0.2.2",))
    assert fake.calls[("mx.test.", "A")] == 2


async def test_a_zero_ttl_answer_is_not_kept(
    fake: FakeDns, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.ttl = 0
    resolver = _resolver(fake, clock, monkeypatch)
    await resolver.query("mx.test", "A")
    await resolver.query("mx.test", "A")
    assert fake.calls[("mx.test.", "A")] == 2


async def test_the_oldest_entry_is_evicted_past_the_size(
    fake: FakeDns, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(3):
        fake.records[(f"h{index}.test.", "A")] = [f"192.0.2.{index + 10}"]
    resolver = _resolver(fake, clock, monkeypatch, size=2)
    for index in range(3):
        await resolver.query(f"h{index}.test", "A")
    assert len(resolver._answers) == 2
    await resolver.query("h1.test", "A")
    await resolver.query("h2.test", "A")
    assert fake.calls[("h1.test.", "A")] == fake.calls[("h2.test.", "A")] == 1
    await resolver.query("h0.test", "A")  # evicted: asked again
    assert fake.calls[("h0.test.", "A")] == 2


async def test_no_records_are_kept_for_dnspythons_negative_ttl(
    fake: FakeDns, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = _resolver(fake, clock, monkeypatch)
    assert await resolver.query("mx.test", "AAAA") == NoRecords()
    assert await resolver.query("mx.test", "AAAA") == NoRecords()
    assert fake.calls[("mx.test.", "AAAA")] == 1
    # No SOA in the response: dnspython's default negative TTL (300 s).
    clock.advance(dns.message.NEGATIVE_TTL_WITHOUT_SOA + 1)
    await resolver.query("mx.test", "AAAA")
    assert fake.calls[("mx.test.", "AAAA")] == 2


async def test_nxdomain_and_failures_are_not_kept(
    fake: FakeDns, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = _resolver(fake, clock, monkeypatch)
    assert await resolver.query("nowhere.test", "MX") == NoSuchName()
    assert await resolver.query("nowhere.test", "MX") == NoSuchName()
    assert fake.calls[("nowhere.test.", "MX")] == 2
    fake.timeout = True
    assert await resolver.query("d.test", "MX") == LookupFailed("timed out")
    fake.timeout = False
    assert await resolver.mx("d.test") == Records(mx=(MxRecord(10, "mx.test."),))
    assert fake.calls[("d.test.", "MX")] == 2
