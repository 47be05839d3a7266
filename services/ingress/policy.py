"""Who may send what to whom: the ingress relay policy, as pure decisions.

Values in (the client, the address, the directory), a :class:`Reply` out.
No I/O and no asyncio here: the SMTP adapter asks, then answers what we say.

The rules, in the order Postfix's ``smtpd_recipient_restrictions`` would apply
them with ``reject_unauth_destination`` and ``allow_untrusted_routing = no``:

* an address without a domain, one we cannot parse, or one past the RFC 5321
  limits (local part 64 octets, domain 255) is refused (553 5.1.3);
* a recipient at a local domain is accepted from anyone, unless its local part
  cannot be a safe Maildir folder (550 5.1.3), carries routing syntax
  (``%``, ``!``, ``@``) from a client that may not relay (554 5.7.1), or is
  unknown while a recipients file is set (550 5.1.1; aliases always exist);
* any other domain is accepted only from trusted networks on the MTA port or
  from an authenticated client; everything else is relay access denied
  (554 5.7.1).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from services.common.addressing import RecipientDirectory, is_safe_local_part, split_address
from services.ingress import replies
from services.ingress.replies import Reply

PortKind = Literal["smtp", "submission", "submissions"]

# Characters that turn a local part into a route to somewhere else
# (``user%remote@local``, ``remote!user@local``, ``"user@remote"@local``).
_ROUTING_CHARACTERS = ("%", "!", "@")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 5321 4.5.3.1.1 and 4.5.3.1.2, in octets.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def client_ip(address: str) -> IPAddress | None:
    """The client ``address`` without zone id, IPv4-mapped IPv6 as IPv4; None if bad."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_trusted(address: str, networks: Iterable[IPNetwork]) -> bool:
    """Is the client ``address`` inside one of ``networks``? Bad input is not trusted."""
    ip = client_ip(address)
    if ip is None:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


@dataclass(frozen=True)
class Client:
    """What the policy knows about the SMTP client."""

    address: str
    port: PortKind = "smtp"
    trusted: bool = False  # inside STAFFETTA_TRUSTED_NETWORKS
    user: str = ""  # the authenticated account, "" when not authenticated

    @property
    def may_relay(self) -> bool:
        """Trusted networks relay on the MTA port only; AUTH relays everywhere."""
        return bool(self.user) or (self.trusted and self.port == "smtp")


@dataclass(frozen=True)
class Limits:
    max_message_size: int
    max_recipients: int


def check_recipient(
    client: Client,
    address: str,
    directory: RecipientDirectory,
    accepted_so_far: int,
    max_recipients: int,
) -> Reply:
    """The reply to ``RCPT TO:<address>``."""
    if accepted_so_far >= max_recipients:
        return replies.TOO_MANY_RECIPIENTS
    local, domain = split_address(address)
    if not domain or not local or _too_long(address):
        return replies.BAD_ADDRESS
    if not directory.is_local_domain(domain):
        return replies.RECIPIENT_OK if client.may_relay else replies.RELAY_DENIED
    if not is_safe_local_part(local):
        return replies.UNSAFE_RECIPIENT
    if any(char in local for char in _ROUTING_CHARACTERS) and not client.may_relay:
        return replies.RELAY_DENIED
    if not directory.local_recipient_exists(address):
        return replies.UNKNOWN_RECIPIENT
    return replies.RECIPIENT_OK


CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")  # C0 (NUL, CR, LF, TAB, ...) or DEL


def has_control_character(text: str) -> bool:
    """Any C0 control character (NUL, CR, LF, TAB, ...) or DEL in ``text``?"""
    return CONTROL_CHARACTER.search(text) is not None


def check_sender(address: str) -> Reply:
    """The reply to ``MAIL FROM:<address>`` (the null sender ``""`` is fine)."""
    if address == "":
        return replies.SENDER_OK
    local, domain = split_address(address)
    if not local or not domain or has_control_character(address):
        return replies.BAD_SENDER
    if _too_long(address):
        return replies.BAD_SENDER
    return replies.SENDER_OK


def _too_long(address: str) -> bool:
    local, _, domain = address.rpartition("@")
    return (
        len(local.encode(errors="replace")) > MAX_LOCAL_PART
        or len(domain.encode(errors="replace")) > MAX_DOMAIN
    )


def without_root_dot(argument: str) -> str | None:
    """``<user@domain.>`` as ``<user@domain>``: the argument of MAIL/RCPT without the
    one trailing dot of a fully qualified domain, or None when there is none to drop.

    RFC 5321 has no such dot, but clients and humans write it (DNS's root); like
    Postfix we take ``local.test.`` as ``local.test``. Only one dot goes: ``domain..``
    stays a syntax error, and the address is then judged like any other.
    """
    text = argument.lstrip()
    end = text.find(">") if text.startswith("<") else len(text.split(" ", 1)[0])
    if end < 3 or text[end - 1] != "." or text[end - 2] in ".@:<[]":
        return None
    if "@" not in text[:end]:
        return None
    return text[: end - 1] + text[end:]


def check_declared_size(declared: int | None, limits: Limits) -> Reply:
    """``MAIL FROM:<...> SIZE=n``: refuse up front what cannot fit."""
    if declared is not None and declared > limits.max_message_size:
        return replies.MESSAGE_TOO_BIG
    return replies.SENDER_OK
