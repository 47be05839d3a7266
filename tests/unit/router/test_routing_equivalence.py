"""route_message against the straightforward version it replaced, over many odd inputs.

The router splits and normalises each address once; the reference below is the
earlier code, which normalised the same address at every step (de-duplication,
alias expansion, the alias test, the collector). Both must give equal plans.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from services.common.addressing import (
    AliasLoop,
    RecipientDirectory,
    is_safe_local_part,
    normalize_address,
    parse_address,
    split_address,
    unique_addresses,
)
from services.common.envelope import AcceptedMessage, RecipientResult
from services.router.routing import (
    BAD_ADDRESS_STATUS,
    LOOP_STATUS,
    MAX_HOPS,
    UNKNOWN_USER_STATUS,
    RoutingPlan,
    _bounce,
    _failure,
    _jobs,
    route_message,
)


@dataclass
class _ReferenceCollector:
    directory: RecipientDirectory
    local: list[str] = field(default_factory=list)
    relay: dict[str, list[str]] = field(default_factory=dict)
    failed: list[RecipientResult] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def first_time(self, address: str) -> bool:
        key = normalize_address(address)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def add(self, address: str) -> None:
        if not self.first_time(address):
            return
        refusal = _reference_refusal(address, self.directory)
        if refusal is not None:
            self.failed.append(refusal)
            return
        _, domain = split_address(address)
        if self.directory.is_local_domain(domain):
            self.local.append(address)
        else:
            self.relay.setdefault(domain, []).append(address)

    def fail(self, address: str, status: str, reason: str) -> None:
        if self.first_time(address):
            self.failed.append(_failure(address, status, reason))


def _reference_refusal(address: str, directory: RecipientDirectory) -> RecipientResult | None:
    local, domain = split_address(address)
    if not domain:
        return _failure(address, BAD_ADDRESS_STATUS, "address has no domain")
    if not directory.is_local_domain(domain):
        return None
    if not is_safe_local_part(local):
        return _failure(address, BAD_ADDRESS_STATUS, "local part cannot name a mailbox")
    if not directory.local_recipient_exists(address):
        return _failure(address, UNKNOWN_USER_STATUS, f'unknown user: "{local.lower()}"')
    return None


def reference_route(message: AcceptedMessage, directory: RecipientDirectory) -> RoutingPlan:
    if message.received_headers > MAX_HOPS:
        reason = f"hop count exceeded ({message.received_headers} Received: headers)"
        recipients = unique_addresses(message.recipients)
        looped = [_failure(rcpt, LOOP_STATUS, reason) for rcpt in recipients]
        return RoutingPlan(jobs=[], bounce=_bounce(message, looped), failed=looped)
    collector = _ReferenceCollector(directory)
    expansions = 0
    for recipient in unique_addresses(message.recipients):
        try:
            targets = directory.expand(recipient)
        except AliasLoop as exc:
            collector.fail(recipient, LOOP_STATUS, f"mail forwarding loop: {exc}")
            continue
        if directory.is_alias(recipient):
            expansions += 1
        for target in targets:
            collector.add(target)
    failed = collector.failed
    jobs = _jobs(message, collector)  # type: ignore[arg-type]  # same fields as _Collector
    bounce = _bounce(message, failed) if failed else None
    return RoutingPlan(jobs=jobs, bounce=bounce, alias_expansions=expansions, failed=failed)


LOCALS = ["a", "A", "bob", "Bob", "x.y", "john.doe+tag", "", ".", "..", "a..b", "a/b", "a\\b"]
LOCALS += ["a\x00b", "tab\tin", "ünï", "ÜNÏ", "team", "Team", "loop1", "LOOP2", "deep0", "empty"]
LOCALS += ["ghost", "quoted@part", " spaced ", "self"]
DOMAINS = ["local.test", "LOCAL.test.", "local.test. .", " local.test", "other.test", "Other.Test"]
DOMAINS += ["remote.test", "Remote.Test.", "far.test", "bücher.example", "BÜCHER.example."]
DOMAINS += ["xn--bcher-kva.example", "[127.0.0.1]", "[IPv6:::1]", "", "a..b", "\u2603", "x" * 70]
ALIASES = {
    "team@local.test": ["Bob@local.test", "carol@Remote.Test", "ops@local.test"],
    "self@local.test": ["Self@local.test."],
    "ops@local.test": ["bob@LOCAL.test", "oncall@far.test", "ghost@local.test", "a/b@local.test"],
    "loop1@local.test": ["loop2@local.test"],
    "loop2@local.test": ["x@remote.test", "loop1@local.test"],
    "empty@local.test": [],
    "ünï@xn--bcher-kva.example": ["a@remote.test", "nodomain", "A@bücher.example"],
    **{f"deep{i}@local.test": [f"deep{i + 1}@local.test"] for i in range(12)},
}


def random_address(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(LOCALS)  # no @ at all
    if roll < 0.1:
        return f"{rng.choice(LOCALS)}@{rng.choice(LOCALS)}@{rng.choice(DOMAINS)}"
    return f"{rng.choice(LOCALS)}@{rng.choice(DOMAINS)}"


def random_directory(rng: random.Random) -> RecipientDirectory:
    local_domains = frozenset(rng.sample(["local.test", "xn--bcher-kva.example", "[127.0.0.1]"], 2))
    known = None
    if rng.random() < 0.5:
        known = frozenset({"bob@local.test", "a@xn--bcher-kva.example"})
    aliases = ALIASES if rng.random() < 0.7 else {}
    return RecipientDirectory(local_domains, known, aliases)


@pytest.mark.parametrize("seed", range(8))
def test_route_message_matches_the_reference_on_random_messages(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        pool = [random_address(rng) for _ in range(4)]
        recipients = [rng.choice(pool) for _ in range(rng.randint(0, 7))]
        message = AcceptedMessage(
            queue_id="QID",
            sender=rng.choice(["", "s@example.org"]),
            recipients=recipients,
            accepted_at=1.0,
            received_headers=rng.choice([0, 1, MAX_HOPS, MAX_HOPS + 1]),
        )
        directory = random_directory(rng)
        assert route_message(message, directory) == reference_route(message, directory), recipients


def test_repeated_aliases_and_spellings_match_the_reference() -> None:
    directory = RecipientDirectory(frozenset({"local.test"}), None, ALIASES)
    recipients = ["Team@local.test", "team@LOCAL.test.", "bob@local.test", "loop1@local.test"]
    recipients += ["LOOP1@local.test", "empty@local.test", "Empty@Local.Test", "deep0@local.test"]
    recipients += ["self@local.test", "ops@local.test"]
    message = AcceptedMessage(queue_id="Q", sender="", recipients=recipients, accepted_at=1.0)
    plan = route_message(message, directory)
    assert plan == reference_route(message, directory)
    assert plan.alias_expansions == 3  # team, empty and ops, each once; the loops failed
    assert [result.recipient for result in plan.failed] == [
        "a/b@local.test",
        "loop1@local.test",
        "deep0@local.test",
        "self@local.test",
    ]


def test_parse_address_is_split_and_normalise_in_one() -> None:
    rng = random.Random(1)
    addresses = [random_address(rng) for _ in range(3000)] + ["", "@", "@@", "a@", "@b"]
    for address in addresses:
        assert parse_address(address) == (*split_address(address), normalize_address(address))
