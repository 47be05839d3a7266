"""Issue 3 behaviours that need the whole pipeline: delay warnings and restarts."""

from __future__ import annotations

import email
import time

from tests.e2e.conftest import LOCAL_DOMAIN, StackFactory
from tests.e2e.mail import build, send
from tests.support.mx_server import MxServers
from tests.support.stack import wait_until

DELIVERED = 'staffetta_delivery_attempts_total{result="delivered",route="relay"} 1.0'


def test_one_delay_warning_then_success_and_no_failure_dsn(
    stack_factory: StackFactory, mx: MxServers
) -> None:
    stack = stack_factory(STAFFETTA_DELAY_WARNING_AFTER="2s")
    mx[0].fail_rcpt("451 4.7.1 greylisted", times=4)
    sender = f"owner@{LOCAL_DOMAIN}"
    send(stack.smtp_port, sender, ["slow@single.test"], build(sender, ["slow@single.test"], "z"))

    [received] = mx[0].wait_for_messages(1, timeout=40)
    assert received.recipients == ["slow@single.test"]
    delivery = stack.service("delivery")
    wait_until(lambda: DELIVERED in delivery.metrics(), 10, "the delivered count")
    wait_until(
        lambda: 'staffetta_bounces_total{kind="delay"} 1.0' in stack.service("bounce").metrics(),
        10,
        "the delay DSN",
    )
    [warning] = stack.wait_for_mail(sender)
    dsn = email.message_from_bytes(warning.read_bytes())
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    recipient = status.get_payload()[1]
    assert recipient["Action"] == "delayed"
    assert recipient["Status"].startswith("4.")
    assert "451 4.7.1" in recipient["Diagnostic-Code"]
    # Four deferrals, one warning, one delivery, and no failure DSN.
    assert 'staffetta_bounces_total{kind="failure"} 0.0' in stack.service("bounce").metrics()
    assert len(stack.maildir_files(sender)) == 1


def test_a_restart_of_every_service_during_a_retry_wait_delivers_later(
    stack_factory: StackFactory, mx: MxServers
) -> None:
    stack = stack_factory(STAFFETTA_RETRY_SCHEDULE="4s")
    mx[0].fail_rcpt("451 4.3.0 try again", times=1)
    send(
        stack.smtp_port,
        "app@client.test",
        ["later@single.test"],
        build("app@client.test", ["later@single.test"], "w"),
    )
    delivery = stack.service("delivery")
    deferred = 'staffetta_delivery_attempts_total{result="deferred",route="relay"} 1.0'
    wait_until(lambda: deferred in delivery.metrics(), 20, "the first deferral")

    codes = stack.stop()
    assert set(codes.values()) == {0}, codes
    # Every service is down: the job can only be waiting in the broker now.
    assert mx[0].messages == []
    all_stopped = time.monotonic()
    stack.start_again()

    [received] = mx[0].wait_for_messages(1, timeout=30)
    assert received.recipients == ["later@single.test"]
    assert received.received_at > all_stopped
