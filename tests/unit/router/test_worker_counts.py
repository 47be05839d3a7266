"""RouterWorker's metrics and "routed" log fields, against values computed from the plan.

The worker keeps the label children it touches for every message and counts the
recipients by route in one pass; the metrics and the log line must still say what
``RoutingPlan.recipient_count`` and a ``labels()`` look-up per increment would.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from services.common.addressing import RecipientDirectory
from services.common.amqp import Broker, InboundMessage, Output
from services.common.envelope import ENVELOPE_HEADER, AcceptedMessage
from services.router.metrics import ROUTES, RouterMetrics
from services.router.routing import route_message
from services.router.worker import RouterWorker
from tests.unit.router.test_routing_equivalence import ALIASES, random_address

DIRECTORY = RecipientDirectory(frozenset({"local.test", "xn--bcher-kva.example"}), None, ALIASES)


class _Topology:
    delivery = "test.delivery"
    bounce = "test.bounce"


class _Broker:
    topology = _Topology()

    def __init__(self) -> None:
        self.published: list[Output] = []

    async def publish_all(self, body: bytes, outputs: list[Output]) -> None:
        self.published.extend(outputs)


class _Message:
    body = b"Subject: test\r\n\r\nbody\r\n"

    def __init__(self, accepted: AcceptedMessage) -> None:
        self.headers = {ENVELOPE_HEADER: accepted.model_dump_json().encode()}
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if not sample.name.startswith("staffetta_router_processing_seconds")
        and not sample.name.endswith("_created")
    }


@pytest.mark.parametrize("seed", range(3))
async def test_metrics_and_log_fields_match_the_plans(seed: int) -> None:
    rng = random.Random(seed)
    registry = CollectorRegistry()
    broker = _Broker()
    worker = RouterWorker(cast(Broker, broker), lambda: DIRECTORY, RouterMetrics.create(registry))
    records = _Records()
    logger = logging.getLogger("services.router.worker")
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    expected: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    routed_fields: list[dict[str, Any]] = []
    try:
        for number in range(300):
            recipients = [random_address(rng) for _ in range(rng.randint(1, 6))]
            accepted = AcceptedMessage(
                queue_id=f"Q{number}",
                sender="s@example.org",
                recipients=recipients,
                accepted_at=1.0,
                received_headers=rng.choice([0, 1, 51]),
            )
            plan = route_message(accepted, DIRECTORY)
            for route in ROUTES:
                expected["staffetta_router_recipients_total", (("route", route),)] += (
                    plan.recipient_count(route)
                )
            for job in plan.jobs:
                expected["staffetta_router_jobs_published_total", (("route", job.route),)] += 1
            for result in plan.failed:
                key = ("staffetta_router_failed_recipients_total", (("status", result.status),))
                expected[key] += 1
            expected["staffetta_router_alias_expansions_total", ()] += plan.alias_expansions
            expected["staffetta_router_messages_total", (("result", "routed"),)] += 1
            routed_fields.append(
                {
                    "queue_id": accepted.queue_id,
                    "jobs": len(plan.jobs),
                    "local": plan.recipient_count("local"),
                    "relay": plan.recipient_count("relay"),
                    "failed": len(plan.failed),
                }
            )
            message = _Message(accepted)
            await worker.handle(cast(InboundMessage, message))
            assert message.acked
    finally:
        logger.removeHandler(records)
    got = samples(registry)
    for result in ("requeued", "rejected"):
        expected["staffetta_router_messages_total", (("result", result),)] += 0
    assert got == {key: float(value) for key, value in expected.items()}
    routed = [record.__dict__ for record in records.records if record.msg == "routed"]
    fields = ["queue_id", "jobs", "local", "relay", "failed"]
    assert [{name: entry[name] for name in fields} for entry in routed] == routed_fields
    assert expected["staffetta_router_recipients_total", (("route", "local"),)] > 0
    assert expected["staffetta_router_recipients_total", (("route", "relay"),)] > 0
