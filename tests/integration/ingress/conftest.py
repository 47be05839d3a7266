"""Fixtures: the real ingress, in-process on free loopback ports, against real RabbitMQ."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import bcrypt
import pytest
import trustme
from aio_pika.abc import AbstractIncomingMessage

from services.common.envelope import AcceptedMessage, decode
from services.common.settings import load_settings
from services.common.topology import Topology
from services.ingress.service import IngressService
from tests.support.amqp import AMQP_URL, delete_queues_at, wait_for
from tests.support.services import sample


@dataclass
class Queued:
    envelope: AcceptedMessage
    body: bytes
    message_id: str


class Incoming:
    """Reads what the ingress published to ``PREFIX.incoming``."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, queue: str) -> None:
        self._channel = channel
        self.queue = queue

    async def get(self, within: float = 10.0) -> Queued:
        queue = await self._channel.get_queue(self.queue, ensure=False)
        deadline = time.monotonic() + within
        while True:
            message: AbstractIncomingMessage | None = await queue.get(no_ack=True, fail=False)
            if message is not None:
                return Queued(
                    decode(AcceptedMessage, message.headers),
                    message.body,
                    message.message_id or "",
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing arrived in {self.queue} within {within}s")
            await asyncio.sleep(0.05)

    async def count(self) -> int:
        declared = await self._channel.declare_queue(self.queue, passive=True)
        result = declared.declaration_result
        return int(result.message_count or 0)


@dataclass
class Running:
    service: IngressService
    prefix: str

    @property
    def smtp_port(self) -> int:
        return self.service.bound["smtp"].port

    @property
    def submission_port(self) -> int:
        return self.service.bound["submission"].port

    @property
    def submissions_port(self) -> int:
        return self.service.bound["submissions"].port

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.service, name, **labels)


StartIngress = Callable[..., Awaitable[Running]]


async def until(predicate: Callable[[], bool], within: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``within`` seconds pass; its last value."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def wait_ready(service: IngressService, within: float = 15.0) -> None:
    await wait_for(service.is_ready, within, "the ingress to be ready (is RabbitMQ running?)")


@pytest.fixture
async def amqp_channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    yield channel
    await connection.close()


@pytest.fixture
async def incoming(amqp_channel: aio_pika.abc.AbstractChannel, prefix: str) -> Incoming:
    return Incoming(amqp_channel, f"{prefix}.incoming")


@pytest.fixture
async def delete_queues(prefix: str) -> AsyncIterator[None]:
    """Delete every queue of this test's prefix afterwards."""
    yield
    await delete_queues_at(AMQP_URL, (spec.name for spec in Topology(prefix, (1.0, 2.0)).queues()))


@pytest.fixture
async def start_ingress(prefix: str, delete_queues: None) -> AsyncIterator[StartIngress]:
    """Start an ingress with ``STAFFETTA_*`` overrides (lower-case names without prefix)."""
    started: list[IngressService] = []

    async def start(*, ready: bool = True, **overrides: str) -> Running:
        environ = {
            "STAFFETTA_AMQP_URL": AMQP_URL,
            "STAFFETTA_AMQP_PREFIX": prefix,
            "STAFFETTA_HOSTNAME": "mx.staffetta.test",
            "STAFFETTA_SMTP_LISTEN": "127.0.0.1:0",
            "STAFFETTA_SUBMISSION_LISTEN": "127.0.0.1:0",
            "STAFFETTA_HTTP_LISTEN": "127.0.0.1:0",
            "STAFFETTA_LOCAL_DOMAINS": "local.test",
            "STAFFETTA_TRUSTED_NETWORKS": "127.0.0.1/32",
            "STAFFETTA_DNS_NAMESERVERS": "127.0.0.1:1",
            "STAFFETTA_RETRY_SCHEDULE": "1s,2s",
        }
        for key, value in overrides.items():
            environ[f"STAFFETTA_{key.upper()}"] = value
        service = IngressService(load_settings(environ))
        await service.start()
        started.append(service)
        if ready:
            await wait_ready(service)
        return Running(service, prefix)

    yield start
    for service in started:
        await service.stop()


@dataclass
class Tls:
    cert_file: Path
    key_file: Path
    client: ssl.SSLContext

    def settings(self) -> dict[str, str]:
        """The ingress overrides that serve this certificate (``start_ingress(**...)``)."""
        return {"tls_cert_file": str(self.cert_file), "tls_key_file": str(self.key_file)}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A throw-away CA (trustme) and a certificate for mx.staffetta.test and 127.0.0.1."""
    ca = trustme.CA()
    cert = ca.issue_cert("mx.staffetta.test", "127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(cert_file, key_file, client)


def htpasswd_line(user: str, password: str) -> str:
    """What ``htpasswd -nbB user password`` prints (the ``$2y$`` variant, cost 5)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:$2y${hashed[4:]}\n"


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text("# accounts\n" + htpasswd_line("alice", "wonderland"))
    return path
