"""new_queue_id: the format of the earlier digit-by-digit code, drawn with one random read."""

from __future__ import annotations

import random
import re
import secrets
import time

import pytest

from services.common import envelope
from services.common.envelope import _queue_id_digits, new_queue_id

ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"


def reference_head(stamp: int) -> str:
    """The earlier code: one digit per division, most significant first, no leading zero."""
    head = []
    while stamp:
        stamp, digit = divmod(stamp, len(ALPHABET))
        head.append(ALPHABET[digit])
    return "".join(reversed(head))


def reference_tail(number: int) -> str:
    """The 8 digits of ``number`` (below 30**8): one uniform digit per position."""
    digits = []
    for _ in range(8):
        number, digit = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def test_digits_match_one_digit_at_a_time() -> None:
    rng = random.Random(7)
    numbers = [0, 1, 29, 30, 899, 900, 901, 26_999, 27_000, 30**8 - 1, 30**8, 30**9 - 1]
    numbers += [rng.randrange(30**12) for _ in range(20_000)]
    numbers += [int(rng.uniform(0, 4e12)) for _ in range(20_000)]
    for number in numbers:
        assert _queue_id_digits(number) == reference_head(number), number


def test_an_id_is_the_millisecond_stamp_then_eight_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    cases = [(1_700_000_000.123, 0), (1_700_000_000.999, 30**8 - 1), (0.0005, 5), (4.1e9, 900)]
    cases += [(rng.uniform(0, 4e9), rng.randrange(30**8)) for _ in range(5_000)]
    for now, draw in cases:
        monkeypatch.setattr(envelope.time, "time", lambda now=now: now)
        monkeypatch.setattr(envelope.secrets, "randbelow", lambda space, draw=draw: draw)
        expected = reference_head(int(now * 1000)) + reference_tail(draw)
        assert new_queue_id() == expected


def test_the_random_part_is_drawn_over_every_eight_digit_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spaces: list[int] = []
    real = secrets.randbelow

    def spy(space: int) -> int:
        spaces.append(space)
        return real(space)

    monkeypatch.setattr(envelope.secrets, "randbelow", spy)
    new_queue_id()
    assert spaces == [len(ALPHABET) ** 8]


def test_ids_are_unique_and_in_the_alphabet() -> None:
    head = reference_head(int(time.time() * 1000))
    ids = [new_queue_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    pattern = re.compile(f"[{ALPHABET}]{{{len(head) + 8}}}")
    assert all(pattern.fullmatch(queue_id) for queue_id in ids)
    # Every tail position takes every digit (uniform digits: about 1,667 each here).
    for position in range(-8, 0):
        assert {queue_id[position] for queue_id in ids} == set(ALPHABET)
