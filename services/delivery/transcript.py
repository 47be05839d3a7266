"""What happened in one SMTP session with one host, and what it means.

Pure: the SMTP client adapter fills a :class:`Transcript`; :func:`judge` turns
it into per-recipient results and says whether the next MX should be tried
(connection trouble, a 421, or a temporary failure of the whole transaction),
or whether to stop (a 5xx, or a transaction that went through).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.envelope import RecipientResult
from services.delivery.replies import SmtpReply, local_result, result_from_reply, status_of

Phase = str  # "connect", "greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data"


@dataclass
class Transcript:
    """Filled in by the SMTP client as the session goes."""

    remote_mta: str  # "mx1.example.test[127.0.0.2]"
    error: str = ""  # connection-level trouble (refused, timeout, lost), with its phase
    error_phase: Phase = ""
    reply: SmtpReply | None = None  # a reply that ended the session before RCPT
    reply_phase: Phase = ""
    rcpt: dict[str, SmtpReply] = field(default_factory=dict)
    data_reply: SmtpReply | None = None
    tls: bool = False
    tls_fallback: bool = False  # STARTTLS failed and we went on in plaintext
    reused: bool = False  # carried over a cached session (after RSET)
    refused_here: str = ""  # a status we decided on without asking (e.g. 5.6.7, no SMTPUTF8)

    @property
    def reusable(self) -> bool:
        """Did the session end in a state fit for the next transaction (after RSET)?"""
        replies = [*self.rcpt.values(), *([self.data_reply] if self.data_reply else [])]
        return not self.error and self.reply is None and all(r.code != 421 for r in replies)

    @property
    def connected(self) -> bool:
        return not (self.error and self.error_phase == "connect")


@dataclass(frozen=True)
class HostVerdict:
    results: dict[str, RecipientResult]  # one per recipient tried
    try_next: bool  # move on to the next MX with the deferred recipients

    def of(self, action: str) -> list[str]:
        return [r for r, result in self.results.items() if result.action == action]


NO_ANSWER = "4.4.1"  # no answer from host
BAD_CONNECTION = "4.4.2"  # connection lost
AUTH_TROUBLE = "4.7.0"  # our credentials or the relay's AUTH: an operator must act


def _deferred_all(recipients: Sequence[str], status: str, mta: str) -> dict[str, RecipientResult]:
    return {r: local_result(r, status, mta) for r in recipients}


def judge(transcript: Transcript, recipients: Sequence[str]) -> HostVerdict:
    """Per-recipient results of one session, and whether to try the next host."""
    mta = transcript.remote_mta
    if transcript.refused_here:
        refused = {r: local_result(r, transcript.refused_here, mta) for r in recipients}
        return HostVerdict(refused, try_next=not transcript.refused_here.startswith("5"))
    if transcript.reply is not None and not transcript.reply.is_positive:
        return _session_reply(transcript.reply, transcript.reply_phase, recipients, mta)
    if not transcript.rcpt:
        status = NO_ANSWER if not transcript.connected else BAD_CONNECTION
        return HostVerdict(_deferred_all(recipients, status, mta), try_next=True)

    results: dict[str, RecipientResult] = {}
    accepted: list[str] = []
    for recipient in recipients:
        reply = transcript.rcpt.get(recipient)
        if reply is None:  # the session ended before this RCPT
            results[recipient] = local_result(recipient, BAD_CONNECTION, mta)
        elif reply.is_positive:
            accepted.append(recipient)
        else:
            results[recipient] = result_from_reply(recipient, reply, mta)
    if not accepted:
        every_temporary = all(result.action == "deferred" for result in results.values())
        return HostVerdict(results, try_next=every_temporary)

    data = transcript.data_reply
    for recipient in accepted:
        if data is None:
            results[recipient] = local_result(recipient, BAD_CONNECTION, mta)
        else:
            results[recipient] = result_from_reply(recipient, data, mta)
    try_next = data is None or data.is_transient
    return HostVerdict(results, try_next=try_next)


def _defer_all(recipients: Sequence[str], status: str, reply: SmtpReply, mta: str) -> HostVerdict:
    """Every recipient deferred with ``status``; the next MX host may be tried."""
    results = {
        r: RecipientResult(
            recipient=r,
            action="deferred",
            status=status,
            diagnostic=reply.diagnostic,
            remote_mta=mta,
        )
        for r in recipients
    }
    return HostVerdict(results, try_next=True)


def _session_reply(
    reply: SmtpReply, phase: Phase, recipients: Sequence[str], mta: str
) -> HostVerdict:
    if phase == "auth" or (phase == "starttls" and reply.is_permanent):
        # A refused login or a relay without TLS is a configuration problem:
        # defer (and alert through metrics and logs) rather than bounce.
        return _defer_all(recipients, AUTH_TROUBLE, reply, mta)
    if phase == "greeting" and reply.is_permanent:
        # Like Postfix's smtp_skip_5xx_greeting: a host refusing service as a
        # whole is skipped; the message waits rather than bounces.
        return _defer_all(recipients, "4" + status_of(reply)[1:], reply, mta)
    results = {r: result_from_reply(r, reply, mta) for r in recipients}
    return HostVerdict(results, try_next=not reply.is_permanent)
