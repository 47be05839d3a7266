"""A DSN re-enters through the front door: bounce -> PREFIX.incoming -> router -> delivery."""

from __future__ import annotations

import email
import email.utils

from aio_pika.abc import AbstractRobustConnection
from flufl.bounce import all_failures

from services.bounce import service as bounce_service
from services.common.amqp import Broker
from services.common.envelope import BounceJob, DeliveryJob, RecipientResult, decode
from services.router import service as router_service
from tests.integration.bounce.conftest import service_settings
from tests.support.amqp import collect, wait_for

ORIGINAL = b"From: alice@example.org\r\nTo: bob@remote.test\r\nSubject: hi\r\n\r\nbody\r\n"


async def test_dsn_is_routed_to_the_original_sender_from_the_null_sender(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker
) -> None:
    settings = service_settings(prefix, local_domains="example.org")
    bouncer = bounce_service.build(settings)
    router = router_service.build(settings)
    await bouncer.start()
    await router.start()
    try:
        await wait_for(lambda: bouncer.is_ready() and router.is_ready(), 15, "both services")
        delivery = await collect(amqp, publisher.topology.delivery)
        failed = BounceJob(
            queue_id="QIDRT1",
            sender="alice@example.org",
            accepted_at=1_790_000_000.0,
            kind="failure",
            results=[
                RecipientResult(
                    recipient="bob@remote.test",
                    action="failed",
                    status="5.1.1",
                    diagnostic="550 5.1.1 no such user",
                    remote_mta="mx.remote.test",
                )
            ],
        )
        await publisher.publish(publisher.topology.bounce, ORIGINAL, failed, message_id="QIDRT1")

        routed = await delivery.next()
        job = decode(DeliveryJob, routed.headers)
        assert (job.route, job.domain, job.sender, job.recipients) == (
            "local",
            "",
            "",
            ["alice@example.org"],
        )
        assert job.queue_id != "QIDRT1"
        dsn = email.message_from_bytes(routed.body)
        assert email.utils.parseaddr(dsn["To"])[1] == "alice@example.org"
        assert all_failures(dsn)[1] == {b"bob@remote.test"}
        assert "mx.staffetta.test" in dsn["Received"]
    finally:
        await router.stop()
        await bouncer.stop()


async def test_every_contract_series_is_exported_from_the_start(prefix: str) -> None:
    settings = service_settings(prefix)
    bouncer = bounce_service.build(settings)
    router = router_service.build(settings)
    for kind in ("failure", "delay"):
        assert bouncer.registry.get_sample_value("staffetta_bounces_total", {"kind": kind}) == 0
    for route in ("local", "relay"):
        value = router.registry.get_sample_value(
            "staffetta_router_recipients_total", {"route": route}
        )
        assert value == 0
    assert not bouncer.is_ready()
    assert not router.is_ready()
