"""The frames amqp_speedups marshals are byte for byte the frames aiormq and pamqp make.

Each case runs the patched ``ChannelFrame.marshall`` and the original one on
the same frames: same payload and close flag, or the same error. Inputs are
drawn at random, odd ones often (unicode, empty and too long strings, wrong
types, out-of-range numbers), and some repeat so the publish cache is hit.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import random
from typing import Any

import pytest
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.commands import Basic, Connection
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from services.common import amqp, amqp_speedups

LONG = "x" * 255
FINE_STRINGS = ["", "a", "message/rfc822", "Q1234567890ABC.0", "ünï©ødé ✓ 😀", LONG, "é" * 127, " "]
ODD_STRINGS: list[Any] = [
    "y" * 256,
    "é" * 128,  # 256 bytes: too long for a shortstr though 128 characters
    "\ud800",  # a lone surrogate: not encodable
    None,
    0,
    1,
    256,
    True,
    b"bytes",
    1.5,
]
FINE_OCTETS = [None, 0, 1, 2, 9, 255]
ODD_OCTETS = [256, -1, True, False, "2", 2.0, ""]
FINE_KEYS = ["staffetta", "x-staffetta-envelope", "é", "k" * 128, "é" * 64, ""]
ODD_KEYS = ["k" * 129, "é" * 65, "\ud800", 7]
FINE_VALUES = ['{"queue_id":"Q1","sender":"a@b.c","accepted_at":1.0}', "", "ünï©ødé", "v" * 300]
ODD_VALUES = [
    "\ud800",
    1,
    -(2**40),
    True,
    1.5,
    None,
    b"raw",
    bytearray(b"raw"),
    decimal.Decimal("1.25"),
    datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC),
    {"nested": "table"},
    ["a", 1],
    object(),
]
ODD_TABLES = ["", "not a table", [1, 2], 5]
ENVELOPE = FINE_VALUES[0]


class Text(str):
    """A str subclass: equal to its value, but not taken for a plain str."""


ODD_STRINGS.append(Text("subclass"))
ODD_VALUES.append(Text("subclass"))


class Draw:
    """Random values, an odd one with probability ``odd`` (picked per case)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.odd = rng.choice([0.0, 0.0, 0.01, 0.05, 0.3])

    def pick(self, fine: list[Any], odd: list[Any]) -> Any:
        return self.rng.choice(odd if self.rng.random() < self.odd else fine)

    def string(self) -> Any:
        if self.rng.random() < 0.1:
            return "k" * self.rng.randint(0, 255)
        return self.pick(FINE_STRINGS, ODD_STRINGS)

    def headers(self) -> Any:
        roll = self.rng.random()
        if roll < 0.1:
            return self.pick([None, {}], ODD_TABLES)
        table: dict[Any, Any] = {}
        for _ in range(self.rng.randint(1, 4)):
            table[self.pick(FINE_KEYS, ODD_KEYS)] = self.pick(FINE_VALUES, ODD_VALUES)
        return table

    def properties(self) -> Any:
        if self.rng.random() < 0.4:  # the shape Broker.publish sends
            return Basic.Properties(
                content_type="message/rfc822",
                delivery_mode=2,
                priority=0,
                expiration=self.rng.choice([None, None, "60000", "0"]),
                headers={"staffetta": self.rng.choice([ENVELOPE, ENVELOPE * 20, "ünï©ødé"])},
                message_id=self.pick(["Q1234567890ABC.0", "", "m" * 255, "é"], ["m" * 256]),
            )
        properties = Basic.Properties()
        for name in Basic.Properties.__slots__:
            if self.rng.random() < 0.4:
                continue
            kind = Basic.Properties.amqp_type(name)
            value: Any
            if kind == "octet":
                value = self.pick(FINE_OCTETS, ODD_OCTETS)
            elif kind == "table":
                value = self.headers()
            elif kind == "timestamp":
                value = self.pick([None], [datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC), 5])
            else:
                value = self.string()
            setattr(properties, name, value)  # unvalidated, as a caller may do
        return properties


def draw_frame(draw: Draw) -> Any:
    rng = draw.rng
    roll = rng.random()
    if roll < 0.25:
        frame = Basic.Publish(
            exchange=rng.choice(["", "", "amq.direct"]),
            routing_key=rng.choice(["staffetta.delivery", "staffetta.incoming", ""]),
            mandatory=rng.random() < 0.8,
        )
        if rng.random() < draw.odd:  # odd values, set past the constructor's checks
            setattr(
                frame,
                rng.choice(["exchange", "routing_key", "mandatory", "immediate", "ticket"]),
                rng.choice([*ODD_STRINGS, *FINE_STRINGS, 2, "bad!exchange", "e" * 128]),
            )
        return frame
    if roll < 0.5:
        header = ContentHeader(body_size=rng.choice([0, 1, 1024, 2**40]))
        header.properties = draw.properties()
        if rng.random() < draw.odd:
            header.body_size = rng.choice([-1, 2**64, None, True, 1.0])
        if rng.random() < draw.odd / 10:
            header.properties = None  # type: ignore[assignment]
        return header
    if roll < 0.7:
        body: Any = rng.choice([b"", b"x" * rng.randint(1, 3000), b"\xce\x00"])
        if rng.random() < draw.odd:
            body = rng.choice([memoryview(b"viewed body"), bytearray(b"array"), "text", None])
        return ContentBody(body)
    if roll < 0.85:
        tag = rng.choice([0, 1, 12345, 2**63 - 1])
        ack = Basic.Ack(delivery_tag=tag, multiple=rng.random() < 0.2)
        if rng.random() < draw.odd:
            ack.delivery_tag = rng.choice([2**63, -1, -(2**63), -(2**63) - 1, True, None, "1", 1.0])
        if rng.random() < draw.odd:
            ack.multiple = rng.choice([0, 1, 2, None, "yes"])  # type: ignore[assignment]
        return ack
    return rng.choice(
        [
            Basic.Nack(delivery_tag=7, requeue=True),
            Basic.Reject(delivery_tag=8),
            Basic.Qos(prefetch_count=32),
            Basic.Consume(queue="staffetta.delivery"),
            Connection.CloseOk(),
            Heartbeat(),
        ]
    )


def outcome(marshall: Any, channel: Any, frames: list[Any]) -> tuple[Any, ...]:
    try:
        result = marshall(channel, frames)
    except Exception as exc:  # the same error, or the test fails
        return ("error", type(exc), str(exc))
    assert isinstance(result.payload, bytes)
    return ("frame", result.payload, result.should_close)


def test_the_patch_is_installed() -> None:
    assert ChannelFrame.marshall.__func__ is amqp_speedups.marshall  # type: ignore[attr-defined]
    assert amqp.aiormq.abc.ChannelFrame is ChannelFrame


@pytest.mark.parametrize("seed", range(8))
def test_same_bytes_or_error_as_aiormq(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(seed)
    caplog.set_level(logging.CRITICAL)  # pamqp's warnings on truncated keys
    errors = 0
    for _ in range(1500):
        draw = Draw(rng)
        frames = [draw_frame(draw) for _ in range(rng.choice([1, 1, 3, 4]))]
        channel = rng.choice([1, 1, 1, 0, 65535, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, 65536])
        ours = outcome(ChannelFrame.marshall, channel, frames)
        theirs = outcome(amqp_speedups.aiormq_marshall, channel, frames)
        assert ours == theirs, frames
        errors += ours[0] == "error"
    assert 0 < errors < 1500  # the odd inputs were met, and most inputs encoded


def test_the_publish_shape_is_byte_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Broker.publish sends, many times over, all on the direct path."""
    left_to_pamqp: list[object] = []
    original = amqp_speedups.pamqp_marshal

    def pamqp_marshal(frame: Any, channel: int) -> bytes:
        left_to_pamqp.append(frame)
        return original(frame, channel)

    monkeypatch.setattr(amqp_speedups, "pamqp_marshal", pamqp_marshal)
    amqp_speedups._publish_frames.clear()
    for number in range(2000):
        properties = Basic.Properties(
            content_type="message/rfc822",
            delivery_mode=2,
            priority=0,
            expiration=None if number % 3 else str(number * 1000),
            headers={"staffetta": ENVELOPE.replace("Q1", f"Q{number}é" * (number % 5))},
            message_id=f"Q{number:012d}.{number % 4}",
        )
        frames = [
            Basic.Publish(routing_key=f"staffetta.q{number % 7}", mandatory=True),
            ContentHeader(body_size=number, properties=properties),
            ContentBody(b"b" * number),
        ]
        ours = ChannelFrame.marshall(channel_number=1 + number % 3, frames=frames)
        theirs = amqp_speedups.aiormq_marshall(channel_number=1 + number % 3, frames=frames)
        assert ours.payload == theirs.payload
        assert ours.should_close is theirs.should_close is False
    # Only the first Basic.Publish of each (channel, queue) went to pamqp: then the cache.
    assert len(left_to_pamqp) == 3 * 7
    assert all(isinstance(frame, Basic.Publish) for frame in left_to_pamqp)


def test_a_frame_after_close_ok_is_dropped_the_same_way(caplog: pytest.LogCaptureFixture) -> None:
    frames = [Connection.CloseOk(), Basic.Ack(delivery_tag=3)]
    with caplog.at_level(logging.WARNING, logger="aiormq.connection"):
        ours = ChannelFrame.marshall(0, frames)
        theirs = amqp_speedups.aiormq_marshall(0, frames)
    assert ours.payload == theirs.payload
    assert ours.should_close and theirs.should_close
    ours_warning, theirs_warning = (record.getMessage() for record in caplog.records)
    assert ours_warning == theirs_warning
