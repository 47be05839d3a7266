"""Issue 2's list, end to end: real processes, RabbitMQ, DNS and SMTP on loopback."""

from __future__ import annotations

import email
import re
import time
from email.message import Message

from tests.e2e.conftest import LOCAL_DOMAIN, StackFactory
from tests.e2e.mail import build, send, subject_of
from tests.support.mx_server import MxServers
from tests.support.stack import Stack, wait_until

QUEUED = re.compile(r"^2\.0\.0 Ok: queued as (\S+)$")


def _crlf_to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def test_local_delivery_lands_as_one_maildir_file_with_our_received_header(stack: Stack) -> None:
    data = build("sender@client.test", [f"Alice@{LOCAL_DOMAIN}"], "local one")
    reply = send(stack.smtp_port, "sender@client.test", [f"Alice@{LOCAL_DOMAIN}"], data)
    queue_id = QUEUED.match(reply)
    assert queue_id, reply

    files = stack.wait_for_mail(f"alice@{LOCAL_DOMAIN}")
    assert len(files) == 1
    stored = files[0].read_bytes()
    first_line, _, _ = stored.partition(b"\n")
    assert first_line.startswith(b"Received: from ")
    assert b"by staffetta.test" in stored.split(b"\n\n", 1)[0]
    assert queue_id.group(1).encode() in stored.split(b"\n\n", 1)[0]
    # Our header is prepended; everything the client sent follows byte for byte.
    assert stored.endswith(_crlf_to_lf(data))
    assert b"\r\n" not in stored


def test_relay_reaches_the_primary_mx_and_a_mixed_message_reaches_all(
    stack: Stack, mx: MxServers
) -> None:
    data = build("app@client.test", ["bob@remote1.test"], "relay one")
    send(stack.smtp_port, "app@client.test", ["bob@remote1.test"], data)
    [received] = mx[0].wait_for_messages(1, timeout=30)
    assert received.recipients == ["bob@remote1.test"]
    assert received.sender == "app@client.test"
    assert b"by staffetta.test" in received.data.split(b"\r\n\r\n", 1)[0]
    assert received.data.endswith(data)

    recipients = [f"carol@{LOCAL_DOMAIN}", "dave@remote1.test", "erin@remote2.test"]
    mixed = build("app@client.test", recipients, "mixed")
    send(stack.smtp_port, "app@client.test", recipients, mixed)
    stack.wait_for_mail(f"carol@{LOCAL_DOMAIN}")
    primary = mx[0].wait_for_messages(2, timeout=30)
    other = mx[2].wait_for_messages(1, timeout=30)
    assert primary[1].recipients == ["dave@remote1.test"]
    assert other[0].recipients == ["erin@remote2.test"]
    assert mx[1].messages == []  # the backup was never needed


def test_messages_over_a_mib_are_relayed_byte_for_byte(stack: Stack, mx: MxServers) -> None:
    """Past 1 MiB the ingress publishes its Received: line and the message as two
    pieces, every hop writes the frames unjoined, and delivery sends a wire-ready
    body as it is; a body with dot lines still goes through dot-stuffing."""
    line = b"0123456789" * 7 + b"\r\n"
    plain = b"Subject: big plain\r\n\r\n" + line * 40_000  # about 2.8 MiB
    dotted = b"Subject: big dotted\r\n\r\n" + (line + b".leading dot\r\n") * 20_000
    for data in (plain, dotted):
        send(stack.smtp_port, "app@client.test", ["bob@remote1.test"], data)
    received = mx[0].wait_for_messages(2, timeout=60)
    by_subject = {subject_of(message.data): message.data for message in received}
    assert by_subject["big plain"].endswith(plain)
    assert by_subject["big dotted"].endswith(dotted)


def test_temporary_failures_are_retried_through_the_retry_queue(
    stack: Stack, mx: MxServers
) -> None:
    mx[0].fail_rcpt("451 4.7.1 greylisted, try again later", times=2)
    started = time.monotonic()
    data = build("app@client.test", ["frank@single.test"], "greylisted")
    send(stack.smtp_port, "app@client.test", ["frank@single.test"], data)
    [received] = mx[0].wait_for_messages(1, timeout=30)
    elapsed = time.monotonic() - started
    assert received.recipients == ["frank@single.test"]
    assert len([r for r in mx[0].rejections if r[0] == "rcpt"]) == 2
    # Two waits of the 1 s schedule step happened in between.
    assert elapsed >= 2.0
    delivery = stack.service("delivery")
    delivered = 'staffetta_delivery_attempts_total{result="delivered",route="relay"} 1.0'
    wait_until(lambda: delivered in delivery.metrics(), 10, "the delivered count")
    assert 'staffetta_delivery_attempts_total{result="deferred",route="relay"} 2.0' in (
        delivery.metrics()
    )


def _dsn_parts(message: Message) -> tuple[Message, list[Message]]:
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    parts = message.get_payload()
    assert isinstance(parts, list)
    status = next(p for p in parts if p.get_content_type() == "message/delivery-status")
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return blocks[0], blocks[1:]


def test_permanent_failure_returns_a_dsn_to_the_sender_and_never_bounces_a_bounce(
    stack: Stack, mx: MxServers
) -> None:
    mx[0].reply_rcpt("gone@single.test", "550 5.1.1 <gone@single.test>: no such user")
    # First the null sender: its failure must be dropped, not bounced.
    send(stack.smtp_port, "", ["gone@single.test"], build("", ["gone@single.test"], "no bounce"))
    delivery, bounce = stack.service("delivery"), stack.service("bounce")
    failed = 'staffetta_delivery_attempts_total{result="failed",route="relay"}'
    wait_until(lambda: f"{failed} 1.0" in delivery.metrics(), 30, "the first failure")

    sender = f"owner@{LOCAL_DOMAIN}"
    send(stack.smtp_port, sender, ["gone@single.test"], build(sender, ["gone@single.test"], "x"))
    [dsn_file] = stack.wait_for_mail(sender)
    dsn = email.message_from_bytes(dsn_file.read_bytes())
    assert dsn["From"].lower().startswith("mailer-daemon@")
    per_message, per_recipient = _dsn_parts(dsn)
    assert per_message["Reporting-MTA"] == "dns; staffetta.test"
    assert per_message["Arrival-Date"]
    [recipient] = per_recipient
    assert recipient["Final-Recipient"] == "rfc822; gone@single.test"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert "550 5.1.1" in recipient["Diagnostic-Code"]
    assert recipient["Diagnostic-Code"].startswith("smtp;")
    assert 'staffetta_bounces_total{kind="failure"} 1.0' in bounce.metrics()
    assert f"{failed} 2.0" in delivery.metrics()
    # Only the one DSN: the null-sender failure produced nothing.
    assert len(stack.maildir_files(sender)) == 1


def test_a_recipient_deferred_past_the_lifetime_is_bounced(
    stack_factory: StackFactory, mx: MxServers
) -> None:
    stack = stack_factory(STAFFETTA_MAX_QUEUE_LIFETIME="3s")
    mx[0].fail_rcpt("452 4.2.2 mailbox full", times=None)
    sender = f"owner@{LOCAL_DOMAIN}"
    send(stack.smtp_port, sender, ["full@single.test"], build(sender, ["full@single.test"], "y"))
    [dsn_file] = stack.wait_for_mail(sender, timeout=40)
    _, [recipient] = _dsn_parts(email.message_from_bytes(dsn_file.read_bytes()))
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "4.4.7"
    assert "452 4.2.2" in recipient["Diagnostic-Code"]
    assert mx[0].messages == []
