"""The body sent after DATA: the CRLF fast path sends what aiosmtplib's regexes send."""

from __future__ import annotations

import random

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from services.delivery.pipelining import dot_stuffed


def aiosmtplib_way(body: bytes) -> bytes:
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(body)) + b".\r\n"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b".",
        b"..\r\n",
        b".leading\r\nmiddle\r\n.\r\n..two\r\nlast",
        b"Subject: x\r\n\r\nno dots at all\r\n",
        b"dots.in.the.middle\r\n",
        b"bare\nline\rends\n.dot after a bare LF\r\n",
        b"\r\n\r\n.\r\n",
    ],
)
def test_same_bytes_as_aiosmtplib(body: bytes) -> None:
    assert dot_stuffed(body) == aiosmtplib_way(body)


def test_same_bytes_on_random_crlf_bodies() -> None:
    pieces = [b".", b"..", b"a", b"\r\n", b" ", b"x.y", b"\r\n.", b"\n", b"\r"]
    chooser = random.Random(7)
    for _ in range(2000):
        body = b"".join(chooser.choice(pieces) for _ in range(chooser.randrange(0, 12)))
        assert dot_stuffed(body) == aiosmtplib_way(body), body


def test_a_wire_ready_body_goes_as_it_is() -> None:
    """What the ingress flags (CRLF only, no line starting with ".") needs no stuffing:
    the flag's short cut sends exactly what the full path sends."""
    pieces = [b"a", b"\r\n", b" ", b"x.y", b"end.", b"\r\n\r\n"]
    chooser = random.Random(11)
    checked = 0
    for _ in range(2000):
        body = b"".join(chooser.choice(pieces) for _ in range(chooser.randrange(0, 12)))
        if body.startswith(b".") or b"\r\n." in body:
            continue
        checked += 1
        assert dot_stuffed(body, wire_ready=True) == aiosmtplib_way(body), body
    assert checked > 1000
    assert dot_stuffed(b"no line end at the end", wire_ready=True) == (
        b"no line end at the end\r\n.\r\n"
    )


def test_data_pieces_send_a_big_wire_ready_body_unjoined() -> None:
    from services.common.line_ends import SMALL
    from services.delivery.pipelining import data_pieces

    big = b"x" * 70 + b"\r\n"
    body = big * (SMALL // len(big) + 1)
    pieces = data_pieces(body, wire_ready=True)
    assert pieces[0] is body  # the received bytes themselves, not a copy
    assert b"".join(pieces) == dot_stuffed(body, wire_ready=True) == aiosmtplib_way(body)
    # Small, or not flagged: one piece, one write.
    assert data_pieces(b"a\r\n", wire_ready=True) == [b"a\r\n.\r\n"]
    assert data_pieces(body, wire_ready=False) == [aiosmtplib_way(body)]
