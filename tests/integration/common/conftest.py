"""Shared by the broker and consumer tests: a topology of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.common.topology import Topology
from tests.support.amqp import AMQP_URL, delete_queues_at, unique_prefix


@pytest.fixture
async def topology() -> AsyncIterator[Topology]:
    topology = Topology(unique_prefix(), (1.0, 2.0))
    yield topology
    await delete_queues_at(AMQP_URL, (spec.name for spec in topology.queues()))
