"""The router's decisions: which recipients, which route, how many delivery jobs.

Pure: an :class:`AcceptedMessage` and the :class:`RecipientDirectory` in, a
:class:`RoutingPlan` out. No I/O, no asyncio.

- Aliases expand recursively (``RecipientDirectory.expand``); a recipient
  whose expansion loops (or nests too deep) fails with ``5.4.6`` (mail
  forwarding loop), as Postfix reports it.
- A message that already carries more than ``MAX_HOPS`` ``Received:``
  headers is looping between mail systems: every recipient fails with
  ``5.4.6`` (Postfix's ``hopcount_limit``).
- Recipients at a local domain go into one ``route="local"`` job (domain
  ``""``); every other recipient goes into one ``route="relay"`` job per
  destination domain, also with a smarthost: the delivery side then keeps
  one domain's deferrals apart from another's, and the job count stays
  independent of how delivery reaches the domain.
- Recipients are de-duplicated case-insensitively (after expansion), keeping
  the first spelling seen.
- A final local recipient that does not exist (recipients file set; it can
  only come from an alias target, the ingress checks the others) fails with
  ``5.1.1``; one whose local part cannot name a Maildir folder, or an address
  without a domain, fails with ``5.1.3``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.addressing import (
    AliasLoop,
    RecipientDirectory,
    is_safe_local_part,
    normalize_address,
    parse_address,
    unique_addresses,
)
from services.common.envelope import (
    AcceptedMessage,
    BounceJob,
    DeliveryJob,
    RecipientResult,
    Route,
)

MAX_HOPS = 50  # Postfix's hopcount_limit default

LOOP_STATUS = "5.4.6"  # RFC 3463: routing loop detected (Postfix: "mail forwarding loop")
BAD_ADDRESS_STATUS = "5.1.3"  # RFC 3463: bad destination mailbox address syntax
UNKNOWN_USER_STATUS = "5.1.1"  # RFC 3463: bad destination mailbox address


@dataclass(frozen=True)
class RoutingPlan:
    """What to publish for one accepted message."""

    jobs: list[DeliveryJob]
    bounce: BounceJob | None = None
    alias_expansions: int = 0  # recipients that were aliases and got expanded
    failed: list[RecipientResult] = field(default_factory=list)

    def recipient_count(self, route: str) -> int:
        return sum(len(job.recipients) for job in self.jobs if job.route == route)


@dataclass
class _Collector:
    """Final recipients in arrival order, grouped by route and domain, de-duplicated."""

    directory: RecipientDirectory
    local: list[str] = field(default_factory=list)
    relay: dict[str, list[str]] = field(default_factory=dict)
    failed: list[RecipientResult] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def first_time(self, key: str) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def add(self, address: str, parsed: tuple[str, str, str] | None = None) -> None:
        """``parsed``: :func:`parse_address` of ``address``, when the caller has it already."""
        local, domain, key = parsed or parse_address(address)
        if not self.first_time(key):
            return
        # Why a final recipient cannot be delivered at all. The ingress checks the
        # recipients it accepts at RCPT; alias targets come from the aliases file and
        # are checked here (Postfix: "unknown user").
        if not domain:
            self.failed.append(_failure(address, BAD_ADDRESS_STATUS, "address has no domain"))
        elif not self.directory.is_local_domain(domain):
            self.relay.setdefault(domain, []).append(address)
        elif not is_safe_local_part(local):
            reason = "local part cannot name a mailbox"
            self.failed.append(_failure(address, BAD_ADDRESS_STATUS, reason))
        elif not self.directory.local_recipient_exists(address):
            reason = f'unknown user: "{local.lower()}"'
            self.failed.append(_failure(address, UNKNOWN_USER_STATUS, reason))
        else:
            self.local.append(address)

    def fail(self, address: str, status: str, reason: str) -> None:
        if self.first_time(normalize_address(address)):
            self.failed.append(_failure(address, status, reason))


def route_message(message: AcceptedMessage, directory: RecipientDirectory) -> RoutingPlan:
    """Expand, split and group the recipients of ``message`` into delivery jobs."""
    if message.received_headers > MAX_HOPS:
        reason = f"hop count exceeded ({message.received_headers} Received: headers)"
        recipients = unique_addresses(message.recipients)
        looped = [_failure(rcpt, LOOP_STATUS, reason) for rcpt in recipients]
        return RoutingPlan(jobs=[], bounce=_bounce(message, looped), failed=looped)

    collector = _Collector(directory)
    expansions = 0
    aliases_seen: set[str] = set()
    # Each address is split and normalised once. A repeated recipient that is no
    # alias is dropped by the collector (same key); a repeated alias is skipped here,
    # so it counts as one expansion, as when the recipients were de-duplicated first.
    for recipient in message.recipients:
        parsed = parse_address(recipient)
        key = parsed[2]
        if key not in directory.aliases:  # not an alias: it expands to itself
            collector.add(recipient, parsed)
            continue
        if key in aliases_seen:
            continue
        aliases_seen.add(key)
        try:
            targets = directory.expand(recipient)
        except AliasLoop as exc:
            collector.fail(recipient, LOOP_STATUS, f"mail forwarding loop: {exc}")
            continue
        expansions += 1
        for target in targets:
            collector.add(target)

    failed = collector.failed
    jobs = _jobs(message, collector)
    bounce = _bounce(message, failed) if failed else None
    return RoutingPlan(jobs=jobs, bounce=bounce, alias_expansions=expansions, failed=failed)


def _jobs(message: AcceptedMessage, collector: _Collector) -> list[DeliveryJob]:
    jobs: list[DeliveryJob] = []
    if collector.local:
        jobs.append(_job(message, collector.local, "local", ""))
    for domain, recipients in collector.relay.items():
        jobs.append(_job(message, recipients, "relay", domain))
    return jobs


def _job(message: AcceptedMessage, recipients: list[str], route: Route, domain: str) -> DeliveryJob:
    return DeliveryJob(
        queue_id=message.queue_id,
        sender=message.sender,
        recipients=recipients,
        route=route,
        domain=domain,
        accepted_at=message.accepted_at,
        received_headers=message.received_headers,
        wire_ready=message.wire_ready,
    )


def _failure(recipient: str, status: str, reason: str) -> RecipientResult:
    # No remote server answered: the reason goes in the diagnostic without an
    # SMTP reply code, and the DSN writer labels it as our own (X-Staffetta).
    return RecipientResult(recipient=recipient, action="failed", status=status, diagnostic=reason)


def _bounce(message: AcceptedMessage, failed: list[RecipientResult]) -> BounceJob:
    return BounceJob(
        queue_id=message.queue_id,
        sender=message.sender,
        accepted_at=message.accepted_at,
        kind="failure",
        results=failed,
    )
