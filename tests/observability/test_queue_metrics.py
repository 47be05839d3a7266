"""staffetta_queue_messages / staffetta_queue_consumers against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from services.common.amqp import Broker, BrokerUnavailable, InboundMessage
from services.common.queue_metrics import QueueMetrics, cancel
from services.common.topology import Topology
from tests.support.amqp import AMQP_URL, delete_queues_at, unique_prefix

pytestmark = pytest.mark.broker


class Note(BaseModel):
    text: str


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    topology = Topology(unique_prefix(), (1.0, 300.0))
    broker = Broker(AMQP_URL, topology)
    await broker.connect()
    yield broker
    await broker.close()
    await delete_queues_at(AMQP_URL, (spec.name for spec in topology.queues()))


def sample(registry: CollectorRegistry, name: str, queue: str) -> float | None:
    return registry.get_sample_value(name, {"queue": queue})


async def test_depths_and_consumers_of_every_queue(broker: Broker) -> None:
    registry = CollectorRegistry()
    metrics = QueueMetrics(registry, broker.topology, broker.queue_depth)
    topology = broker.topology
    for index in range(3):
        await broker.publish(topology.delivery, b"x", Note(text="d"), message_id=f"d{index}")
    await broker.publish(topology.retry_queue(2), b"x", Note(text="r"), message_id="r1")
    seen: asyncio.Queue[InboundMessage] = asyncio.Queue()

    async def keep(message: InboundMessage) -> None:
        await seen.put(message)  # held unacknowledged: not "ready" any more

    await broker.consume(topology.bounce, keep)

    await metrics.refresh()

    labels = {metrics.label(spec.name) for spec in topology.queues()}
    assert labels == {"incoming", "delivery", "bounce", "parked", "retry.1s", "retry.5m"}
    # Quorum queues count a publish once it is confirmed: the depth is exact at once.
    assert sample(registry, "staffetta_queue_messages", "delivery") == 3
    assert sample(registry, "staffetta_queue_messages", "retry.5m") == 1
    assert sample(registry, "staffetta_queue_messages", "incoming") == 0
    assert sample(registry, "staffetta_queue_consumers", "bounce") == 1
    assert sample(registry, "staffetta_queue_consumers", "delivery") == 0
    stamp = registry.get_sample_value("staffetta_queue_stats_timestamp_seconds")
    assert stamp is not None and stamp > 0


async def test_the_periodic_task_follows_the_queues(broker: Broker) -> None:
    registry = CollectorRegistry()
    metrics = QueueMetrics(registry, broker.topology, broker.queue_depth, interval=0.05)
    task = asyncio.create_task(metrics.run())
    try:
        await broker.publish(broker.topology.parked, b"x", Note(text="p"), message_id="p1")
        deadline = time.monotonic() + 10
        while sample(registry, "staffetta_queue_messages", "parked") != 1:
            assert time.monotonic() < deadline, "the parked gauge never showed the job"
            await asyncio.sleep(0.02)
    finally:
        await cancel(task)
    assert task.cancelled()


async def test_a_broker_outage_keeps_the_last_values(broker: Broker) -> None:
    registry = CollectorRegistry()
    metrics = QueueMetrics(registry, broker.topology, broker.queue_depth, interval=0.05)
    await metrics.refresh()
    before = registry.get_sample_value("staffetta_queue_stats_timestamp_seconds")
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await metrics.refresh()
    task = asyncio.create_task(metrics.run())
    await asyncio.sleep(0.2)  # several failing ticks: the task must survive them
    assert not task.done()
    await cancel(task)
    assert registry.get_sample_value("staffetta_queue_stats_timestamp_seconds") == before
    assert sample(registry, "staffetta_queue_messages", "delivery") == 0


async def test_a_deleted_queue_leaves_the_consumers_and_the_other_gauges_alone(
    broker: Broker,
) -> None:
    registry = CollectorRegistry()
    metrics = QueueMetrics(registry, broker.topology, broker.queue_depth)
    topology = broker.topology
    received: asyncio.Queue[str] = asyncio.Queue()

    async def handle(message: InboundMessage) -> None:
        await message.ack()
        await received.put(message.message_id or "")

    await broker.consume(topology.incoming, handle)
    await metrics.refresh()
    stamp = registry.get_sample_value("staffetta_queue_stats_timestamp_seconds")
    await broker.publish(topology.delivery, b"x", Note(text="d"), message_id="d1")
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(topology.parked)

    # An operator deleted a queue: that one fails, the others are still read ...
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await metrics.refresh()
    assert sample(registry, "staffetta_queue_messages", "delivery") == 1
    assert registry.get_sample_value("staffetta_queue_stats_timestamp_seconds") == stamp
    # ... and the service's own channel still consumes and publishes.
    await broker.publish(topology.incoming, b"x", Note(text="i"), message_id="still-here")
    assert await asyncio.wait_for(received.get(), 10) == "still-here"
