"""Which envelope senders an authenticated account may use (pure).

``STAFFETTA_SENDER_LOGINS_FILE`` works like Postfix's ``smtpd_sender_login_maps``
with ``reject_authenticated_sender_login_mismatch``: lines

    alice@example.com: alice
    @example.com: admin, bob      # every address at the domain
    # comments and blank lines are ignored

When the file is set, an authenticated client may use as ``MAIL FROM`` only an
address whose line names its account, else ``553 5.7.1``. The most specific
line wins: an address line overrides its domain's line (as in Postfix).
Addresses compare like everywhere else (local part and domain case-insensitive,
IDN in either form, a trailing dot ignored); account names compare exactly, as
in the users file. An account listed nowhere may use no sender at all.

Not restricted: the null sender ``<>`` (as Postfix: auto-replies and
notifications need it, and a message from ``<>`` can never bounce back to a
forged victim), and clients that did not authenticate (trusted networks, mail
from the outside on the MTA port): those are the relay policy's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from services.common.addressing import normalize_address, normalize_domain, split_address
from services.ingress import replies
from services.ingress.replies import Reply


@dataclass(frozen=True)
class SenderLogins:
    """Owners by sender: ``local@domain`` and ``@domain`` keys, normalised."""

    owners: dict[str, frozenset[str]] = field(default_factory=dict)

    def owners_of(self, sender: str) -> frozenset[str]:
        """The accounts that may use ``sender`` (most specific line first)."""
        found = self.owners.get(normalize_address(sender))
        if found is not None:
            return found
        _, domain = split_address(sender)
        return self.owners.get(f"@{domain}", frozenset()) if domain else frozenset()

    def may_use(self, user: str, sender: str) -> bool:
        return user in self.owners_of(sender)


def _key(name: str) -> str:
    if name.startswith("@"):
        return "@" + normalize_domain(name[1:])
    return normalize_address(name)


def parse_sender_logins(lines: Iterable[str]) -> SenderLogins:
    """``sender-or-@domain: user[, user...]`` lines; raises ValueError naming the bad line."""
    owners: dict[str, set[str]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, colon, users = line.rpartition(":")
        name = name.strip()
        _, at, domain = name.rpartition("@")
        accounts = {item.strip() for item in users.split(",") if item.strip()}
        if not colon or not at or not domain.strip(". ") or " " in name or not accounts:
            raise ValueError(
                f"sender logins line {number}: expected 'sender@domain: user[, user...]' "
                "or '@domain: user[, user...]'"
            )
        owners.setdefault(_key(name), set()).update(accounts)
    return SenderLogins({key: frozenset(users) for key, users in owners.items()})


def load_sender_logins(path: Path) -> SenderLogins:
    return parse_sender_logins(path.read_text().splitlines())


def check_sender_login(logins: SenderLogins | None, user: str, sender: str) -> Reply:
    """The verdict on ``MAIL FROM:<sender>`` from ``user`` ("" when not authenticated)."""
    if logins is None or not user or sender == "":
        return replies.SENDER_OK
    if logins.may_use(user, sender):
        return replies.SENDER_OK
    return replies.SENDER_NOT_OWNED
