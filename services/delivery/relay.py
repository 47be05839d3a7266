"""Relay delivery: find the hosts (MX or smarthost), talk to them in order, merge results.

The order of hosts, the meaning of each session and the loop check are the
pure modules' (:mod:`mx`, :mod:`transcript`); this module only sequences the
adapters (DNS, SMTP) and counts what happened.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from services.common.envelope import DeliveryJob, RecipientResult
from services.common.settings import ListenAddress
from services.delivery.connections import ConnectionPool
from services.delivery.dns_lookup import DnsResolver
from services.delivery.metrics import DeliveryMetrics
from services.delivery.mx import (
    MAX_ADDRESSES,
    HostAddresses,
    Identity,
    MxHosts,
    Records,
    Undeliverable,
    address_literal,
    addresses_of,
    is_ip,
    plan_mx,
    points_to_self,
    unresolvable,
)
from services.delivery.outcome import MAIL_LOOP
from services.delivery.replies import local_result
from services.delivery.smtp_client import ClientConfig, Target, send
from services.delivery.transcript import HostVerdict, Transcript, judge

Sender = Callable[
    [Target, str, Sequence[str], bytes, ClientConfig, ConnectionPool | None, bool],
    Awaitable[Transcript],
]


@dataclass(frozen=True)
class RelayConfig:
    identity: Identity
    remote_port: int
    client: ClientConfig
    smarthost: ListenAddress | None = None


@dataclass(frozen=True)
class RelayReport:
    results: list[RecipientResult]
    note: str = ""  # why no host was tried, for the logs


MAX_TRANSACTIONS_PER_HOST = 100


@dataclass
class _Merged:
    """Results over all hosts tried: final ones win over the latest deferral."""

    final: dict[str, RecipientResult] = field(default_factory=dict)
    latest: dict[str, RecipientResult] = field(default_factory=dict)

    def add(self, verdict: HostVerdict) -> None:
        for recipient, result in verdict.results.items():
            if result.action in ("delivered", "failed"):
                self.final[recipient] = result
            else:
                self.latest[recipient] = result


class Relay:
    def __init__(
        self,
        resolver: DnsResolver,
        config: RelayConfig,
        metrics: DeliveryMetrics,
        *,
        sender: Sender = send,
        rng: random.Random | None = None,
        pool: ConnectionPool | None = None,
    ) -> None:
        self.pool = pool
        self._resolver = resolver
        self._config = config
        self._metrics = metrics
        self._send = sender
        self._rng = rng or random.Random()

    async def deliver(self, job: DeliveryJob, body: bytes) -> RelayReport:
        found = await self.targets(job.domain)
        if isinstance(found, Undeliverable):
            results = [local_result(r, found.status) for r in job.recipients]
            return RelayReport(results, note=found.reason)
        merged = _Merged()
        pending = list(job.recipients)
        for target in found:
            try_next = await self._deliver_to(target, job, body, pending, merged)
            pending = [r for r in pending if r not in merged.final]
            if not pending or not try_next:
                break
        results = [merged.final.get(r) or merged.latest[r] for r in job.recipients]
        return RelayReport(results)

    async def _deliver_to(
        self, target: Target, job: DeliveryJob, body: bytes, pending: list[str], merged: _Merged
    ) -> bool:
        """Transactions with one host; True when the next host should be tried.

        A server that takes fewer recipients per message answers the rest with
        452 (RFC 5321 4.5.3.1.10): they go in another transaction right away.
        """
        batch = pending
        for _ in range(MAX_TRANSACTIONS_PER_HOST):
            transcript = await self._send(
                target, job.sender, batch, body, self._config.client, self.pool, job.wire_ready
            )
            self._count(transcript)
            verdict = judge(transcript, batch)
            merged.add(verdict)
            overflow = [
                r
                for r in batch
                if r not in merged.final and getattr(transcript.rcpt.get(r), "code", 0) == 452
            ]
            if not overflow or not verdict.of("delivered"):
                return verdict.try_next
            batch = overflow
        return False

    async def targets(self, domain: str) -> list[Target] | Undeliverable:
        """The (host, address) pairs to try in order, or why there are none."""
        smarthost = self._config.smarthost
        if smarthost is not None:
            return await self._smarthost_targets(smarthost)
        literal = address_literal(domain)
        if literal is not None:  # user@[192.0.2.1]: no MX look-up (RFC 5321 5.1)
            if points_to_self(literal, [literal], self._config.identity):
                return Undeliverable(MAIL_LOOP, f"{domain} is one of our own addresses")
            return [Target(literal, literal, self._config.remote_port)]
        plan = plan_mx(domain, await self._resolver.mx(domain), self._rng)
        if isinstance(plan, Undeliverable):
            return plan
        return await self._mx_targets(domain, plan)

    async def _mx_targets(self, domain: str, plan: MxHosts) -> list[Target] | Undeliverable:
        known = [self._known_addresses(host) for host in plan.hosts]
        resolved = [host for host in known if host is not None]
        if len(resolved) < len(known):  # something to look up: every host at once
            resolved = list(await asyncio.gather(*(self._addresses(h) for h in plan.hosts)))
        targets: list[Target] = []
        for index, host in enumerate(resolved):
            addresses = addresses_of(host)
            if points_to_self(host.host, addresses, self._config.identity):
                # RFC 5321 5.1: only hosts preferred over ourselves are worth trying.
                if index == 0:
                    return Undeliverable(MAIL_LOOP, f"MX for {domain} points back to us")
                break
            port = self._config.remote_port
            targets.extend(Target(host.host, address, port) for address in addresses)
        if not targets:
            return unresolvable(domain, resolved, plan.implicit)
        return targets[:MAX_ADDRESSES]

    async def _addresses(self, host: str) -> HostAddresses:
        known = self._known_addresses(host)
        if known is not None:
            return known
        answers = await asyncio.gather(
            self._resolver.query(host, "A"), self._resolver.query(host, "AAAA")
        )
        return HostAddresses(host, tuple(answers))

    def _known_addresses(self, host: str) -> HostAddresses | None:
        """What :meth:`_addresses` gives when no look-up is needed (an IP, or both answers
        cached); None otherwise. A hit costs no task: the gathers were 35 us a message."""
        if is_ip(host):
            return HostAddresses(host, (Records(values=(host,)),))
        a = self._resolver.cached(host, "A")
        if a is None:
            return None
        aaaa = self._resolver.cached(host, "AAAA")
        if aaaa is None:
            return None
        return HostAddresses(host, (a, aaaa))

    async def _smarthost_targets(self, smarthost: ListenAddress) -> list[Target] | Undeliverable:
        resolved = await self._addresses(smarthost.host)
        addresses = addresses_of(resolved)
        if not addresses:
            status = unresolvable(smarthost.host, [resolved], implicit=False, what="smarthost")
            # The relay host is ours to configure: never bounce because of it.
            return Undeliverable("4.4.3", status.reason)
        return [Target(smarthost.host, address, smarthost.port) for address in addresses]

    def _count(self, transcript: Transcript) -> None:
        metrics = self._metrics
        if transcript.reused:
            metrics.child(metrics.connections, "reused").inc()
        elif not transcript.connected:
            kind = "refused" if "refused" in transcript.error else "failed"
            metrics.child(metrics.connections, kind).inc()
            return
        elif transcript.reply is not None and transcript.reply_phase == "greeting":
            metrics.child(metrics.connections, f"greeting_{transcript.reply.code}").inc()
        else:
            metrics.child(metrics.connections, "ok").inc()
        if transcript.tls_fallback:
            metrics.child(metrics.tls, "fallback").inc()
        metrics.child(metrics.tls, "tls" if transcript.tls else "plaintext").inc()
