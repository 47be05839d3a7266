"""Shared by the broker and consumer tests: a topology of their own, and a job to send."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.common.envelope import DeliveryJob, new_queue_id
from services.common.topology import Topology
from tests.support.amqp import AMQP_URL, delete_queues_at, unique_prefix


@pytest.fixture
async def topology() -> AsyncIterator[Topology]:
    topology = Topology(unique_prefix(), (1.0, 2.0))
    yield topology
    await delete_queues_at(AMQP_URL, (spec.name for spec in topology.queues()))


def job() -> DeliveryJob:
    return DeliveryJob(
        queue_id=new_queue_id(),
        sender="s@src.test",
        recipients=["a@example.test"],
        route="relay",
        domain="example.test",
        accepted_at=0.0,
    )
