"""SMTP replies as typed values, and what each one means for a recipient.

Pure: values in, decisions out. A reply is kept as the remote server wrote it
(``diagnostic``) and classified by its code into delivered / deferred / failed
with the RFC 3463 enhanced status it carries, or ``2.0.0``/``4.0.0``/``5.0.0``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.envelope import Action, RecipientResult

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


@dataclass(frozen=True)
class SmtpReply:
    code: int
    text: str = ""

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @property
    def diagnostic(self) -> str:
        """The reply on one line, as a DSN's ``Diagnostic-Code: smtp;`` shows it."""
        lines = [line.strip() for line in self.text.splitlines() if line.strip()]
        return f"{self.code} {' '.join(lines)}".strip()

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code at the start of the text, when its class matches."""
        match = _ENHANCED.match(self.text.strip())
        if match is None or int(match.group(1)) != self.code // 100:
            return None
        return ".".join(match.groups())

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500


def action_of(reply: SmtpReply) -> Action:
    if reply.is_positive:
        return "delivered"
    if reply.is_transient:
        return "deferred"
    return "failed"


def status_of(reply: SmtpReply) -> str:
    enhanced = reply.enhanced
    if enhanced is not None:
        return enhanced
    if reply.is_positive:
        return "2.0.0"
    return "4.0.0" if reply.is_transient else "5.0.0"


def result_from_reply(recipient: str, reply: SmtpReply, remote_mta: str) -> RecipientResult:
    """The outcome for ``recipient`` when ``remote_mta`` answered ``reply``."""
    return RecipientResult(
        recipient=recipient,
        action=action_of(reply),
        status=status_of(reply),
        diagnostic=reply.diagnostic,
        remote_mta=remote_mta,
    )


def local_result(recipient: str, status: str, remote_mta: str = "") -> RecipientResult:
    """An outcome decided without a remote answer (DNS, loops, Maildir, lifetime)."""
    first = status[:1]
    action: Action = "delivered" if first == "2" else "deferred" if first == "4" else "failed"
    return RecipientResult(recipient=recipient, action=action, status=status, remote_mta=remote_mta)
