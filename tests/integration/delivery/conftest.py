"""The delivery service in the test's loop, against the real RabbitMQ, a loopback
DNS server and aiosmtpd MX servers on 127.0.0.2, 127.0.0.3, ... (one shared port)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from services.common.amqp import Broker
from services.common.envelope import BounceJob, DeliveryJob, decode, new_queue_id
from services.common.settings import load_settings
from services.common.topology import Topology
from services.delivery.service import DeliveryService, build
from tests.support.amqp import AMQP_URL, delete_queues, unique_prefix, wait_for
from tests.support.dns_server import DnsServer
from tests.support.mx_server import MxServers

HOSTNAME = "relay.staffetta.test"
BODY = (
    b"Received: from client.test by relay.staffetta.test; Sat, 1 Jan 2026 00:00:00 +0000\r\n"
    b"From: <s@src.test>\r\nTo: <a@example.test>\r\nSubject: test\r\n"
    b"Message-ID: <1@src.test>\r\n\r\nHello,\r\n.leading dot\r\nbye\r\n"
)

pytestmark = pytest.mark.broker


@dataclass
class Delivery:
    """A running delivery service plus the test's own view of the broker."""

    prefix: str
    service: DeliveryService
    connection: AbstractRobustConnection
    channel: AbstractChannel
    bounces: asyncio.Queue[AbstractIncomingMessage] = field(default_factory=asyncio.Queue)

    @property
    def topology(self) -> Topology:
        return self.service.broker.topology

    def job(
        self, recipients: list[str], *, domain: str = "example.test", **changes: object
    ) -> DeliveryJob:
        job = DeliveryJob(
            queue_id=new_queue_id(),
            sender="s@src.test",
            recipients=recipients,
            route="relay",
            domain=domain,
            accepted_at=time.time(),
        )
        return job.model_copy(update=changes)

    async def submit(self, job: DeliveryJob, body: bytes = BODY) -> None:
        await self.service.broker.publish(
            self.topology.delivery, body, job, message_id=f"{job.queue_id}.test"
        )

    async def next_bounce(self, seconds: float = 10.0) -> tuple[BounceJob, bytes]:
        message = await asyncio.wait_for(self.bounces.get(), seconds)
        return decode(BounceJob, message.headers), message.body

    def metric(self, name: str, **labels: str) -> float:
        value = self.service.registry.get_sample_value(name, labels)
        return value or 0.0

    async def wait_metric(
        self, name: str, value: float, seconds: float, what: str, **labels: str
    ) -> None:
        """Wait until the sample ``name{labels}`` equals ``value``."""
        await wait_for(lambda: self.metric(name, **labels) == value, seconds, what)

    async def depth(self, queue: str) -> int:
        declared = await self.channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    server.add_mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")])
    server.add_a("mx1.example.test", "127.0.0.2")
    server.add_a("mx2.example.test", "127.0.0.3")
    with server:
        yield server


@pytest.fixture
def mx() -> Iterator[MxServers]:
    with MxServers(count=2, domain="example.test") as fleet:
        yield fleet


StartDelivery = Callable[..., Awaitable[Delivery]]


async def defer_two(delivery: Delivery, mx: MxServers) -> tuple[str, str]:
    """Every MX greylists; two jobs (one and two recipients) deferred; their queue ids."""
    for server in mx.servers:
        server.fail_rcpt("451 4.7.1 greylisted", times=None)
    first = delivery.job(["a@example.test"])
    second = delivery.job(["b@example.test", "c@example.test"])
    for job in (first, second):
        await delivery.submit(job)
    await delivery.wait_metric(
        "staffetta_delivery_jobs_total", 2, 10, "two deferred jobs", result="retried"
    )
    return first.queue_id, second.queue_id


@pytest.fixture
async def start_delivery(
    dns_server: DnsServer, mx: MxServers, tmp_path: Path
) -> AsyncIterator[StartDelivery]:
    """Start the service with test settings (overridable as ``NAME=value`` keywords)."""
    started: list[Delivery] = []

    async def start(prefix: str = "", **overrides: str) -> Delivery:
        prefix = prefix or unique_prefix()
        env = {
            "STAFFETTA_AMQP_URL": AMQP_URL,
            "STAFFETTA_AMQP_PREFIX": prefix,
            "STAFFETTA_HOSTNAME": HOSTNAME,
            "STAFFETTA_DNS_NAMESERVERS": dns_server.address,
            "STAFFETTA_DNS_TIMEOUT": "2s",
            "STAFFETTA_REMOTE_SMTP_PORT": str(mx.port),
            "STAFFETTA_RETRY_SCHEDULE": "1s",
            "STAFFETTA_CONNECT_TIMEOUT": "2s",
            "STAFFETTA_COMMAND_TIMEOUT": "5s",
            "STAFFETTA_DATA_TIMEOUT": "5s",
            "STAFFETTA_MAILDIR_ROOT": str(tmp_path / "mail"),
            "STAFFETTA_HTTP_LISTEN": "127.0.0.1:0",
            "STAFFETTA_DELAY_WARNING_AFTER": "0",
        }
        env.update({f"STAFFETTA_{key}": value for key, value in overrides.items()})
        service = build(load_settings(env))
        await service.start()
        connection = await aio_pika.connect_robust(AMQP_URL)
        delivery = Delivery(prefix, service, connection, await connection.channel())
        started.append(delivery)
        await wait_for(service.is_ready, 15, "the delivery service to consume")
        bounce_queue = await delivery.channel.get_queue(delivery.topology.bounce, ensure=False)

        async def collect(message: AbstractIncomingMessage) -> None:
            await message.ack()
            await delivery.bounces.put(message)

        await bounce_queue.consume(collect)
        return delivery

    yield start
    for delivery in started:
        await delivery.service.stop()
        await delete_queues(delivery.connection, (spec.name for spec in delivery.topology.queues()))
        with contextlib.suppress(Exception):
            await delivery.connection.close()


__all__ = [
    "AMQP_URL",
    "BODY",
    "HOSTNAME",
    "Broker",
    "Delivery",
    "StartDelivery",
    "defer_two",
    "wait_for",
]
