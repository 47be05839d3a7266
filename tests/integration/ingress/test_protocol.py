"""SMTP protocol edges: end of data, early talkers, session limits, timeouts, SIGTERM."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import generate_latest

from services.common.settings import load_settings
from tests.integration.ingress.conftest import Incoming, StartIngress, until
from tests.integration.ingress.rawsmtp import RawSMTP, open_data, transaction

SMUGGLED = (
    b"MAIL FROM:<evil@attacker.test>\r\n"
    b"RCPT TO:<victim@local.test>\r\n"
    b"DATA\r\n"
    b"Subject: smuggled\r\n"
    b"\r\n"
    b"second message\r\n"
)


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r"])
async def test_only_crlf_dot_crlf_ends_data(
    start_ingress: StartIngress, incoming: Incoming, fake_end: bytes
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
    await open_data(client)
    await client.send(
        b"Subject: first\r\n\r\nfirst message" + fake_end + SMUGGLED + b".\r\nQUIT\r\n"
    )
    assert (await client.reply()).startswith("250 2.0.0 Ok: queued as ")
    assert (await client.reply()).startswith("221 ")
    await client.close()

    queued = await incoming.get()
    assert queued.envelope.sender == "a@s.test"
    assert queued.envelope.recipients == ["b@local.test"]
    assert b"Subject: smuggled" in queued.body
    # Line ends were normalised: no bare CR or LF reaches the queue.
    assert queued.body.count(b"\n") == queued.body.count(b"\r\n")
    assert queued.body.count(b"\r") == queued.body.count(b"\r\n")
    assert await incoming.count() == 0
    assert ingress.metric("staffetta_ingress_messages_total", result="accepted") == 1


async def test_early_talker_is_refused(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(greet_pause="300ms")
    impatient = await RawSMTP.connect(ingress.smtp_port)
    await impatient.send(b"EHLO hasty.test\r\n")
    assert (await impatient.reply()).startswith("554 5.5.0 ")
    assert await impatient.closed()
    await impatient.close()

    polite = await RawSMTP.connect(ingress.smtp_port)
    assert (await polite.reply()).startswith("220 mx.staffetta.test ")
    assert (await polite.command("EHLO polite.test")).startswith("250-")
    await polite.close()
    samples = ingress.metric("staffetta_ingress_refused_sessions_total", reason="early_talker")
    assert samples == 1


async def test_sessions_per_address_and_in_total(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(max_sessions="2", max_sessions_per_ip="1")
    first = await RawSMTP.connect(ingress.smtp_port)
    assert (await first.reply()).startswith("220 ")
    second = await RawSMTP.connect(ingress.smtp_port)
    assert (await second.reply()).startswith("421 4.7.0 ")
    assert await second.closed()
    await second.close()
    other = await RawSMTP.connect(ingress.smtp_port, source="127.0.0.2")
    assert (await other.reply()).startswith("220 ")
    third = await RawSMTP.connect(ingress.smtp_port, source="127.0.0.3")
    assert (await third.reply()).startswith("421 4.7.0 ")
    await third.close()

    assert (await first.command("QUIT")).startswith("221")
    await first.close()
    deadline = time.monotonic() + 5
    while True:  # the slot frees once the server has seen the close
        again = await RawSMTP.connect(ingress.smtp_port)
        greeting = await again.reply()
        await again.close()
        if greeting.startswith("220 ") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert greeting.startswith("220 ")
    await other.close()
    assert (
        ingress.metric("staffetta_ingress_refused_sessions_total", reason="too_many_sessions") >= 2
    )


async def test_idle_sessions_time_out(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(smtp_idle_timeout="1s")
    client = await RawSMTP.connect(ingress.smtp_port)
    await client.reply()
    started = time.monotonic()
    assert (await client.reply(within=10)).startswith("421 4.4.2 ")
    assert await client.closed(within=10)
    assert 0.9 < time.monotonic() - started < 5
    await client.close()


async def test_idle_timeout_mid_transaction_queues_nothing(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress(smtp_idle_timeout="1s")
    client = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
    await open_data(client)
    await client.send(b"Subject: abandoned\r\n\r\nno end of data")
    assert (await client.reply(within=10)).startswith("421 4.4.2 ")
    assert await client.closed(within=10)
    await client.close()
    assert await until(
        lambda: ingress.metric("staffetta_ingress_messages_total", result="rejected") == 1
    )
    assert await incoming.count() == 0


def test_the_idle_timeout_defaults_to_rfc_5321_five_minutes() -> None:
    # RFC 5321 4.5.3.2.7: a server SHOULD wait at least 5 minutes for the next command.
    assert load_settings({}).smtp_idle_timeout == 300.0
    assert load_settings({"STAFFETTA_SMTP_IDLE_TIMEOUT": "10m"}).smtp_idle_timeout == 600.0


async def test_a_slow_but_steady_data_transfer_is_not_idle(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress(smtp_idle_timeout="1s")
    client = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
    await open_data(client)
    await client.send(b"Subject: slow\r\n\r\n")
    for number in range(5):  # 2 s in all, never 1 s of silence
        await asyncio.sleep(0.4)
        await client.send(f"line {number}\r\n".encode())
    await client.send(b".\r\n")
    assert (await client.reply()).startswith("250 2.0.0 ")
    await client.close()
    assert (await incoming.get()).body.endswith(b"line 4\r\n")


async def test_stop_lets_the_open_transaction_finish(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    idle = await RawSMTP.connect(ingress.smtp_port)
    await idle.reply()
    busy = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
    await open_data(busy)
    await busy.send(b"Subject: in flight\r\n\r\n")

    stopping = asyncio.create_task(ingress.service.stop())
    assert await until(lambda: not ingress.service.is_ready())
    with pytest.raises(OSError):
        await RawSMTP.connect(ingress.smtp_port)
    assert not stopping.done()

    await busy.send(b"last line\r\n.\r\n")
    assert (await busy.reply()).startswith("250 2.0.0 Ok: queued as ")
    await asyncio.wait_for(stopping, 10)
    assert (await idle.reply()).startswith("421 4.3.2 ")
    await idle.close()
    await busy.close()
    assert (await incoming.get()).body.endswith(b"Subject: in flight\r\n\r\nlast line\r\n")


async def test_metrics_families_are_exported(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
    await transaction(client, "a@s.test", ["x@nowhere.test"], b"S: x\r\n\r\n")
    await client.close()
    text = generate_latest(ingress.service.registry).decode()
    for line in (
        'staffetta_ingress_messages_total{result="accepted"} 1.0',
        'staffetta_ingress_messages_total{result="rejected"} 0.0',
        'staffetta_ingress_sessions_total{port="smtp"} 1.0',
        'staffetta_ingress_sessions_total{port="submissions"} 0.0',
        "staffetta_ingress_publish_confirm_seconds_count 1.0",
    ):
        assert line in text
    await incoming.get()
