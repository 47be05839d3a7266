"""Addresses, local domains, the recipients file and aliases: pure lookups.

Both the ingress (to refuse unknown local recipients at RCPT) and the router
(to expand aliases) read the same tables, so they live here. No I/O beyond
loading the files once at start (callers may reload).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_ALIAS_DEPTH = 10


class AliasLoop(ValueError):
    """An alias refers back to itself or nests deeper than ``MAX_ALIAS_DEPTH``."""


def normalize_domain(domain: str) -> str:
    """Lower-case, no trailing dot, IDN in its ASCII (punycode) form."""
    cleaned = domain.strip().rstrip(".").lower()
    if cleaned.startswith("[") or cleaned.isascii():
        return cleaned
    return _idna_ascii(cleaned)


@functools.lru_cache(maxsize=1024)
def _idna_ascii(domain: str) -> str:
    # Python's idna codec takes about 15 us a domain, and one message passes its
    # recipients' domains through here several times in each service.
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def split_address(address: str) -> tuple[str, str]:
    """``local@domain`` -> (local, normalised domain); the last ``@`` separates them."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, normalize_domain(domain)


def normalize_address(address: str) -> str:
    """The form used for table look-ups: local part lower-cased, domain normalised."""
    return parse_address(address)[2]


def parse_address(address: str) -> tuple[str, str, str]:
    """(local, normalised domain, :func:`normalize_address`) from one split, for hot paths."""
    local, domain = split_address(address)
    return local, domain, f"{local.lower()}@{domain}" if domain else local.lower()


def unique_addresses(addresses: Iterable[str]) -> list[str]:
    """Drop repeats (compared as :func:`normalize_address`), keeping the first spelling."""
    seen: set[str] = set()
    unique = []
    for address in addresses:
        key = normalize_address(address)
        if key not in seen:
            seen.add(key)
            unique.append(address)
    return unique


def is_safe_local_part(local: str) -> bool:
    """Can this local part name a Maildir folder without escaping it?"""
    if not local or local in (".", "..") or "/" in local or "\\" in local or "\x00" in local:
        return False
    if ".." in local:
        return False
    return all(ord(char) >= 0x20 and ord(char) != 0x7F for char in local)


def content_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each line of a table file that says something.

    A ``#`` starts a comment; lines blank once it is cut are skipped.
    """
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            yield number, line


def parse_alias_lines(lines: Iterable[str]) -> dict[str, list[str]]:
    """Parse ``alias@domain: target[, target...]`` lines (``#`` comments, blanks ignored)."""
    table: dict[str, list[str]] = {}
    for number, line in content_lines(lines):
        name, colon, targets = line.partition(":")
        if not colon or "@" not in name:
            raise ValueError(f"aliases line {number}: expected 'alias@domain: target, ...'")
        parsed = [item.strip() for item in targets.split(",") if item.strip()]
        if not parsed:
            raise ValueError(f"aliases line {number}: {name.strip()!r} has no target")
        table.setdefault(normalize_address(name), []).extend(parsed)
    return table


def parse_recipient_lines(lines: Iterable[str]) -> frozenset[str]:
    """One address a line; ``#`` comments and blank lines ignored."""
    return frozenset(normalize_address(line) for _, line in content_lines(lines))


@dataclass(frozen=True)
class RecipientDirectory:
    """Which domains are ours, which local recipients exist, and the aliases."""

    local_domains: frozenset[str]
    known_recipients: frozenset[str] | None = None  # None: every local recipient exists
    aliases: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        local_domains: Iterable[str],
        recipients_file: Path | None = None,
        aliases_file: Path | None = None,
    ) -> RecipientDirectory:
        known = None
        if recipients_file is not None:
            known = parse_recipient_lines(recipients_file.read_text().splitlines())
        aliases: dict[str, list[str]] = {}
        if aliases_file is not None:
            aliases = parse_alias_lines(aliases_file.read_text().splitlines())
        return cls(frozenset(normalize_domain(d) for d in local_domains), known, aliases)

    def is_local_domain(self, domain: str) -> bool:
        return normalize_domain(domain) in self.local_domains

    def is_alias(self, address: str) -> bool:
        return normalize_address(address) in self.aliases

    def local_recipient_exists(self, address: str) -> bool:
        """For an address at a local domain: a known user or an alias."""
        key = normalize_address(address)
        if key in self.aliases:
            return True
        return self.known_recipients is None or key in self.known_recipients

    def expand(self, address: str) -> list[str]:
        """Final recipients of ``address`` after recursive alias expansion.

        Raises :class:`AliasLoop` for a cycle or nesting beyond ``MAX_ALIAS_DEPTH``.
        An address that is not an alias expands to itself.
        """
        result: list[str] = []
        self._expand(address, (), result)
        return unique_addresses(result)

    def _expand(self, address: str, chain: tuple[str, ...], out: list[str]) -> None:
        key = normalize_address(address)
        targets = self.aliases.get(key)
        if targets is None:
            out.append(address)
            return
        if key in chain:
            raise AliasLoop(f"alias loop: {' -> '.join((*chain, key))}")
        if len(chain) >= MAX_ALIAS_DEPTH:
            raise AliasLoop(f"aliases nest deeper than {MAX_ALIAS_DEPTH} levels at {key}")
        for target in targets:
            self._expand(target, (*chain, key), out)
