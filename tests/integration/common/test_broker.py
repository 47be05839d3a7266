"""Broker against the real RabbitMQ: what is published arrives whole, and a consumer
survives the connection being cut."""

from __future__ import annotations

import asyncio

import pytest

from services.common.amqp import Broker, BrokerUnavailable, InboundMessage
from services.common.envelope import DeliveryJob, decode
from services.common.topology import Topology
from tests.support.amqp import AMQP_URL, delivery_job
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.broker


async def test_a_published_message_arrives_with_its_envelope_body_and_id(
    topology: Topology,
) -> None:
    broker = Broker(AMQP_URL, topology)
    await broker.connect()
    received: asyncio.Queue[tuple[bytes, DeliveryJob, str | None]] = asyncio.Queue()

    async def handle(message: InboundMessage) -> None:
        await received.put((message.body, decode(DeliveryJob, message.headers), message.message_id))
        await message.ack()

    try:
        await broker.consume(topology.delivery, handle)
        sent = delivery_job()
        body = b"Subject: x\r\n\r\n" + bytes(range(256)) * 1200  # three AMQP body frames
        await broker.publish(topology.delivery, body, sent, message_id=sent.queue_id)
        got_body, got_job, got_id = await asyncio.wait_for(received.get(), 10)
        assert (got_body, got_job, got_id) == (body, sent, sent.queue_id)
    finally:
        await broker.close()


async def test_a_rejected_message_is_redelivered_after_a_nack(topology: Topology) -> None:
    broker = Broker(AMQP_URL, topology)
    await broker.connect()
    seen: asyncio.Queue[str | None] = asyncio.Queue()

    async def handle(message: InboundMessage) -> None:
        await seen.put(message.message_id)
        if seen.qsize() == 1:
            await message.nack(requeue=True)
        else:
            await message.ack()

    try:
        await broker.consume(topology.delivery, handle)
        sent = delivery_job()
        await broker.publish(topology.delivery, b"x", sent, message_id=sent.queue_id)
        first = await asyncio.wait_for(seen.get(), 10)
        second = await asyncio.wait_for(seen.get(), 10)
        assert first == second == sent.queue_id
    finally:
        await broker.close()


async def test_the_consumer_comes_back_after_the_connection_is_cut(topology: Topology) -> None:
    proxy = await TcpProxy(5672).start()
    broker = Broker(AMQP_URL.replace(":5672/", f":{proxy.port}/"), topology, reconnect_interval=0.1)
    publisher = Broker(AMQP_URL, topology)
    received: asyncio.Queue[str | None] = asyncio.Queue()

    async def handle(message: InboundMessage) -> None:
        await message.ack()
        await received.put(message.message_id)

    try:
        await broker.connect()
        await publisher.connect()
        await broker.consume(topology.delivery, handle)
        before = delivery_job()
        await publisher.publish(topology.delivery, b"1", before, message_id=before.queue_id)
        assert await asyncio.wait_for(received.get(), 10) == before.queue_id

        await proxy.close()  # cut: the broker's side drops our consumer
        with pytest.raises(BrokerUnavailable):
            await broker.publish(topology.delivery, b"x", before, message_id="lost")
        proxy = await TcpProxy(5672, proxy.port).start()
        after = delivery_job()
        await publisher.publish(topology.delivery, b"2", after, message_id=after.queue_id)
        # The first message's ack may still have been held (acks leave in batches,
        # services.common.acks) when the connection was cut: then the broker delivers
        # it again, before the new one. At least once, never lost.
        seen = [await asyncio.wait_for(received.get(), 20)]
        if seen[0] == before.queue_id:
            seen.append(await asyncio.wait_for(received.get(), 20))
        assert seen[-1] == after.queue_id, seen
    finally:
        await broker.close()
        await publisher.close()
        await proxy.close()


async def test_held_acks_reach_the_broker_when_the_consumer_stops(topology: Topology) -> None:
    broker = Broker(AMQP_URL, topology)
    publisher = Broker(AMQP_URL, topology)
    handled: asyncio.Queue[str | None] = asyncio.Queue()

    async def handle(message: InboundMessage) -> None:
        await message.ack()
        await handled.put(message.message_id)

    await publisher.connect()
    await broker.connect()
    try:
        await broker.consume(topology.delivery, handle)
        for number in range(20):
            await publisher.publish(
                topology.delivery, b"x", delivery_job(), message_id=f"m{number}"
            )
        for _ in range(20):
            await asyncio.wait_for(handled.get(), 10)
        await broker.drain()  # the SIGTERM path: the last acks leave here
    finally:
        await broker.close()
    try:
        # Unacked messages would be ready again now that the consumer is gone.
        assert await publisher.queue_depth(topology.delivery) == (0, 0)
    finally:
        await publisher.close()
