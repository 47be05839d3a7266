"""The bounce service against the real RabbitMQ: PREFIX.bounce in, DSNs to PREFIX.incoming."""

from __future__ import annotations

import email
import email.utils
import time
from email.message import Message

from aio_pika.abc import AbstractRobustConnection
from flufl.bounce import all_failures

from services.bounce.service import BounceService, build
from services.common.amqp import Broker
from services.common.envelope import (
    AcceptedMessage,
    BounceJob,
    BounceKind,
    RecipientResult,
    decode,
)
from tests.integration.bounce.conftest import service_settings
from tests.support.amqp import collect, message_count, wait_for
from tests.support.services import running, sample

ORIGINAL = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: the plan\r\n"
    b"Message-ID: <plan-1@example.org>\r\n"
    b"\r\n"
    b"Confidential body.\r\n"
)
ACCEPTED_AT = 1_790_000_000.0


async def started(prefix: str) -> BounceService:
    return await running(build(service_settings(prefix)), "bounce service ready")


def job(kind: BounceKind = "failure", sender: str = "alice@example.org") -> BounceJob:
    if kind == "delay":
        results = [
            RecipientResult(recipient="bob@remote.test", action="delayed", status="4.4.1"),
            RecipientResult(recipient="carol@remote.test", action="delayed", status="4.4.1"),
        ]
    else:
        results = [
            RecipientResult(
                recipient="bob@remote.test",
                action="failed",
                status="5.1.1",
                diagnostic="550 5.1.1 <bob@remote.test>: no such user",
                remote_mta="mx.remote.test",
            ),
            RecipientResult(
                recipient="carol@remote.test",
                action="failed",
                status="5.2.2",
                diagnostic="552 5.2.2 mailbox full",
                remote_mta="mx.remote.test",
            ),
        ]
    return BounceJob(
        queue_id="QIDORIG1", sender=sender, accepted_at=ACCEPTED_AT, kind=kind, results=results
    )


def status_blocks(dsn: Message) -> list[Message]:
    part = dsn.get_payload(1)
    assert isinstance(part, Message)
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return [block for block in blocks if isinstance(block, Message)]


async def test_failure_becomes_one_dsn_to_the_original_sender(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker
) -> None:
    service = await started(prefix)
    try:
        incoming = await collect(amqp, publisher.topology.incoming)
        before = time.time()
        await publisher.publish(publisher.topology.bounce, ORIGINAL, job(), message_id="QIDORIG1")

        received = await incoming.next()
        notice = decode(AcceptedMessage, received.headers)
        assert notice.sender == ""
        assert notice.recipients == ["alice@example.org"]
        assert notice.queue_id != "QIDORIG1"
        assert received.message_id == notice.queue_id
        assert before - 1 <= notice.accepted_at <= time.time() + 1
        assert notice.received_headers == 1

        dsn = email.message_from_bytes(received.body)
        assert dsn.get_content_type() == "multipart/report"
        assert email.utils.parseaddr(dsn["To"])[1] == "alice@example.org"
        assert dsn["From"].startswith("MAILER-DAEMON@mx.staffetta.test")
        assert notice.queue_id in dsn["Message-ID"]
        [per_message, bob, carol] = status_blocks(dsn)
        assert per_message["Reporting-MTA"] == "dns; mx.staffetta.test"
        assert per_message["X-Staffetta-Queue-ID"] == "QIDORIG1"
        assert (bob["Final-Recipient"], bob["Action"], bob["Status"]) == (
            "rfc822; bob@remote.test",
            "failed",
            "5.1.1",
        )
        assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: no such user"
        assert carol["Status"] == "5.2.2"
        temporary, permanent = all_failures(dsn)
        assert (set(temporary), set(permanent)) == (
            set(),
            {b"bob@remote.test", b"carol@remote.test"},
        )
        headers = dsn.get_payload(2)
        assert isinstance(headers, Message)
        assert "Subject: the plan" in str(headers.get_payload())
        assert b"Confidential body" not in received.body

        await wait_for(
            lambda: sample(service, "staffetta_bounces_total", kind="failure") == 1,
            10,
            "the bounce counter",
        )
        assert sample(service, "staffetta_bounce_recipients_total", kind="failure") == 2
    finally:
        await service.stop()
    assert await message_count(amqp, publisher.topology.bounce) == 0


async def test_delay_warning_dsn(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker
) -> None:
    service = await started(prefix)
    try:
        incoming = await collect(amqp, publisher.topology.incoming)
        await publisher.publish(
            publisher.topology.bounce, ORIGINAL, job("delay"), message_id="QIDORIG1"
        )
        dsn = email.message_from_bytes((await incoming.next()).body)
        assert dsn["Subject"] == "Delayed Mail (still being retried)"
        blocks = status_blocks(dsn)[1:]
        assert [b["Action"] for b in blocks] == ["delayed", "delayed"]
        until = email.utils.parsedate_to_datetime(blocks[0]["Will-Retry-Until"])
        assert until.timestamp() == ACCEPTED_AT + 5 * 86400
        temporary, permanent = all_failures(dsn)
        assert (set(temporary), set(permanent)) == (
            {b"bob@remote.test", b"carol@remote.test"},
            set(),
        )
        await wait_for(
            lambda: sample(service, "staffetta_bounces_total", kind="delay") == 1,
            10,
            "the delay counter",
        )
    finally:
        await service.stop()


async def test_null_sender_is_never_bounced(
    prefix: str, amqp: AbstractRobustConnection, publisher: Broker
) -> None:
    service = await started(prefix)
    try:
        await publisher.publish(
            publisher.topology.bounce, ORIGINAL, job(sender=""), message_id="QIDORIG1"
        )
        await wait_for(
            lambda: sample(service, "staffetta_bounces_dropped_total") == 1,
            10,
            "the dropped counter",
        )
        # Then a real one, which must be the only DSN on the incoming queue.
        await publisher.publish(publisher.topology.bounce, ORIGINAL, job(), message_id="QIDORIG2")
        await wait_for(
            lambda: sample(service, "staffetta_bounces_total", kind="failure") == 1,
            10,
            "the real DSN",
        )
        assert sample(service, "staffetta_bounces_total", kind="delay") == 0
    finally:
        await service.stop()
    assert await message_count(amqp, publisher.topology.incoming) == 1
    assert await message_count(amqp, publisher.topology.bounce) == 0
