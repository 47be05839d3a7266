"""The body frames cut from views are byte for byte the frames aiormq cuts itself,
and a big message reaches the socket as those views, never joined into a copy."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiormq
import pamqp.frame
import pytest
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from services.common import amqp_speedups

FRAME = 131_064  # what aiormq's max_content_size is for RabbitMQ's frame_max of 128 KiB


def wire(frames: list[object]) -> bytes:
    return b"".join(pamqp.frame.marshal(frame, 1) for frame in frames)  # type: ignore[arg-type]


def test_the_patch_is_installed() -> None:
    assert aiormq.Channel._split_body is amqp_speedups._split_body_in_views


@pytest.mark.parametrize(
    "size", [0, 1, 1000, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME, 2 * FRAME + 1, 5 * FRAME + 7]
)
def test_same_frames_as_aiormq(size: int) -> None:
    channel = SimpleNamespace(max_content_size=FRAME)
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ours = amqp_speedups._split_body_in_views(channel, body)  # type: ignore[arg-type]
    theirs = amqp_speedups.aiormq_split_body(channel, body)  # type: ignore[arg-type]
    assert len(ours) == len(theirs)
    assert wire(ours) == wire(theirs)
    assert b"".join(bytes(frame.value) for frame in ours) == body


@pytest.mark.parametrize("sizes", [(0,), (200, 0), (200, 5 * FRAME + 7), (FRAME, FRAME, 3), (7, 1)])
def test_body_parts_give_the_frames_of_each_piece_in_order(sizes: tuple[int, ...]) -> None:
    """A frame may end where a piece ends; the frames still add up to the body."""
    channel = SimpleNamespace(max_content_size=FRAME)
    pieces = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    parts = amqp_speedups.BodyParts(pieces[0], bytearray(b"".join(pieces[1:])))
    frames = amqp_speedups._split_body_in_views(channel, parts)  # type: ignore[arg-type]
    body = b"".join(pieces)
    assert len(parts) == len(body)
    assert b"".join(parts.parts) == body
    assert b"".join(bytes(frame.value) for frame in frames) == body
    assert all(0 < len(frame.value) <= FRAME for frame in frames)


def test_a_big_publish_is_written_as_buffers_not_joined() -> None:
    """From JOIN_LIMIT on, marshall leaves the frames as a list the writer sends with
    writelines: the same bytes as aiormq's, without a second copy of the body."""
    channel = SimpleNamespace(max_content_size=FRAME)
    body = bytes(range(256)) * (amqp_speedups.JOIN_LIMIT // 256 + 3)
    frames = [
        Basic.Publish(routing_key="q", mandatory=True),
        ContentHeader(body_size=len(body), properties=Basic.Properties(delivery_mode=2)),
        *amqp_speedups._split_body_in_views(channel, body),  # type: ignore[arg-type]
    ]
    ours = ChannelFrame.marshall(channel_number=1, frames=frames)
    theirs = amqp_speedups.aiormq_marshall(channel_number=1, frames=frames)
    assert isinstance(ours.payload, amqp_speedups.FrameBuffers)
    assert b"".join(ours.payload) == theirs.payload
    assert any(isinstance(piece, memoryview) for piece in ours.payload)  # views, not copies
    small = ChannelFrame.marshall(channel_number=1, frames=[*frames[:2], ContentBody(b"x")])
    assert isinstance(small.payload, bytes)


async def test_the_stream_writer_sends_frame_buffers_with_writelines() -> None:
    written: list[object] = []

    class Transport:
        def write(self, data: object) -> None:
            written.append(("write", data))

        def writelines(self, data: object) -> None:
            written.append(("writelines", data))

    writer = asyncio.StreamWriter(Transport(), None, None, asyncio.get_running_loop())  # type: ignore[arg-type]
    buffers = amqp_speedups.FrameBuffers([b"a", memoryview(b"b")])
    writer.write(buffers)
    writer.write(b"plain")
    assert written == [("writelines", buffers), ("write", b"plain")]


def test_body_parts_are_joined_while_small() -> None:
    small = amqp_speedups.BodyParts.of(b"Received: x\r\n", bytearray(b"body\r\n"))
    assert small == b"Received: x\r\nbody\r\n"
    assert type(small) is bytes
    big_body = bytearray(amqp_speedups.JOIN_LIMIT)
    big = amqp_speedups.BodyParts.of(b"Received: x\r\n", big_body)
    assert isinstance(big, amqp_speedups.BodyParts)
    assert big.parts[1] is big_body
