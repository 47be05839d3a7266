"""With the broker down the ingress keeps listening and never says 250."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from tests.integration.ingress.conftest import (
    Incoming,
    Running,
    StartIngress,
    until,
    wait_ready,
)
from tests.integration.ingress.rawsmtp import RawSMTP, transaction
from tests.support.amqp import AMQP_URL
from tests.support.stack import free_port
from tests.support.tcpproxy import TcpProxy


@contextlib.asynccontextmanager
async def behind_a_proxy(
    start_ingress: StartIngress,
) -> AsyncIterator[tuple[TcpProxy, Running, RawSMTP]]:
    """An ingress reaching RabbitMQ through a proxy the test can close, and a client
    greeted with 220 that has said EHLO."""
    proxy = await TcpProxy(5672).start()
    try:
        ingress = await start_ingress(amqp_url=AMQP_URL.replace(":5672/", f":{proxy.port}/"))
        client = await RawSMTP.connect(ingress.smtp_port)
        assert (await client.reply()).startswith("220 ")
        await client.command("EHLO c.test")
        yield proxy, ingress, client
    finally:
        await proxy.close()


async def test_421_at_connect_while_the_broker_is_unreachable_then_recovers(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    port = free_port()  # nothing listens here until the proxy starts
    ingress = await start_ingress(ready=False, amqp_url=AMQP_URL.replace(":5672/", f":{port}/"))
    assert not ingress.service.is_ready()
    client = await RawSMTP.connect(ingress.smtp_port)
    greeting = await client.reply()
    assert greeting.startswith("421 4.3.0 "), greeting
    assert await client.closed()
    await client.close()

    proxy = await TcpProxy(5672, port).start()
    try:
        await wait_ready(ingress.service)
        client = await RawSMTP.connect(ingress.smtp_port)
        assert (await client.reply()).startswith("220 ")
        await client.command("EHLO c.test")
        answers = await transaction(client, "a@s.test", ["b@local.test"], b"Subject: x\r\n\r\n")
        assert answers[-1].startswith("250 2.0.0 Ok: queued as "), answers
        await client.close()
        assert (await incoming.get()).envelope.recipients == ["b@local.test"]
    finally:
        await proxy.close()


async def test_451_when_the_broker_goes_away_during_the_transaction(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    async with behind_a_proxy(start_ingress) as (proxy, ingress, client):
        assert (await client.command("MAIL FROM:<a@s.test>")).startswith("250")
        assert (await client.command("RCPT TO:<b@local.test>")).startswith("250")
        await proxy.close()
        assert await until(lambda: not ingress.service.is_ready())
        assert (await client.command("DATA")).startswith("354")
        await client.send(b"Subject: lost\r\n\r\nbody\r\n.\r\n")
        reply = await client.reply()
        assert reply.startswith("451 4.3.0 "), reply
        await client.close()
        assert await incoming.count() == 0
        assert ingress.metric("staffetta_ingress_messages_total", result="rejected") == 1
        assert ingress.metric("staffetta_ingress_messages_total", result="accepted") == 0


async def test_451_at_mail_while_the_broker_is_gone(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    async with behind_a_proxy(start_ingress) as (proxy, ingress, client):
        await proxy.close()
        assert await until(lambda: not ingress.service.is_ready())
        assert (await client.command("MAIL FROM:<a@s.test>")).startswith("451 4.3.0 ")
        await client.close()
        assert await incoming.count() == 0
