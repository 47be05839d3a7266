"""Relay delivery end to end inside one process: broker, DNS and MX servers all real."""

from __future__ import annotations

import pytest

from tests.integration.delivery.conftest import BODY, HOSTNAME, StartDelivery, wait_for
from tests.support.dns_server import DnsServer
from tests.support.mx_server import MxServers

pytestmark = pytest.mark.broker


async def test_delivers_to_the_primary_mx(start_delivery: StartDelivery, mx: MxServers) -> None:
    delivery = await start_delivery()
    job = delivery.job(["a@example.test", "b@example.test"])
    await delivery.submit(job)
    received = await mx[0].messages_received(1)
    assert received[0].sender == "s@src.test"
    assert received[0].recipients == ["a@example.test", "b@example.test"]
    assert received[0].data == BODY
    assert received[0].helo == HOSTNAME
    assert mx[1].messages == []
    await delivery.wait_metric(
        "staffetta_delivery_attempts_total",
        2,
        5,
        "the delivered metric",
        route="relay",
        result="delivered",
    )
    assert delivery.metric("staffetta_delivery_duration_seconds_count", route="relay") == 1


@pytest.mark.parametrize("trouble", ["refused", "greeting_421", "greeting_554"])
async def test_backup_mx_when_the_primary_is_unavailable(
    start_delivery: StartDelivery, mx: MxServers, trouble: str
) -> None:
    if trouble == "refused":
        mx[0].refuse()
    elif trouble == "greeting_421":
        mx[0].greet_421()
    else:
        mx[0].greet_421(reply="554 5.3.2 no SMTP service here")
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@example.test"]))
    received = await mx[1].messages_received(1)
    assert received[0].recipients == ["a@example.test"]
    assert mx[0].messages == []
    if trouble == "greeting_421":
        assert mx[0].greetings_421 == 1
    assert delivery.bounces.empty()


async def test_temporary_failures_go_through_the_retry_queue(
    start_delivery: StartDelivery, dns_server: DnsServer, mx: MxServers
) -> None:
    dns_server.remove("example.test")
    dns_server.add_mx("example.test", [(10, "mx1.example.test")])
    mx[0].fail_rcpt("451 4.7.1 greylisted, try again", times=2)
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@example.test"]))
    received = await mx[0].messages_received(1, within=20)
    assert received[0].recipients == ["a@example.test"]
    assert [phase for phase, _, _ in mx[0].rejections] == ["rcpt", "rcpt"]
    assert delivery.metric("staffetta_delivery_retries_total", attempt="1") == 1
    assert delivery.metric("staffetta_delivery_retries_total", attempt="2") == 1
    await delivery.wait_metric(
        "staffetta_delivery_attempts_total",
        2,
        5,
        "two deferrals counted",
        route="relay",
        result="deferred",
    )
    assert delivery.bounces.empty()


async def test_permanent_failure_becomes_a_bounce_job(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    mx[0].reply_rcpt("nobody@example.test", "550 5.1.1 <nobody@example.test>: no such user")
    delivery = await start_delivery()
    job = delivery.job(["a@example.test", "nobody@example.test"])
    await delivery.submit(job)
    bounce, body = await delivery.next_bounce()
    assert bounce.kind == "failure"
    assert bounce.queue_id == job.queue_id
    assert bounce.sender == "s@src.test"
    assert body == BODY
    [result] = bounce.results
    assert result.recipient == "nobody@example.test"
    assert (result.action, result.status) == ("failed", "5.1.1")
    assert result.diagnostic == "550 5.1.1 <nobody@example.test>: no such user"
    assert result.remote_mta == "mx1.example.test[127.0.0.2]"
    assert (await mx[0].messages_received(1))[0].recipients == ["a@example.test"]
    assert mx[1].connections == 0


async def test_partial_results_deliver_bounce_and_retry(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    mx[0].reply_rcpt("gone@example.test", "550 5.1.1 gone")
    mx[0].fail_rcpt("452 4.2.2 mailbox full", recipient="full@example.test", times=1)
    delivery = await start_delivery()
    recipients = ["a@example.test", "gone@example.test", "full@example.test"]
    await delivery.submit(delivery.job(recipients))
    bounce, _ = await delivery.next_bounce()
    assert [(r.recipient, r.status) for r in bounce.results] == [("gone@example.test", "5.1.1")]
    received = await mx[0].messages_received(2, within=20)
    assert [m.recipients for m in received] == [["a@example.test"], ["full@example.test"]]
    assert mx[1].messages == []  # a per-recipient 4xx is not a reason to use the backup


async def test_null_mx_bounces_without_connecting(
    start_delivery: StartDelivery, dns_server: DnsServer, mx: MxServers
) -> None:
    dns_server.add_null_mx("nomail.test")
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@nomail.test"], domain="nomail.test"))
    bounce, _ = await delivery.next_bounce()
    assert [(r.recipient, r.status, r.action) for r in bounce.results] == [
        ("a@nomail.test", "5.1.10", "failed")
    ]
    assert mx.connections == 0


async def test_nxdomain_bounces_with_5_1_2(
    start_delivery: StartDelivery, dns_server: DnsServer, mx: MxServers
) -> None:
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@nowhere.test"], domain="nowhere.test"))
    bounce, _ = await delivery.next_bounce()
    assert [r.status for r in bounce.results] == ["5.1.2"]
    assert dns_server.queries_for("nowhere.test")
    assert mx.connections == 0


async def test_dns_failure_is_temporary(
    start_delivery: StartDelivery, dns_server: DnsServer, mx: MxServers
) -> None:
    dns_server.servfail("example.test")
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@example.test"]))
    await wait_for(lambda: bool(dns_server.queries_for("example.test")), 10, "the MX query")
    dns_server.servfail("example.test", enabled=False)
    received = await mx[0].messages_received(1, within=20)
    assert received[0].recipients == ["a@example.test"]
    assert delivery.metric("staffetta_delivery_retries_total", attempt="1") == 1
    assert delivery.bounces.empty()


async def test_lifetime_expiry_and_one_delay_warning(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    for server in mx.servers:
        server.fail_rcpt("451 4.3.0 try later", times=None)
    delivery = await start_delivery(MAX_QUEUE_LIFETIME="3s", DELAY_WARNING_AFTER="1s")
    job = delivery.job(["a@example.test"])
    await delivery.submit(job)
    delay, _ = await delivery.next_bounce(15)
    assert delay.kind == "delay"
    assert [(r.action, r.status) for r in delay.results] == [("delayed", "4.3.0")]
    failure, _ = await delivery.next_bounce(15)
    assert failure.kind == "failure"
    [result] = failure.results
    assert (result.action, result.status) == ("failed", "4.4.7")
    assert result.diagnostic == "451 4.3.0 try later"
    assert delivery.bounces.empty()
    assert mx.messages == []
    assert delivery.metric("staffetta_delivery_expired_recipients_total") == 1


async def test_mail_loops_fail_with_5_4_6(
    start_delivery: StartDelivery, dns_server: DnsServer, mx: MxServers
) -> None:
    dns_server.add_mx("loop.test", [(10, HOSTNAME)])
    dns_server.add_a(HOSTNAME, "127.0.0.2")
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@loop.test"], domain="loop.test"))
    bounce, _ = await delivery.next_bounce()
    assert [r.status for r in bounce.results] == ["5.4.6"]
    await delivery.submit(delivery.job(["a@example.test"], received_headers=51))
    bounce, _ = await delivery.next_bounce()
    assert [r.status for r in bounce.results] == ["5.4.6"]
    assert mx.connections == 0


async def test_null_sender_is_relayed_and_its_failures_are_not_bounced(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    mx[0].reply_rcpt("nobody@example.test", "550 5.1.1 no such user")
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["someone@example.test"], sender=""))
    [received] = await mx[0].messages_received(1)
    assert (received.sender, received.recipients) == ("", ["someone@example.test"])
    await delivery.submit(delivery.job(["nobody@example.test"], sender=""))
    await delivery.wait_metric(
        "staffetta_delivery_attempts_total", 1, 10, "the failure", route="relay", result="failed"
    )
    assert delivery.bounces.empty()


@pytest.mark.parametrize("smtputf8", [True, False])
async def test_internationalised_addresses_need_smtputf8(
    start_delivery: StartDelivery, smtputf8: bool
) -> None:
    with MxServers(count=1, smtputf8=smtputf8) as fleet:
        delivery = await start_delivery(REMOTE_SMTP_PORT=str(fleet.port))
        await delivery.submit(delivery.job(["jürgen@example.test"], sender="ça@src.test"))
        if smtputf8:
            [received] = await fleet[0].messages_received(1)
            assert (received.sender, received.recipients) == (
                "ça@src.test",
                ["jürgen@example.test"],
            )
            assert "SMTPUTF8" in received.mail_options
        else:
            bounce, _ = await delivery.next_bounce()
            assert [(r.status, r.diagnostic) for r in bounce.results] == [("5.6.7", "")]
            assert fleet[0].messages == []


async def test_recipients_past_the_servers_limit_go_in_another_transaction(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    mx[0].max_recipients = 2
    delivery = await start_delivery()
    recipients = [f"r{index}@example.test" for index in range(5)]
    await delivery.submit(delivery.job(recipients))
    received = await mx[0].messages_received(3)
    assert [m.recipients for m in received] == [recipients[:2], recipients[2:4], recipients[4:]]
    assert mx[0].connections == 1
    assert mx[1].messages == []
    await delivery.wait_metric(
        "staffetta_delivery_attempts_total",
        5,
        5,
        "five delivered",
        route="relay",
        result="delivered",
    )
    assert delivery.metric("staffetta_delivery_retries_total", attempt="1") == 0


async def test_address_literal_is_delivered_without_dns(
    start_delivery: StartDelivery, dns_server: DnsServer, mx: MxServers
) -> None:
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["postmaster@[127.0.0.3]"], domain="[127.0.0.3]"))
    [received] = await mx[1].messages_received(1)
    assert received.recipients == ["postmaster@[127.0.0.3]"]
    assert dns_server.queries == []


async def test_domain_without_mx_uses_its_address(
    start_delivery: StartDelivery, dns_server: DnsServer, mx: MxServers
) -> None:
    dns_server.add_a("plain.test", "127.0.0.3")
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@plain.test"], domain="plain.test"))
    [received] = await mx[1].messages_received(1)
    assert received.recipients == ["a@plain.test"]
    assert [q.rdtype for q in dns_server.queries_for("plain.test")][:1] == ["MX"]


@pytest.mark.parametrize("phase", ["mail", "data"])
async def test_temporary_failure_of_the_whole_transaction_tries_the_backup(
    start_delivery: StartDelivery, mx: MxServers, phase: str
) -> None:
    if phase == "mail":
        mx[0].fail_mail("452 4.3.1 insufficient system storage")
    else:
        mx[0].fail_data("451 4.3.0 local error in processing")
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@example.test"]))
    [received] = await mx[1].messages_received(1)
    assert received.recipients == ["a@example.test"]
    assert mx[0].messages == []
    assert [p for p, _, _ in mx[0].rejections] == [phase]
