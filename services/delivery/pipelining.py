"""The bytes of a pipelined transaction (RFC 2920), where aiosmtplib's one-command
API cannot be used: the command lines, the dot-stuffed body, the replies in order.

Each piece sends or reads what aiosmtplib itself would, only several at a time;
the sequencing and what the replies mean stay in :mod:`smtp_client`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from aiosmtplib.email import quote_address
from aiosmtplib.errors import SMTPReadTimeoutError, SMTPServerDisconnected
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    PERIOD_REGEX,
    SMTPProtocol,
    normalize_message_line_endings,
)
from aiosmtplib.response import SMTPResponse

from services.common.line_ends import SMALL, crlf_throughout


def envelope_commands(
    sender: str,
    recipients: Sequence[str],
    *,
    encoding: str,
    options: Sequence[str],
    reset: bool,
) -> bytes:
    """[RSET,] MAIL, every RCPT and DATA: the lines aiosmtplib's rset(), mail(), rcpt()
    and data() would send one by one."""
    mail_from = _quoted(sender, encoding)
    commands = [
        *([_command(b"RSET")] if reset else []),
        _command(b"MAIL", b"FROM:" + mail_from, *(option.encode("ascii") for option in options)),
        *(_command(b"RCPT", b"TO:" + _quoted(r, encoding)) for r in recipients),
        _command(b"DATA"),
    ]
    return b"".join(commands)


# local@domain as nearly every envelope has it: ASCII dot-atoms (RFC 5321 4.1.2), no
# quoting, comment or literal. email.utils.parseaddr gives such an address back
# unchanged, so quote_address only wraps it in <>; anything else goes through it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _quoted(address: str, encoding: str) -> bytes:
    """``quote_address(address).encode(encoding)``, without parseaddr for a plain address
    (two parseaddr calls were 9 % of delivery's CPU per message)."""
    if _PLAIN_ADDRESS.fullmatch(address) is not None:
        return b"<" + address.encode("ascii") + b">"
    if not address:
        return b"<>"  # the null sender
    return quote_address(address).encode(encoding)


async def next_reply(protocol: SMTPProtocol, limit: float) -> SMTPResponse:
    """The next reply in order. aiosmtplib parses one reply per arrival of data and
    keeps the rest in its buffer: replies that arrived together are taken from there.

    Otherwise it waits as aiosmtplib's ``read_response(timeout=limit)`` does, with a
    timer that fails the reply's future in place of ``asyncio.wait_for``, which costs
    a second future and a done-callback more (about 3 us a reply; the benchmark waits
    for two replies a message, the others come buffered with them).
    """
    buffered = protocol._read_response_from_buffer()
    if buffered is not None:
        return buffered
    if limit <= 0:  # wait_for's "no wait at all", kept as it is
        return await protocol.read_response(timeout=limit)
    waiter = protocol._response_waiter
    if waiter is None:
        raise SMTPServerDisconnected("Connection lost")
    loop = asyncio.get_running_loop()
    protocol._response_pending = True
    timer = loop.call_later(limit, _time_out, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()
        protocol._response_pending = False
        # As read_response: a fresh future for the next reply, none once disconnected.
        protocol._response_waiter = None if protocol.transport is None else loop.create_future()


def _time_out(waiter: asyncio.Future[SMTPResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(SMTPReadTimeoutError("Timed out waiting for server response"))


def _command(*args: bytes) -> bytes:
    """One command line, checked as aiosmtplib's execute_command checks it."""
    for arg in args:
        if COMMAND_INJECTION_REGEX.search(arg):
            raise ValueError("Command arg contains a prohibited control character")
    return b" ".join(args) + b"\r\n"


def data_pieces(body: bytes, wire_ready: bool = False) -> list[bytes]:
    """What follows DATA, as :func:`dot_stuffed` gives it, in pieces to write in turn.

    A big wire-ready body goes as it is, then the end marker: joining the two would
    copy a 25 MiB message to add three bytes. Anything else is one piece (one write).
    """
    if wire_ready and len(body) >= SMALL and body.endswith(b"\r\n"):
        return [body, b".\r\n"]
    return [dot_stuffed(body, wire_ready)]


def dot_stuffed(body: bytes, wire_ready: bool = False) -> bytes:
    """The body as aiosmtplib's execute_data_command sends it: CRLF, dots doubled, ".".

    ``wire_ready``: the ingress found CRLF line ends throughout and no line starting
    with "." (``DeliveryJob.wire_ready``), so there is nothing to check or double.
    """
    if wire_ready:
        return (body if body.endswith(b"\r\n") else body + b"\r\n") + b".\r\n"
    if crlf_throughout(body):
        # CRLF throughout, as the ingress stores every message: two C-speed passes
        # instead of two regex passes (1.3 ms of delivery CPU for a 50 KB message).
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        stuffed = body.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        return stuffed + b".\r\n"
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(body)) + b".\r\n"
