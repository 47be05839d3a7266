"""Received header, Received counting and line-end normalisation."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest

from services.common import line_ends
from services.ingress import message
from services.ingress.message import Trace

WHEN = datetime(2026, 11, 28, 20, 0, 0, tzinfo=UTC)


def trace(**changes: object) -> Trace:
    values: dict[str, object] = {
        "helo": "client.test",
        "client_address": "192.0.2.7",
        "hostname": "mx.staffetta.test",
        "queue_id": "QID123",
        "recipients": ("bob@local.test",),
        "when": WHEN,
    }
    values.update(changes)
    return Trace(**values)  # type: ignore[arg-type]


def test_received_header_for_one_recipient() -> None:
    header = message.received_header(trace())
    assert header == (
        b"Received: from client.test (unknown [192.0.2.7])\r\n"
        b"\tby mx.staffetta.test (Staffetta) with ESMTP id QID123\r\n"
        b"\tfor <bob@local.test>; Sat, 28 Nov 2026 20:00:00 +0000\r\n"
    )


def test_received_header_hides_multiple_recipients() -> None:
    header = message.received_header(trace(recipients=("a@x.test", "b@y.test")))
    assert b"a@x.test" not in header and b"b@y.test" not in header
    assert header.endswith(b"id QID123;\r\n\tSat, 28 Nov 2026 20:00:00 +0000\r\n")


def test_received_header_records_tls_and_user() -> None:
    header = message.received_header(
        trace(tls="TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", user="alice")
    )
    assert b"(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))" in header
    assert b"(Authenticated sender: alice)" in header
    assert b"with ESMTPSA id" in header


@pytest.mark.parametrize(
    ("esmtp", "tls", "user", "protocol"),
    [
        (False, "", "", "SMTP"),
        (True, "", "", "ESMTP"),
        (True, "TLSv1.3", "", "ESMTPS"),
        (True, "", "u", "ESMTPA"),
        (True, "TLSv1.2", "u", "ESMTPSA"),
    ],
)
def test_protocol_names(esmtp: bool, tls: str, user: str, protocol: str) -> None:
    assert trace(esmtp=esmtp, tls=tls, user=user).protocol == protocol


def test_hostile_helo_cannot_forge_header_lines() -> None:
    header = message.received_header(trace(helo="evil\r\nX-Injected: yes", client_address="::1"))
    assert header.count(b"\r\n") == 3
    assert b"X-Injected" in header and b"\r\nX-Injected" not in header
    assert b"[IPv6:::1]" in header


def test_count_received_headers_only() -> None:
    body = (
        b"Received: from a\r\n\tby b\r\nreceived: from c\r\nSubject: Received: no\r\n"
        b"\r\nReceived: in the body does not count\r\n"
    )
    assert message.count_received(body) == 2
    assert message.count_received(b"\r\nReceived: x\r\n") == 0
    assert message.count_received(b"Received: x\r\n") == 1


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\nb\r\n", b"a\r\nb\r\n"),
        (b"a\rb\r\n", b"a\r\nb\r\n"),
        (b"x\n.\ny\r\n", b"x\r\n.\r\ny\r\n"),
        (b"x\r.\ry\r\n", b"x\r\n.\r\ny\r\n"),
        (b"x\n\ry\r\n", b"x\r\n\r\ny\r\n"),
        (b"x\r\r\n", b"x\r\n\r\n"),
    ],
)
def test_bare_line_ends_become_crlf(raw: bytes, normalised: bytes) -> None:
    assert message.normalise_line_ends(raw) == normalised
    assert message.has_bare_line_ends(raw) is (raw != normalised)


@pytest.mark.parametrize(
    "raw",
    [b"", b"a\r\nb\r\n", b"\r\n.\r\n", b"a\r\nb\rc\r\n", b"a\r\nb\nc\r\n", b"\r\r\n", b"\r\n\n"],
)
def test_the_crlf_fast_path_agrees_with_the_full_normalisation(raw: bytes) -> None:
    expected = re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
    assert message.normalise_line_ends(raw) == expected


@pytest.mark.parametrize(
    ("stuffed", "plain"),
    [
        (b"", b""),
        (b"no dots\r\n", b"no dots\r\n"),
        (b"..\r\n", b".\r\n"),
        (b".x\r\n..y\r\n...z\r\n", b"x\r\n.y\r\n..z\r\n"),
        (b"a.\r\n.\r\n\r\n.b\r\n", b"a.\r\n\r\n\r\nb\r\n"),
        (b"mid.dle\r\n", b"mid.dle\r\n"),
        (b"bare\n.dot\r\n", b"bare\n.dot\r\n"),  # only a CRLF starts a line
    ],
)
def test_unstuff_drops_the_first_dot_of_each_line(stuffed: bytes, plain: bytes) -> None:
    assert message.unstuff(stuffed) == plain


def test_unstuff_agrees_with_the_line_by_line_rule() -> None:
    data = b".a\r\n..b\r\nc.\r\n.\r\n..\r\nd\r\n"
    lines = data.split(b"\r\n")
    by_line = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    assert message.unstuff(data) == by_line


def test_longest_line_counts_the_crlf() -> None:
    assert message.longest_line(b"") == 0
    assert message.longest_line(b"ab\r\n" + b"x" * 998 + b"\r\n") == 1000
    assert message.longest_line(b"a\nb\nc\r\n") == 7  # bare LFs do not end SMTP lines


def _by_definition(data: bytes) -> tuple[int, bool]:
    longest = max(map(len, data.split(b"\r\n"))) + 2 if data else 0
    return longest, not message.has_bare_line_ends(data)


@pytest.mark.parametrize("small", [line_ends.SMALL, 0, 5])
def test_line_shape_agrees_with_the_definitions_at_every_size(
    monkeypatch: pytest.MonkeyPatch, small: int
) -> None:
    """``small`` moves the line between the one-pass path and the big-message path."""
    monkeypatch.setattr(line_ends, "SMALL", small)
    monkeypatch.setattr(message, "SMALL", small)
    generator = random.Random(11)
    pieces = [b"a", b"x" * 400, b".", b"\r\n", b"\r\n", b"\r", b"\n"]
    for _ in range(5_000):
        data = b"".join(generator.choices(pieces, k=generator.randrange(0, 10)))
        assert message.line_shape(data) == _by_definition(data), data
        assert message.longest_line(data) == _by_definition(data)[0], data
        assert (message.normalise_line_ends(data) == data) == _by_definition(data)[1], data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", False),
        (b".", True),
        (b".x\r\n", True),
        (b"x\r\n.y\r\n", True),
        (b"x.\r\ny. .\r\n", False),
        (b"x\n.y\n", False),  # not SMTP lines: only CRLF ends one
        (b"x\r\n\r\n..\r\n", True),
    ],
)
def test_has_dot_lines(data: bytes, expected: bool) -> None:
    assert message.has_dot_lines(data) is expected
    # It says whether unstuffing changes anything.
    assert (message.unstuff(data) != data) is expected
