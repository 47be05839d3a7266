"""The router as a service against the real RabbitMQ: PREFIX.incoming in, jobs out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import CollectorRegistry

from services.common.addressing import RecipientDirectory
from services.common.amqp import Broker
from services.common.envelope import (
    ENVELOPE_HEADER,
    AcceptedMessage,
    BounceJob,
    DeliveryJob,
    decode,
)
from services.common.reloading import CHECK_INTERVAL
from services.router.metrics import RouterMetrics
from services.router.service import RouterService, build
from services.router.worker import RouterWorker
from tests.integration.router.conftest import router_settings
from tests.support.amqp import AMQP_URL, collect, message_count, wait_for
from tests.support.services import running, sample

BODY = b"From: alice@example.org\r\nSubject: hello\r\n\r\nHello there.\r\n"


def accepted(queue_id: str, *recipients: str) -> AcceptedMessage:
    return AcceptedMessage(
        queue_id=queue_id,
        sender="alice@example.org",
        recipients=list(recipients),
        accepted_at=1_790_000_000.0,
        client_address="127.0.0.1",
        received_headers=1,
    )


async def started(prefix: str, aliases: Path | None = None) -> RouterService:
    return await running(build(router_settings(prefix, aliases)), "router ready")


async def test_router_publishes_one_job_per_destination(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker, tmp_path: Path
) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("team@local.test: ann@local.test, boss@remote.test\n")
    service = await started(prefix, aliases)
    try:
        delivery = await collect(amqp, publisher.topology.delivery)
        message = accepted(
            "QIDROUTE1", "team@local.test", "dave@OTHER.test", "carol@remote.test", "x@far.test"
        )
        await publisher.publish(publisher.topology.incoming, BODY, message, message_id="QIDROUTE1")

        received = await delivery.take(3)
        jobs = {}
        for item in received:
            assert item.body == BODY
            job = decode(DeliveryJob, item.headers)
            jobs[(job.route, job.domain)] = job
        assert sorted(jobs) == [("local", ""), ("relay", "far.test"), ("relay", "remote.test")]
        assert jobs[("local", "")].recipients == ["ann@local.test", "dave@OTHER.test"]
        assert jobs[("relay", "remote.test")].recipients == [
            "boss@remote.test",
            "carol@remote.test",
        ]
        assert jobs[("relay", "far.test")].recipients == ["x@far.test"]
        for job in jobs.values():
            assert job.queue_id == "QIDROUTE1"
            assert job.sender == "alice@example.org"
            assert job.accepted_at == 1_790_000_000.0
            assert job.received_headers == 1

        await wait_for(
            lambda: sample(service, "staffetta_router_messages_total", result="routed") == 1,
            10,
            "the routed counter",
        )
        assert sample(service, "staffetta_router_recipients_total", route="local") == 2
        assert sample(service, "staffetta_router_recipients_total", route="relay") == 3
        assert sample(service, "staffetta_router_jobs_published_total", route="relay") == 2
        assert sample(service, "staffetta_router_alias_expansions_total") == 1
        assert sample(service, "staffetta_router_processing_seconds_count") == 1
    finally:
        await service.stop()
    # Acknowledged, not merely delivered: nothing returns to the queue once the router is gone.
    assert await message_count(amqp, publisher.topology.incoming) == 0
    assert not service.is_ready()


async def test_alias_loop_goes_to_the_bounce_queue(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker, tmp_path: Path
) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("a@local.test: b@local.test\nb@local.test: a@local.test\n")
    service = await started(prefix, aliases)
    try:
        delivery = await collect(amqp, publisher.topology.delivery)
        bounces = await collect(amqp, publisher.topology.bounce)
        message = accepted("QIDLOOP1", "a@local.test", "carol@remote.test")
        await publisher.publish(publisher.topology.incoming, BODY, message, message_id="QIDLOOP1")

        bounce_message = await bounces.next()
        assert bounce_message.body == BODY  # the bounce service returns the original headers
        bounce = decode(BounceJob, bounce_message.headers)
        assert bounce.queue_id == "QIDLOOP1"
        assert bounce.sender == "alice@example.org"
        assert bounce.kind == "failure"
        assert [(r.recipient, r.action, r.status) for r in bounce.results] == [
            ("a@local.test", "failed", "5.4.6")
        ]
        job = decode(DeliveryJob, (await delivery.next()).headers)
        assert (job.route, job.domain, job.recipients) == (
            "relay",
            "remote.test",
            ["carol@remote.test"],
        )
        await wait_for(
            lambda: (
                sample(service, "staffetta_router_failed_recipients_total", status="5.4.6") == 1
            ),
            10,
            "the failed-recipient counter",
        )
    finally:
        await service.stop()


async def test_unreadable_envelope_is_parked(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker
) -> None:
    service = await started(prefix)
    try:
        parked = await collect(amqp, publisher.topology.parked)
        channel = await amqp.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(BODY, headers={ENVELOPE_HEADER: "{not json"}, message_id="BROKEN"),
            routing_key=publisher.topology.incoming,
        )
        dead = await parked.next()
        assert dead.message_id == "BROKEN"
        assert dead.body == BODY
        assert sample(service, "staffetta_router_messages_total", result="rejected") == 1
    finally:
        await service.stop()


async def test_input_is_requeued_until_every_output_is_confirmed(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker
) -> None:
    topology = publisher.topology
    broker = Broker(AMQP_URL, topology)
    await broker.connect()
    registry = CollectorRegistry()
    worker = RouterWorker(
        broker,
        lambda: RecipientDirectory(frozenset({"local.test"})),
        RouterMetrics.create(registry),
        requeue_pause=0.3,
    )
    # No delivery queue: the broker returns the job unroutable, the publish is not confirmed.
    channel = await amqp.channel()
    await channel.queue_delete(topology.delivery, if_unused=False, if_empty=False)
    try:
        await broker.consume(topology.incoming, worker.handle)
        message = accepted("QIDREQ1", "bob@local.test")
        await publisher.publish(topology.incoming, BODY, message, message_id="QIDREQ1")

        def requeued() -> float:
            value = registry.get_sample_value(
                "staffetta_router_messages_total", {"result": "requeued"}
            )
            return value or 0.0

        await wait_for(lambda: requeued() >= 1, 10, "a requeue")
        assert (
            registry.get_sample_value("staffetta_router_messages_total", {"result": "routed"}) == 0
        )
        # The queue comes back: the requeued message is routed on its next delivery.
        spec = next(spec for spec in topology.queues() if spec.name == topology.delivery)
        await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        delivery = await collect(amqp, topology.delivery)
        job = decode(DeliveryJob, (await delivery.next()).headers)
        assert (job.queue_id, job.recipients) == ("QIDREQ1", ["bob@local.test"])
        await wait_for(
            lambda: (
                registry.get_sample_value("staffetta_router_messages_total", {"result": "routed"})
                == 1
            ),
            10,
            "the routed counter",
        )
    finally:
        await broker.drain(grace=5)
        await broker.close()
    assert await message_count(amqp, topology.incoming) == 0


async def test_an_edited_aliases_file_applies_without_a_restart(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker, tmp_path: Path
) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("team@local.test: ann@local.test\n")
    service = await started(prefix, aliases)
    try:
        delivery = await collect(amqp, publisher.topology.delivery)
        first = accepted("QIDRELOAD1", "team@local.test")
        await publisher.publish(publisher.topology.incoming, BODY, first, message_id="QIDRELOAD1")
        [before] = await delivery.take(1)
        assert decode(DeliveryJob, before.headers).recipients == ["ann@local.test"]

        aliases.write_text("team@local.test: ann@local.test, bob@remote.test\n")
        # The files are looked at no more than once per CHECK_INTERVAL: let one pass.
        await asyncio.sleep(CHECK_INTERVAL + 0.1)
        second = accepted("QIDRELOAD2", "team@local.test")
        await publisher.publish(publisher.topology.incoming, BODY, second, message_id="QIDRELOAD2")
        after = {
            (job.route, tuple(job.recipients))
            for job in (decode(DeliveryJob, m.headers) for m in await delivery.take(2))
        }
        assert after == {("local", ("ann@local.test",)), ("relay", ("bob@remote.test",))}
    finally:
        await service.stop()
