"""A delivery taken in one piece (Deliver, content header, body) is the delivery
aiormq's frame-by-frame path gives: same fields, same properties, same body, and
the frames it cannot take (not all read yet, another channel's frame between)
come out one by one, in their order, exactly as before."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import pamqp.frame
from aiormq.connection import FrameReceiver
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from services.common import amqp_speedups
from services.common.amqp_speedups import DeliverWithContent


@dataclass(frozen=True)
class Delivery:
    channel: int
    tag: int
    routing_key: str | None
    redelivered: bool
    message_id: str | None
    headers: Any
    body: bytes


def frames_for(rng: random.Random, channel: int, tag: int) -> tuple[list[bytes], Delivery]:
    """The wire frames of one delivery, its body cut into frames of random sizes."""
    body = rng.randbytes(rng.choice([0, 1, 50, 1000, 5000]))
    properties = Basic.Properties(
        content_type="message/rfc822",
        delivery_mode=2,
        priority=0,
        headers={"staffetta": f'{{"queue_id": "Q{tag}"}}'},
        message_id=f"Q{tag}",
    )
    deliver = Basic.Deliver(
        consumer_tag="ctag1.abc",
        delivery_tag=tag,
        redelivered=rng.random() < 0.2,
        exchange="",
        routing_key=f"staffetta.q{channel}",
    )
    wire = [
        pamqp.frame.marshal(deliver, channel),
        pamqp.frame.marshal(ContentHeader(0, len(body), properties), channel),
    ]
    start = 0
    while start < len(body):
        size = rng.randint(1, 2000)
        wire.append(pamqp.frame.marshal(ContentBody(body[start : start + size]), channel))
        start += size
    expected = Delivery(
        channel, tag, deliver.routing_key, deliver.redelivered, f"Q{tag}", properties.headers, body
    )
    return wire, expected


def other_frame(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return pamqp.frame.marshal(Heartbeat(), 0)
    return pamqp.frame.marshal(Basic.Ack(delivery_tag=rng.randint(1, 99)), 2)


def stream(rng: random.Random) -> tuple[list[bytes], list[Delivery], int]:
    """Deliveries on channels 1 and 3; sometimes another frame in the middle of one."""
    wire: list[bytes] = []
    expected: list[Delivery] = []
    others = 0
    for tag in range(1, 40):
        frames, delivery = frames_for(rng, rng.choice([1, 3]), tag)
        if rng.random() < 0.25:  # allowed by AMQP: other channels' frames in between
            frames.insert(rng.randint(1, len(frames)), other_frame(rng))
            others += 1
        wire += frames
        expected.append(delivery)
    return wire, expected, others


class Collector:
    """What the channels would see: deliveries put together, other frames counted."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.others = 0
        self.whole = 0
        self._open: dict[int, tuple[Basic.Deliver, ContentHeader | None, bytearray]] = {}

    def add(self, channel: int, frame: Any) -> None:
        if type(frame) is DeliverWithContent:
            self.whole += 1
            self._done(channel, frame, frame.content_header, frame.body)
        elif isinstance(frame, Basic.Deliver):
            self._open[channel] = (frame, None, bytearray())
            self._maybe_done(channel)
        elif isinstance(frame, ContentHeader):
            deliver, _, body = self._open[channel]
            self._open[channel] = (deliver, frame, body)
            self._maybe_done(channel)
        elif isinstance(frame, ContentBody):
            self._open[channel][2].extend(frame.value)
            self._maybe_done(channel)
        else:
            self.others += 1

    def _maybe_done(self, channel: int) -> None:
        deliver, header, body = self._open[channel]
        if header is not None and len(body) >= header.body_size:
            del self._open[channel]
            self._done(channel, deliver, header, bytes(body))

    def _done(self, channel: int, deliver: Any, header: ContentHeader, body: bytes) -> None:
        self.deliveries.append(
            Delivery(
                channel,
                deliver.delivery_tag,
                deliver.routing_key,
                deliver.redelivered,
                header.properties.message_id,
                header.properties.headers,
                body,
            )
        )


async def receive(wire: bytes, chunks: list[int] | None, deliveries: int, others: int) -> Collector:
    """Every frame through the patched FrameReceiver; the bytes fed all at once, or in
    chunks of the given sizes as the reader asks for more."""
    reader = asyncio.StreamReader()
    if chunks is None:
        reader.feed_data(wire)
        reader.feed_eof()
    else:

        async def feed() -> None:
            start = 0
            for size in chunks:
                reader.feed_data(wire[start : start + size])
                start += size
                await asyncio.sleep(0)
            reader.feed_data(wire[start:])
            reader.feed_eof()

        feeder = asyncio.create_task(feed())
    receiver = FrameReceiver(reader)
    receiver.started = True
    collector = Collector()
    while len(collector.deliveries) < deliveries or collector.others < others:
        _, channel, frame = await receiver.get_frame()
        collector.add(channel, frame)
    if chunks is not None:
        await feeder
    assert not reader._buffer  # type: ignore[attr-defined]  # every byte was a frame taken
    return collector


async def test_deliveries_read_whole_or_frame_by_frame_are_the_same() -> None:
    takes_whole = falls_back = 0
    for seed in range(30):
        rng = random.Random(seed)
        wire, expected, others = stream(rng)
        data = b"".join(wire)
        chunks = None if seed % 2 else [rng.randint(1, 3000) for _ in range(len(data) // 1500)]
        collector = await receive(data, chunks, len(expected), others)
        assert collector.deliveries == expected
        assert collector.others == others
        takes_whole += collector.whole
        falls_back += len(expected) - collector.whole
    assert takes_whole > 300 and falls_back > 100  # both paths were taken, many times


async def test_a_delivery_in_one_piece_is_a_deliver() -> None:
    """aiormq's channel reader matches ``case Basic.Deliver()``: the subclass matches."""
    rng = random.Random(1)
    wire, expected = frames_for(rng, 1, 7)
    reader = asyncio.StreamReader()
    reader.feed_data(b"".join(wire[1:]))
    deliver = pamqp.frame.unmarshal(wire[0])
    weight, channel, whole = amqp_speedups._with_content(reader, deliver)
    assert isinstance(whole, Basic.Deliver)
    assert isinstance(whole, DeliverWithContent)
    assert (weight, channel) == deliver[:2]
    assert whole.body == expected.body
    assert whole.delivery_tag == 7
    assert not reader._buffer  # type: ignore[attr-defined]
