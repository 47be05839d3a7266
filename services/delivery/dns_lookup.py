"""The DNS adapter: dnspython's async resolver, answers turned into :mod:`mx` values.

With ``STAFFETTA_DNS_NAMESERVERS`` set (``ip`` or ``ip:port``) only those
servers are asked -- tests always point it at a loopback server. Empty means
the system's resolver configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from services.common.settings import ListenAddress
from services.delivery.mx import (
    Answer,
    LookupFailed,
    MxRecord,
    NoRecords,
    NoSuchName,
    Records,
)

CACHE_SIZE = 10000


class DnsResolver:
    def __init__(
        self,
        nameservers: list[ListenAddress],
        timeout: float,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address.host, address.port) for address in nameservers
            ]
        resolver.lifetime = timeout
        resolver.timeout = max(timeout / 2, 0.5)
        resolver.search = []
        # Answers are kept for their TTL: a burst of mail to one domain asks once.
        # dnspython's own cache stays behind ours for what ours does not keep
        # (NXDOMAIN, whose TTL the exception does not tell us).
        resolver.cache = dns.resolver.LRUCache(cache_size)
        self._resolver = resolver
        # In front of it, the converted answers: a hit is one dict look-up, where
        # dnspython builds a _Resolution per resolve() call even when it has the answer.
        # Keyed by (qname, rdtype); values (absolute expiry on ``clock``, answer);
        # insertion order is age, so the first entry is the one to evict.
        self._answers: dict[tuple[str, str], tuple[float, Records | NoRecords]] = {}
        self._cache_size = cache_size
        self._clock = clock

    async def query(self, name: str, rdtype: str) -> Answer:
        qname = name.rstrip(".") + "."
        key = (qname.lower(), rdtype)
        cached = self._cached(key)
        if cached is not None:
            return cached
        found = await self._resolve(qname, rdtype)
        if isinstance(found, tuple):
            expiration, answer = found
            self._remember(key, expiration, answer)
            return answer
        return found

    def cached(self, name: str, rdtype: str) -> Records | NoRecords | None:
        """The answer :meth:`query` would give from the cache, without awaiting; None
        when it would have to ask. Callers skip a gather of look-ups on a hit."""
        return self._cached(((name.rstrip(".") + ".").lower(), rdtype))

    def _cached(self, key: tuple[str, str]) -> Records | NoRecords | None:
        cached = self._answers.get(key)
        if cached is None:
            return None
        if cached[0] > self._clock():
            return cached[1]
        del self._answers[key]
        return None

    def _remember(
        self, key: tuple[str, str], expiration: float, answer: Records | NoRecords
    ) -> None:
        if expiration <= self._clock():
            return  # a TTL of 0: use once, keep never
        self._answers.pop(key, None)  # re-inserted at the end: it is the newest again
        self._answers[key] = (expiration, answer)
        while len(self._answers) > self._cache_size:
            del self._answers[next(iter(self._answers))]

    async def _resolve(
        self, qname: str, rdtype: str
    ) -> tuple[float, Records | NoRecords] | NoSuchName | LookupFailed:
        """The answer with its expiry when it may be kept, else the answer alone."""
        try:
            answer = await self._resolver.resolve(qname, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return NoSuchName()
        except dns.resolver.NoNameservers as exc:
            return LookupFailed(f"no server could answer ({_short(exc)})")
        except dns.exception.Timeout:
            return LookupFailed("timed out")
        except dns.exception.DNSException as exc:
            return LookupFailed(_short(exc))
        # answer.expiration is dnspython's: the smallest TTL of the answer (and its
        # CNAMEs), or for "no records" the SOA's negative TTL (RFC 2308; dnspython
        # assumes 300 s when the server sent no SOA) -- what its own cache honours.
        if answer.rrset is None:
            return answer.expiration, NoRecords()
        if answer.rdtype == dns.rdatatype.MX:
            return answer.expiration, Records(
                mx=tuple(
                    MxRecord(int(item.preference), item.exchange.to_text()) for item in answer.rrset
                )
            )
        return answer.expiration, Records(values=tuple(item.to_text() for item in answer.rrset))

    async def mx(self, domain: str) -> Answer:
        return await self.query(domain, "MX")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
