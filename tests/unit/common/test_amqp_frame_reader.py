"""amqp_speedups reads frames as aiormq and pamqp do: same objects, same errors.

Frames pamqp marshals from random values (every frame type the broker sends
on the hot path, and others), then the same bytes cut short, with a byte
changed or a bad length, are unmarshalled both ways and compared; and a
stream is read by the patched and the original ``FrameReceiver.get_frame``.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import re
from typing import Any

import pamqp.frame
import pytest
from aiormq.connection import FrameReceiver
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.commands import Basic, Channel, Connection
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from services.common import amqp_speedups

STRINGS = ["", "a", "ctag1.0123456789abcdef", "staffetta.delivery", "ünï©ødé ✓", "k" * 255]
VALUES: list[Any] = ['{"queue_id":"Q1"}', "", "ünï©ødé", "v" * 300]
OTHER_VALUES: list[Any] = [
    1,
    -(2**40),
    True,
    1.5,
    None,
    bytearray(b"raw"),
    datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC),
    {"nested": "table"},
    ["a", 1],
]


def draw_properties(rng: random.Random) -> Basic.Properties:
    properties = Basic.Properties()
    for name in Basic.Properties.__slots__:
        if rng.random() < 0.5:
            continue
        kind = Basic.Properties.amqp_type(name)
        value: Any
        if kind == "octet":
            value = rng.choice([0, 1, 2, 9, 255])
        elif kind == "table":
            value = {
                rng.choice(["staffetta", "é", "k" * 128, "", "x-delivery-count"]): rng.choice(
                    VALUES if rng.random() < 0.8 else OTHER_VALUES
                )
                for _ in range(rng.randint(0, 4))
            }
        elif kind == "timestamp":
            if rng.random() < 0.7:
                continue
            value = datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC)
        else:
            value = rng.choice(STRINGS)
        setattr(properties, name, value)
    return properties


def draw_frame(rng: random.Random) -> Any:
    roll = rng.random()
    tag = rng.choice([0, 1, 12345, 2**63 - 1, 2**64 - 1])  # above 2**63 reads back negative
    if roll < 0.25:
        return Basic.Deliver(
            consumer_tag=rng.choice(STRINGS),
            delivery_tag=tag if tag < 2**63 else 5,
            redelivered=rng.random() < 0.3,
            exchange=rng.choice(["", "amq.direct"]),
            routing_key=rng.choice(STRINGS),
        )
    if roll < 0.5:
        return ContentHeader(body_size=rng.choice([0, 1, 2**40]), properties=draw_properties(rng))
    if roll < 0.6:
        return ContentBody(rng.choice([b"x", b"\xce" * 100, bytes(range(256))]))
    if roll < 0.75:
        return Basic.Ack(delivery_tag=tag if tag < 2**63 else 6, multiple=rng.random() < 0.3)
    return rng.choice(
        [
            Heartbeat(),
            Basic.Nack(delivery_tag=7, multiple=True),
            Basic.ConsumeOk(consumer_tag="ctag1.x"),
            Basic.QosOk(),
            Basic.Return(reply_code=312, reply_text="NO_ROUTE", routing_key="nowhere"),
            Basic.CancelOk(consumer_tag="c"),
            Channel.Close(406, "PRECONDITION_FAILED", class_id=60, method_id=40),
            Channel.OpenOk(),
            Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=60),
            Connection.Close(320, "shutdown", class_id=0, method_id=0),
        ]
    )


def damage(rng: random.Random, data: bytes) -> bytes:
    """``data`` cut short, with a byte changed, a bad size or a bad string."""
    roll = rng.random()
    if roll < 0.25:
        return data[: rng.randrange(len(data))]
    if roll < 0.5:
        at = rng.randrange(len(data))
        return data[:at] + bytes((rng.choice([0, 1, 0x53, 0x80, 0xCE, 0xFF]),)) + data[at + 1 :]
    if roll < 0.7:  # the size field says otherwise
        size = max(0, len(data) - 8 + rng.choice([-3, -1, 1, 2]))
        return data[:3] + size.to_bytes(4, "big") + data[7:]
    if roll < 0.8:
        return data + b"trailing"
    at = rng.randrange(7, len(data))  # invalid UTF-8 somewhere
    return data[:at] + b"\xc3\x28" + data[at + 2 :]


def described(frame: Any) -> Any:
    """What a decoded frame holds, to compare (pamqp's frames have no ``__eq__``)."""
    if isinstance(frame, Frame):
        return type(frame), [(name, getattr(frame, name)) for name in frame.__slots__]
    if isinstance(frame, ContentHeader):
        properties = list(frame.properties)  # (name, value) pairs
        fields = [(k, v) for k, v in vars(frame).items() if k != "properties"]
        return type(frame), fields, properties
    if isinstance(frame, ContentBody):
        return type(frame), type(frame.value), frame.value
    return type(frame), vars(frame)


def at_some_address(message: str) -> str:
    """An error message without the address of the frame it names (pamqp's repr shows it)."""
    return re.sub(r" at 0x[0-9a-f]+", " at 0x...", message)


def outcome(unmarshal: Any, data: bytes) -> Any:
    try:
        consumed, channel, frame = unmarshal(data)
    except Exception as exc:  # the same error, or the test fails
        return "error", type(exc), at_some_address(str(exc))
    return consumed, channel, described(frame)


def test_the_patch_is_installed() -> None:
    assert FrameReceiver.get_frame is amqp_speedups.get_frame  # type: ignore[comparison-overlap]


@pytest.mark.parametrize("seed", range(6))
def test_same_frames_or_errors_as_pamqp(seed: int) -> None:
    rng = random.Random(seed)
    kinds: dict[Any, int] = {}
    for _ in range(2000):
        data = pamqp.frame.marshal(draw_frame(rng), rng.choice([0, 1, 2, 65535]))
        if rng.random() < 0.3:
            data = damage(rng, data)
        ours = outcome(amqp_speedups.unmarshal, data)
        theirs = outcome(pamqp.frame.unmarshal, data)
        assert ours == theirs, data
        kind = ours[0] if ours[0] == "error" else ours[2][0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert {Basic.Deliver, Basic.Ack, ContentHeader, ContentBody, Heartbeat, "error"} <= set(kinds)


def test_the_hot_frames_take_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    left_to_pamqp: list[bytes] = []
    original = amqp_speedups.pamqp_unmarshal

    def pamqp_unmarshal(data: bytes) -> Any:
        left_to_pamqp.append(data)
        return original(data)

    monkeypatch.setattr(amqp_speedups, "pamqp_unmarshal", pamqp_unmarshal)
    properties = Basic.Properties(
        content_type="message/rfc822",
        delivery_mode=2,
        priority=0,
        expiration="60000",
        headers={"staffetta": '{"queue_id":"Q1","recipients":["é@x.y"]}'},
        message_id="Q1.0",
    )
    frames = [
        Basic.Deliver("ctag1.0123", 2**62, True, "", "staffetta.delivery"),
        ContentHeader(body_size=1024, properties=properties),
        ContentBody(b"b" * 1024),
        Basic.Ack(delivery_tag=77, multiple=True),
        Heartbeat(),
    ]
    for frame in frames:
        data = pamqp.frame.marshal(frame, 1)
        assert outcome(amqp_speedups.unmarshal, data) == outcome(original, data)
    assert left_to_pamqp == []


async def read_all(get_frame: Any, chunks: list[bytes], error: BaseException | None) -> list[Any]:
    """Every frame (or the error that ended the reading) of a stream fed ``chunks``."""
    reader = asyncio.StreamReader()
    receiver = FrameReceiver(reader)

    async def feed() -> None:
        for chunk in chunks:
            reader.feed_data(chunk)
            await asyncio.sleep(0)
        if error is None:
            reader.feed_eof()
        else:
            reader.set_exception(error)

    feeding = asyncio.create_task(feed())
    results: list[Any] = []
    while True:
        try:
            weight, channel, frame = await get_frame(receiver)
        except BaseException as exc:  # the same error, or the test fails
            cause = exc.__cause__
            results.append(
                (
                    type(exc),
                    at_some_address(str(exc)),
                    type(cause),
                    getattr(cause, "partial", None),
                    getattr(cause, "expected", None),
                )
            )
            break
        results.append((weight, channel, described(frame)))
    await feeding
    return results


@pytest.mark.parametrize(
    "error",
    [None, ConnectionResetError("reset"), ConnectionRefusedError(), BrokenPipeError(), OSError()],
)
async def test_get_frame_reads_and_fails_as_aiormq(error: BaseException | None) -> None:
    rng = random.Random(7)
    stream = b"".join(pamqp.frame.marshal(draw_frame(rng), 1) for _ in range(12))
    cuts = sorted({0, 1, 2, 6, 7, 8, len(stream), *rng.sample(range(len(stream)), 40)})
    for cut in cuts:
        data = stream[:cut]
        step = rng.choice([1, 3, 7, 50, 1000])
        chunks = [data[at : at + step] for at in range(0, len(data), step)]
        ours = await read_all(amqp_speedups.get_frame, chunks, error)
        theirs = await read_all(amqp_speedups.aiormq_get_frame, chunks, error)
        assert ours == theirs, cut


@pytest.mark.parametrize(
    "stream",
    [
        b"AMQP\x00\x00\x09\x01",  # the broker refusing our protocol version
        b"AMQP\x00\x00",
        pamqp.frame.marshal(Basic.Ack(delivery_tag=1), 1)[:-1] + b"\x00",  # a bad frame end
        b"\x01\x00\x01\x00\x00\x00\x00\xce",  # no size
        b"\x07\x00\x01\x00\x00\x00\x01\x00\xce",  # an unknown frame type
    ],
)
async def test_get_frame_refuses_what_aiormq_refuses(stream: bytes) -> None:
    ours = await read_all(amqp_speedups.get_frame, [stream], None)
    theirs = await read_all(amqp_speedups.aiormq_get_frame, [stream], None)
    assert ours == theirs
