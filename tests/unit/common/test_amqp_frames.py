"""The body frames cut from views are byte for byte the frames aiormq cuts itself."""

from __future__ import annotations

from types import SimpleNamespace

import aiormq
import pamqp.frame
import pytest

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
