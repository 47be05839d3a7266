"""RFC 3464 delivery status notifications, built from a :class:`BounceJob`.

Pure: the job, the original message bytes and a :class:`DsnContext` in, the
DSN's bytes (CRLF line ends) out. The layout follows Postfix's bounce(8):

    multipart/report; report-type=delivery-status
      1. text/plain                 the explanation for a person
      2. message/delivery-status    per-message and per-recipient fields
      3. text/rfc822-headers        the original headers (never the body)

When the original headers or an address are not ASCII (SMTPUTF8 mail), parts
2 and 3 become ``message/global-delivery-status`` and ``message/global-headers``
(RFC 6533), in the 8bit encoding RFC 6533 asks for "whenever possible" (the
original reached us 8-bit; delivery sends BODY=8BITMIME where offered); header
lines too long for SMTP, or 8-bit headers that are not UTF-8, are returned
base64-encoded instead. The human part is quoted-printable when not ASCII.
"""

from __future__ import annotations

import base64
import email.quoprimime
import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

from services.bounce.wording import human_report, is_smtp_reply
from services.common.addressing import normalize_address
from services.common.envelope import BounceJob, BounceKind, RecipientResult

MAX_LINE = 78  # RFC 5322's "should" for line length
MAX_WORD = 900  # below RFC 5322's hard limit of 998 characters per line
MAX_DIAGNOSTIC = 2000  # a remote reply longer than this is cut (multi-line replies are joined)

SUBJECTS: dict[BounceKind, str] = {
    "failure": "Undelivered Mail Returned to Sender",
    "delay": "Delayed Mail (still being retried)",
}


@dataclass(frozen=True)
class DsnContext:
    """What the DSN needs besides the job: who we are, when, and our limits."""

    hostname: str
    queue_id: str  # the DSN's own queue id (its Message-ID and Received: id)
    now: float  # Unix time the DSN is written (Date, Last-Attempt-Date)
    max_queue_lifetime: float  # seconds; a delayed recipient is retried until accepted_at + this


def drop_reason(job: BounceJob, reported: list[RecipientResult]) -> str | None:
    """Why no DSN may be sent for ``job``, or ``None`` when one should be.

    ``reported`` are the job's :func:`reported_results`. A message with the null
    sender (a DSN itself) is never bounced: that is what stops two mail systems
    from bouncing bounces at each other forever.
    """
    if job.sender.strip() in ("", "<>"):
        return "null_sender"
    if not reported:
        return "no_recipients"
    return None


def reported_results(job: BounceJob) -> list[RecipientResult]:
    """The recipients this DSN reports on: each once, and never a delivered one."""
    seen: set[str] = set()
    reported = []
    for result in job.results:
        key = normalize_address(result.recipient)
        if result.action != "delivered" and key not in seen:
            seen.add(key)
            reported.append(result)
    return reported


def format_date(timestamp: float) -> str:
    """An RFC 5322 date-time, e.g. ``Sat, 28 Nov 2026 20:12:35 +0000``."""
    return email.utils.format_datetime(datetime.fromtimestamp(timestamp, UTC))


def fold(name: str, value: str) -> str:
    """``Name: value`` folded at spaces into lines of at most 78 characters where possible."""
    lines: list[str] = []
    current = f"{name}:"
    fresh = True  # nothing but the field name (or the folding space) on this line yet
    for word in _words(value):
        if not fresh and len(current) + 1 + len(word) > MAX_LINE:
            lines.append(current)
            current, fresh = "", True
        current = f"{current} {word}"
        fresh = False
    lines.append(current)
    return "\r\n".join(lines)


def _words(value: str) -> list[str]:
    """The words of ``value``; a word too long for any line is cut into pieces."""
    words: list[str] = []
    for word in value.split():
        words.extend(word[i : i + MAX_WORD] for i in range(0, len(word), MAX_WORD))
    return words


def _diagnostic(result: RecipientResult) -> str:
    text = " ".join(result.diagnostic.split())
    return text if len(text) <= MAX_DIAGNOSTIC else text[: MAX_DIAGNOSTIC - 3] + "..."


def original_headers(message: bytes) -> bytes:
    """The header section of ``message`` (up to the first empty line), with CRLF line ends."""
    normalized = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if normalized.startswith(b"\n"):  # no headers at all
        return b""
    head, _, _ = normalized.partition(b"\n\n")
    head = head.rstrip(b"\n")
    lines = head.split(b"\n") if head else []
    return b"".join(line + b"\r\n" for line in lines)


def _status(result: RecipientResult, kind: BounceKind) -> str:
    parts = result.status.strip().split(".")
    valid = (
        len(parts) == 3
        and parts[0] in ("2", "4", "5")
        and all(part.isdigit() and len(part) <= 3 for part in parts[1:])
    )
    if valid:
        return result.status.strip()
    return "4.0.0" if kind == "delay" else "5.0.0"


def mta_name(remote_mta: str) -> str:
    """``mx.example.test[127.0.0.2]`` -> ``mx.example.test``: Remote-MTA names a host.

    The address stays in the human part ("host mx.example.test[127.0.0.2] said: ...").
    """
    name, bracket, _ = remote_mta.partition("[")
    return name if bracket and name else remote_mta


def _address_type(address: str) -> str:
    return f"rfc822; {address}" if address.isascii() else f"utf-8; {address}"


def _per_message_fields(job: BounceJob, context: DsnContext) -> list[str]:
    fields = [
        fold("Reporting-MTA", f"dns; {context.hostname}"),
        fold("X-Staffetta-Queue-ID", job.queue_id),
        fold("X-Staffetta-Sender", _address_type(job.sender)),
        fold("Arrival-Date", format_date(job.accepted_at)),
    ]
    return fields


def _per_recipient_fields(
    job: BounceJob, result: RecipientResult, context: DsnContext
) -> list[str]:
    action = "delayed" if job.kind == "delay" else "failed"
    fields = [
        fold("Final-Recipient", _address_type(result.recipient)),
        fold("Action", action),
        fold("Status", _status(result, job.kind)),
    ]
    if result.remote_mta:
        fields.append(fold("Remote-MTA", f"dns; {mta_name(result.remote_mta)}"))
    diagnostic = _diagnostic(result)
    if diagnostic:
        # A remote reply is "smtp"; our own explanation (alias loop, DNS) is
        # labelled like Postfix's "X-Postfix".
        kind = "smtp" if result.remote_mta or is_smtp_reply(diagnostic) else "X-Staffetta"
        fields.append(fold("Diagnostic-Code", f"{kind}; {diagnostic}"))
    fields.append(fold("Last-Attempt-Date", format_date(context.now)))
    if job.kind == "delay":
        until = job.accepted_at + context.max_queue_lifetime
        fields.append(fold("Will-Retry-Until", format_date(until)))
    return fields


def delivery_status(job: BounceJob, results: list[RecipientResult], context: DsnContext) -> str:
    """The body of the ``message/delivery-status`` part: field groups split by empty lines.

    ``results`` are the job's :func:`reported_results`.
    """
    groups = [_per_message_fields(job, context)]
    groups.extend(_per_recipient_fields(job, result, context) for result in results)
    return "\r\n\r\n".join("\r\n".join(group) for group in groups) + "\r\n"


def _base64_lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\r\n"


def _text_part(text: str) -> tuple[list[str], str]:
    crlf = text.replace("\r\n", "\n").replace("\n", "\r\n")
    if crlf.isascii():
        return [
            "Content-Type: text/plain; charset=us-ascii",
            "Content-Transfer-Encoding: 7bit",
        ], crlf
    # quoprimime encodes code points below 256 as bytes: hand it the UTF-8 bytes that way.
    latin = crlf.encode("utf-8").decode("latin-1")
    encoded = email.quoprimime.body_encode(latin, maxlinelen=76, eol="\r\n")
    headers = [
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    ]
    return headers, encoded if encoded.endswith("\r\n") else encoded + "\r\n"


def _status_part(
    job: BounceJob, results: list[RecipientResult], context: DsnContext
) -> tuple[list[str], str]:
    status = delivery_status(job, results, context)
    if status.isascii():
        return ["Content-Type: message/delivery-status", "Content-Transfer-Encoding: 7bit"], status
    # A UTF-8 address or reply: RFC 6533 asks for the 8bit encoding whenever possible.
    headers = ["Content-Type: message/global-delivery-status", "Content-Transfer-Encoding: 8bit"]
    return headers, status


def _headers_part(original: bytes) -> tuple[list[str], str]:
    head = original_headers(original)
    longest = max((len(line) for line in head.split(b"\r\n")), default=0)
    utf8 = _utf8(head)
    if longest <= 998 and head.isascii():
        return ["Content-Type: text/rfc822-headers", "Content-Transfer-Encoding: 7bit"], (
            head.decode("ascii")
        )
    if longest <= 998 and utf8 is not None:
        # SMTPUTF8 headers: RFC 6533's global-headers, 8bit as it asks whenever possible.
        return ["Content-Type: message/global-headers", "Content-Transfer-Encoding: 8bit"], utf8
    # Over-long lines or 8-bit bytes that are not UTF-8: base64 keeps them intact and the
    # DSN within SMTP's limits.
    kind = "message/global-headers" if utf8 and not head.isascii() else "text/rfc822-headers"
    return [f"Content-Type: {kind}", "Content-Transfer-Encoding: base64"], _base64_lines(head)


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _description(description: str, part: tuple[list[str], str]) -> tuple[list[str], str]:
    headers, body = part
    return [f"Content-Description: {description}", *headers], body


def build_dsn(job: BounceJob, original: bytes, context: DsnContext) -> bytes:
    """The whole DSN message, ready to be published as a new accepted message."""
    results = reported_results(job)
    boundary = f"{context.queue_id}.{int(context.now)}/{context.hostname}"
    text = human_report(
        job.kind,
        context.hostname,
        results,
        waited=context.now - job.accepted_at,
        lifetime=context.max_queue_lifetime,
    )
    parts = [
        _description("Notification", _text_part(text)),
        _description(
            "Delayed-Mail Report" if job.kind == "delay" else "Delivery report",
            _status_part(job, results, context),
        ),
        _description(
            "Delayed Message Headers" if job.kind == "delay" else "Undelivered Message Headers",
            _headers_part(original),
        ),
    ]
    encoding = "7bit" if all(body.isascii() for _, body in parts) else "8bit"
    top = [
        f"Received: by {context.hostname} (Staffetta) id {context.queue_id};\r\n"
        f"\t{format_date(context.now)}",
        f"Date: {format_date(context.now)}",
        f"From: MAILER-DAEMON@{context.hostname} (Mail Delivery System)",
        fold("To", f"<{job.sender}>"),
        f"Subject: {SUBJECTS[job.kind]}",
        f"Message-ID: <{context.queue_id}.{int(context.now)}@{context.hostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
        f"Content-Transfer-Encoding: {encoding}",
    ]
    out = ["\r\n".join(top), "\r\n\r\nThis is a MIME-encapsulated message.\r\n"]
    for headers, body in parts:
        out.append(f"\r\n--{boundary}\r\n" + "\r\n".join(headers) + "\r\n\r\n" + body)
    out.append(f"\r\n--{boundary}--\r\n")
    return "".join(out).encode("utf-8")
