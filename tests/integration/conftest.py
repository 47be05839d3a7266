"""Fixtures every integration test may use: a unique queue prefix, the test's own
connection to the real RabbitMQ (deleting the prefix's queues afterwards) and a
confirmed publisher on the same topology."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from services.common.amqp import Broker
from services.common.topology import Topology
from tests.support.amqp import AMQP_URL, delete_queues, unique_prefix


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def amqp(prefix: str) -> AsyncIterator[AbstractRobustConnection]:
    """A plain connection for the test's side; deletes every queue of the prefix afterwards."""
    connection = await aio_pika.connect_robust(AMQP_URL)
    yield connection
    await delete_queues(connection, (spec.name for spec in Topology(prefix, (1.0, 2.0)).queues()))
    await connection.close()


@pytest.fixture
async def publisher(prefix: str, amqp: AbstractRobustConnection) -> AsyncIterator[Broker]:
    """The test plays the ingress: a confirmed publisher on the same topology."""
    broker = Broker(AMQP_URL, Topology(prefix, (1.0, 2.0)))
    await broker.connect()
    yield broker
    await broker.close()
