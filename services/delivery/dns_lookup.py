"""The DNS adapter: dnspython's async resolver, answers turned into :mod:`mx` values.

With ``STAFFETTA_DNS_NAMESERVERS`` set (``ip`` or ``ip:port``) only those
servers are asked -- tests always point it at a loopback server. Empty means
the system's resolver configuration.
"""

from __future__ import annotations

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
    def __init__(self, nameservers: list[ListenAddress], timeout: float) -> None:
        resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address.host, address.port) for address in nameservers
            ]
        resolver.lifetime = timeout
        resolver.timeout = max(timeout / 2, 0.5)
        resolver.search = []
        # Answers are kept for their TTL: a burst of mail to one domain asks once.
        resolver.cache = dns.resolver.LRUCache(CACHE_SIZE)
        self._resolver = resolver

    async def query(self, name: str, rdtype: str) -> Answer:
        qname = name.rstrip(".") + "."
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
        if answer.rrset is None:
            return NoRecords()
        if answer.rdtype == dns.rdatatype.MX:
            return Records(
                mx=tuple(
                    MxRecord(int(item.preference), item.exchange.to_text()) for item in answer.rrset
                )
            )
        return Records(values=tuple(item.to_text() for item in answer.rrset))

    async def mx(self, domain: str) -> Answer:
        return await self.query(domain, "MX")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
