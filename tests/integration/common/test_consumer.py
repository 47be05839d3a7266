"""QueueConsumer against the real RabbitMQ: readiness, background jobs, and the stop order."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from prometheus_client import CollectorRegistry

from services.common.amqp import Broker, InboundMessage
from services.common.consumer import ConsumerService, QueueConsumer
from services.common.topology import Topology
from tests.support.amqp import AMQP_URL, delivery_job, wait_for

pytestmark = pytest.mark.broker


async def test_consumes_runs_background_jobs_and_stops_in_order(topology: Topology) -> None:
    steps: list[str] = []
    received: asyncio.Queue[str] = asyncio.Queue()
    handler_started = asyncio.Event()
    release_handler = asyncio.Event()
    background_running = asyncio.Event()

    async def handle(message: InboundMessage) -> None:
        handler_started.set()
        await release_handler.wait()
        await message.ack()
        steps.append("handler done")
        await received.put(message.message_id or "")

    async def background() -> None:
        background_running.set()
        try:
            await asyncio.Event().wait()
        finally:
            steps.append("background cancelled")

    async def cleanup() -> None:
        steps.append(f"cleanup, broker ready={broker.ready}")

    broker = Broker(AMQP_URL, topology)
    consumer = QueueConsumer(
        broker, topology.delivery, handle, background=[background], cleanups=[cleanup]
    )
    assert not consumer.ready
    await consumer.start()
    await wait_for(lambda: consumer.ready, 15, "the consumer to be ready")
    await asyncio.wait_for(background_running.wait(), 5)

    sender = Broker(AMQP_URL, topology)
    await sender.connect()
    try:
        await sender.publish(topology.delivery, b"body", delivery_job(), message_id="m1")
        await asyncio.wait_for(handler_started.wait(), 10)
        stopping = asyncio.create_task(consumer.stop())
        await wait_for(lambda: not consumer.ready, 5, "the consumer to stop being ready")
        assert not stopping.done()  # draining: waits for the handler in flight
        release_handler.set()
        await asyncio.wait_for(stopping, 10)
    finally:
        await sender.close()

    assert await received.get() == "m1"
    assert steps == ["background cancelled", "handler done", "cleanup, broker ready=True"]
    assert not broker.ready and not consumer.ready


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.retries = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", "") == "broker_retry":
            self.retries.set()


async def test_waits_for_the_broker_not_ready_and_stops_cleanly(topology: Topology) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{_closed_port()}/"
    broker = Broker(url, topology, reconnect_interval=0.05)
    cleaned: list[str] = []

    async def cleanup() -> None:
        cleaned.append("cleanup")

    async def never(message: InboundMessage) -> None:
        raise AssertionError("nothing can be consumed without a broker")

    class Service(ConsumerService):
        name = "probe"

        def __init__(self) -> None:
            self.registry = CollectorRegistry()
            self.consumer = QueueConsumer(broker, topology.bounce, never, cleanups=[cleanup])

    events = _Events()
    logger = logging.getLogger("services.common.amqp")
    logger.addHandler(events)
    service = Service()
    try:
        await service.start()
        await asyncio.wait_for(events.retries.wait(), 10)  # it is trying, in the background
        assert not service.is_ready()
        await asyncio.wait_for(service.stop(), 10)
    finally:
        logger.removeHandler(events)
    assert cleaned == ["cleanup"]
    assert not service.is_ready()
