"""The human-readable part of a DSN, worded the way Postfix's bounce(8) words it.

Pure text functions: values in, lines out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from services.common.envelope import BounceKind, RecipientResult

# RFC 3463 (and RFC 3886/7372 additions) detail codes we may report, in words.
_STATUS_TEXT = {
    "0.0": "other or undefined status",
    "1.0": "other address status",
    "1.1": "bad destination mailbox address (no such user)",
    "1.2": "bad destination system address (no such domain)",
    "1.3": "bad destination mailbox address syntax",
    "1.10": "recipient address has null MX",
    "2.0": "other or undefined mailbox status",
    "2.1": "mailbox disabled, not accepting messages",
    "2.2": "mailbox full",
    "2.3": "message length exceeds administrative limit",
    "3.0": "other or undefined mail system status",
    "3.1": "mail system full",
    "3.4": "message too big for system",
    "4.0": "other or undefined network or routing status",
    "4.1": "no answer from host",
    "4.2": "bad connection",
    "4.3": "directory server failure",
    "4.4": "unable to route",
    "4.6": "mail forwarding loop",
    "4.7": "delivery time expired",
    "5.0": "other or undefined protocol status",
    "7.0": "other or undefined security status",
    "7.1": "delivery not authorized, message refused",
}

_FAILURE_INTRO = """\
This is the mail system at host {hostname}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. Its headers are attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report.

                   The mail system
"""

_DELAY_INTRO = """\
This is the mail system at host {hostname}.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than {waited}.
It will be retried until it is {lifetime} old.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report.

                   The mail system
"""


def status_text(status: str) -> str:
    """``5.1.1`` -> ``bad destination mailbox address (no such user)``."""
    _, _, detail = status.partition(".")
    return _STATUS_TEXT.get(detail, _STATUS_TEXT["0.0"])


def human_duration(seconds: float) -> str:
    """Rounded down to what a person wants to read: ``4 hours``, ``5 days``, ``10 minutes``."""
    whole = max(int(seconds), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if whole >= size:
            count = whole // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{whole} second{'s' if whole != 1 else ''}"


def is_smtp_reply(diagnostic: str) -> bool:
    """Does the diagnostic start with an SMTP reply code (a remote server answered)?"""
    head = diagnostic.lstrip()[:4]
    return (
        len(head) >= 3 and head[0] in "2345" and head[1:3].isdigit() and head[3:] in ("", " ", "-")
    )


def recipient_line(result: RecipientResult, waited: float = 0.0) -> str:
    """One paragraph per recipient: who, and what happened (the remote reply when any)."""
    diagnostic = " ".join(result.diagnostic.split())
    if result.remote_mta and diagnostic:
        reason = f"host {result.remote_mta} said: {diagnostic}"
    elif diagnostic:
        reason = diagnostic
    else:
        reason = f"{status_text(result.status)} (status {result.status})"
    if result.status == "4.4.7":
        expired = f"message expired after {human_duration(waited)} in the queue"
        reason = f"{expired}; the last attempt failed: {reason}" if diagnostic else expired
    return textwrap.fill(
        f"<{result.recipient}>: {reason}",
        width=76,
        subsequent_indent="    ",
        break_long_words=True,
        break_on_hyphens=False,
    )


def human_report(
    kind: BounceKind,
    hostname: str,
    results: Iterable[RecipientResult],
    *,
    waited: float,
    lifetime: float,
) -> str:
    """The text/plain part: the introduction, then one paragraph per recipient."""
    if kind == "delay":
        intro = _DELAY_INTRO.format(
            hostname=hostname, waited=human_duration(waited), lifetime=human_duration(lifetime)
        )
    else:
        intro = _FAILURE_INTRO.format(hostname=hostname)
    paragraphs = [recipient_line(result, waited) for result in results]
    return intro + "\n" + "\n\n".join(paragraphs) + "\n"
