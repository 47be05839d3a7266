"""crlf_lines agrees with the plain definitions on every shape of line end."""

from __future__ import annotations

import random
import re

import pytest

from services.common import line_ends
from services.common.line_ends import crlf_lines, crlf_throughout

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def by_definition(data: bytes) -> list[bytes] | None:
    if _BARE.search(data):
        return None
    lines = data.split(b"\r\n")
    return lines[:-1] if data.endswith(b"\r\n") else lines if data else []


EDGES = [
    b"",
    b"a",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\r",
    b"\r\r\n",
    b"\r\n\n",
    b"\r\n\r\n",
    b"a\r\nb",
    b"a\r\nb\r\n",
    b"a\nb\r\n",
    b"a\rb\r\n",
    b"a\r\nb\r",
    b"a\r\nb\n",
    b".\r\n..\r\n",
    b"\x0b\x0c\x1c\x1d\x1e\x85",  # line breaks for str.splitlines, not for bytes
]


@pytest.mark.parametrize("data", EDGES)
def test_edges(data: bytes) -> None:
    assert crlf_lines(data) == by_definition(data)


def test_random_bodies() -> None:
    pieces = [b"a", b"xyz", b".", b"\r\n", b"\r\n", b"\r\n.", b"\r", b"\n", b"\x00", b"\x0c"]
    generator = random.Random(7)
    for _ in range(20_000):
        data = b"".join(generator.choices(pieces, k=generator.randrange(0, 12)))
        assert crlf_lines(data) == by_definition(data), data


def test_a_large_crlf_body_and_one_bare_lf_in_it() -> None:
    body = b"La de da de da 1. La de da 2.\r\n" * 2000
    assert crlf_lines(body) == [b"La de da de da 1. La de da 2."] * 2000
    assert crlf_lines(body[:30_000] + b"\n" + body[30_000:]) is None


@pytest.mark.parametrize("small", [line_ends.SMALL, 0])
def test_crlf_throughout_with_and_without_holding_the_lines(
    monkeypatch: pytest.MonkeyPatch, small: int
) -> None:
    monkeypatch.setattr(line_ends, "SMALL", small)
    generator = random.Random(3)
    pieces = [b"a", b".", b"\r\n", b"\r\n", b"\r", b"\n"]
    for data in [*EDGES, *(b"".join(generator.choices(pieces, k=8)) for _ in range(5_000))]:
        assert crlf_throughout(data) == (by_definition(data) is not None), data
