"""Batched acks never settle a delivery that has not been answered."""

from __future__ import annotations

import asyncio
import random

from services.common.acks import AckBatcher, PendingAcks


def test_a_run_of_acks_from_the_oldest_goes_as_one_multiple_ack() -> None:
    pending = PendingAcks()
    for tag in (1, 2, 3):
        pending.delivered(tag)
    for tag in (3, 1, 2):
        pending.acked(tag)
    assert pending.take() == (3, [])
    assert pending.take() == (None, [])


def test_acks_after_a_delivery_in_work_go_alone_and_never_ride_over_it() -> None:
    pending = PendingAcks()
    for tag in (1, 2, 3, 4):
        pending.delivered(tag)
    pending.acked(1)
    pending.acked(3)
    pending.acked(4)
    assert pending.take() == (1, [3, 4])  # 2 is still in work
    pending.acked(2)
    assert pending.take() == (2, [])  # 3 and 4 went already; 2 releases them


def test_a_nacked_delivery_does_not_hold_the_later_acks() -> None:
    pending = PendingAcks()
    for tag in (1, 2, 3):
        pending.delivered(tag)
    pending.answered_alone(1)
    pending.acked(2)
    pending.acked(3)
    assert pending.take() == (3, [])


def test_random_orders_keep_every_delivery_answered_once_and_in_work_ones_unsettled() -> None:
    """A model of the broker: a multiple ack for T settles all outstanding tags <= T."""
    generator = random.Random(5)
    for _ in range(300):
        pending = PendingAcks()
        tags = list(range(1, generator.randrange(2, 40)))
        outstanding: set[int] = set()  # at the broker
        answered: set[int] = set()  # by the worker
        delivered = 0
        while delivered < len(tags) or outstanding:
            step = generator.random()
            if delivered < len(tags) and step < 0.4:
                tag = tags[delivered]
                delivered += 1
                pending.delivered(tag)
                outstanding.add(tag)
            elif step < 0.8:
                waiting = sorted(outstanding - answered)
                if waiting:
                    tag = generator.choice(waiting)
                    answered.add(tag)
                    if generator.random() < 0.2:
                        pending.answered_alone(tag)
                        outstanding.discard(tag)  # the nack went at once
                    else:
                        pending.acked(tag)
            else:
                highest, alone = pending.take()
                if highest is not None:
                    settled = {tag for tag in outstanding if tag <= highest}
                    assert settled <= answered, (settled - answered, highest)
                    outstanding -= settled
                for tag in alone:
                    assert tag in outstanding and tag in answered
                    outstanding.discard(tag)
            if delivered == len(tags) and outstanding and outstanding <= answered:
                highest, alone = pending.take()
                if highest is not None:
                    outstanding -= {tag for tag in outstanding if tag <= highest}
                outstanding -= set(alone)
                assert not outstanding, "every answered delivery is settled after take()"


class Channel:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bool]] = []

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.sent.append((delivery_tag, multiple))


async def test_the_batcher_sends_within_its_window_and_on_close() -> None:
    channel = Channel()
    batcher = AckBatcher(channel, window=0.01)
    for tag in (1, 2, 3):
        batcher.delivered(tag)
    batcher.ack(1)
    batcher.ack(2)
    assert channel.sent == []  # held for the window
    await asyncio.sleep(0.05)
    assert channel.sent == [(2, True)]
    batcher.ack(3)
    await batcher.close()  # the SIGTERM path: no wait for the window
    assert channel.sent == [(2, True), (3, True)]


async def test_a_full_half_of_the_prefetch_is_sent_without_waiting() -> None:
    channel = Channel()
    batcher = AckBatcher(channel, window=60.0, max_held=3)
    for tag in range(1, 7):
        batcher.delivered(tag)
    batcher.ack(1)
    batcher.ack(2)
    await asyncio.sleep(0)
    assert channel.sent == []  # under the limit: waits for the (long) window
    batcher.ack(3)
    batcher.ack(4)  # a second ack before the send ran: still one send
    await asyncio.sleep(0)
    assert channel.sent == [(4, True)]
    await batcher.close()
    assert channel.sent == [(4, True)]


class SlowChannel(Channel):
    """Each ack takes a loop turn to leave, as aiormq's does while the socket drains."""

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        await asyncio.sleep(0)
        self.sent.append((delivery_tag, multiple))


async def test_flushes_never_overtake_one_another() -> None:
    channel = SlowChannel()
    batcher = AckBatcher(channel, window=60.0)
    for tag in (1, 2, 3, 4):
        batcher.delivered(tag)
    batcher.ack(1)
    batcher.ack(3)
    batcher.ack(4)
    first = asyncio.create_task(batcher.flush())  # 1 multiple, then 3 and 4 alone
    await asyncio.sleep(0)
    batcher.ack(2)
    await batcher.flush()  # must not send "2 multiple" between 3 and 4
    await first
    assert channel.sent == [(1, True), (3, False), (4, False), (2, True)]
