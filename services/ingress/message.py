"""What the ingress does to a message's bytes: pure functions, no I/O.

The body travels untouched apart from two things: our ``Received:`` header is
prepended, and bare CR / bare LF line ends are normalised to CRLF (RFC 5321
forbids them; normalising keeps one DATA one message, never two, and stops
SMTP smuggling downstream where another server might read ``\\n.\\n`` as the
end of data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from services.common.line_ends import SMALL, Data, crlf_lines, crlf_throughout
from services.ingress.policy import CONTROL_CHARACTER

_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f()\[\]\\]")
_MAX_HELO_IN_HEADER = 255


DATA_END = b"\r\n.\r\n"  # a line holding one dot ends the data (RFC 5321 4.1.1.4)


def has_dot_lines(data: Data) -> bool:
    """Does a line of ``data`` start with "."? Lines end in CRLF, as in SMTP."""
    return data.startswith(b".") or b"\r\n." in data


def unstuff(data: Data) -> Data:
    """RFC 5321 4.5.2: drop the first dot of every line that starts with one."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")


def longest_line(data: Data) -> int:
    """The length of the longest line, its CRLF counted (as RFC 5321 4.5.3.1.6 counts)."""
    if not data:
        return 0
    if len(data) <= SMALL:
        return max(map(len, data.split(b"\r\n"))) + 2
    # A big message: walk the line ends instead of holding every line as an object.
    longest = start = 0
    find = data.find
    while (end := find(b"\r\n", start)) >= 0:
        longest = max(longest, end - start + 2)
        start = end + 2
    return max(longest, len(data) - start + 2)


def line_shape(data: Data) -> tuple[int, bool]:
    """(:func:`longest_line`, whether every line end is CRLF) of DATA, in one pass
    for everyday sizes: ``bytes.count`` runs at about 2.5 GB/s here, and the counts
    plus the split cost 135 us for a 50 KB message, one ``splitlines`` 52 us."""
    if len(data) <= SMALL:
        lines = crlf_lines(data)
        if lines is not None:
            return max(map(len, lines), default=-2) + 2, True
        return longest_line(data), False
    return longest_line(data), crlf_throughout(data)


def normalise_line_ends(body: Data) -> Data:
    """Turn every bare CR and bare LF into CRLF."""
    # The common case, a body already in CRLF throughout, is answered at C speed
    # instead of by a regex pass that copies the whole body.
    if crlf_throughout(body):
        return body
    return _BARE_LINE_END.sub(b"\r\n", body)


def has_bare_line_ends(body: Data) -> bool:
    return _BARE_LINE_END.search(body) is not None


def header_section(body: Data) -> Data:
    """The header block: everything before the first empty line."""
    if body.startswith(b"\r\n"):
        return b""
    end = body.find(b"\r\n\r\n")
    return body if end < 0 else body[: end + 2]


def count_received(body: Data) -> int:
    """How many ``Received:`` header fields the message already carries."""
    return sum(
        1 for line in header_section(body).split(b"\r\n") if line[:9].lower() == b"received:"
    )


@dataclass(frozen=True)
class Trace:
    """What our ``Received:`` header records about one SMTP transaction."""

    helo: str
    client_address: str
    hostname: str
    queue_id: str
    recipients: tuple[str, ...]
    esmtp: bool = True
    tls: str = ""  # e.g. "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
    user: str = ""  # the authenticated account
    when: datetime | None = None

    @property
    def protocol(self) -> str:
        """RFC 3848 ``with`` keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA."""
        if not self.esmtp:
            return "SMTP"
        return "ESMTP" + ("S" if self.tls else "") + ("A" if self.user else "")


def _clean(text: str) -> str:
    return _UNPRINTABLE.sub("?", text)[:_MAX_HELO_IN_HEADER]


def received_header(trace: Trace) -> bytes:
    """Our ``Received:`` header, folded, CRLF-terminated (RFC 5321 section 4.4)."""
    helo = _clean(trace.helo) or "unknown"
    address = _clean(trace.client_address)
    literal = f"IPv6:{address}" if ":" in address else address
    lines = [f"Received: from {helo} (unknown [{literal}])"]
    if trace.tls:
        lines.append(f"\t(using {CONTROL_CHARACTER.sub('?', trace.tls)})")
    if trace.user:
        lines.append(f"\t(Authenticated sender: {_clean(trace.user)})")
    lines.append(f"\tby {trace.hostname} (Staffetta) with {trace.protocol} id {trace.queue_id}")
    when = format_datetime(trace.when or datetime.now(UTC))
    if len(trace.recipients) == 1:
        # Like Postfix: name the recipient only when there is exactly one,
        # so that Bcc recipients of a multi-recipient message stay hidden.
        lines.append(f"\tfor <{_clean(trace.recipients[0])}>; {when}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{when}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", errors="surrogateescape")
