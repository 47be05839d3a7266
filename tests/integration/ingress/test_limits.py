"""RFC 5321 line limits, bad bytes, per-account sending limits, PROXY protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest

from tests.integration.ingress.conftest import Incoming, Running, StartIngress, htpasswd_line
from tests.integration.ingress.rawsmtp import RawSMTP, plain, transaction
from tests.support.stack import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


async def greeted(ingress: Running) -> RawSMTP:
    client = await RawSMTP.connect(ingress.smtp_port)
    assert (await client.reply()).startswith("220 ")
    assert (await client.command("EHLO c.test")).startswith("250")
    return client


async def test_command_and_text_line_limits(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await greeted(ingress)
    assert (await client.command("NOOP " + "x" * 600)).startswith("500 5.5.2 ")
    assert (await client.command("NOOP " + "x" * 5000)).startswith("500 5.5.2 ")
    long_line = b"Subject: long\r\n\r\n" + b"y" * 1001 + b"\r\n"
    answers = await transaction(client, "a@s.test", ["b@local.test"], long_line)
    assert answers[-1].startswith("500 5.5.2 "), answers
    just_fits = b"Subject: fits\r\n\r\n" + b"z" * 998 + b"\r\n"
    answers = await transaction(client, "a@s.test", ["b@local.test"], just_fits)
    assert answers[-1].startswith("250 2.0.0 "), answers
    await client.close()
    assert (await incoming.get()).body.endswith(b"z" * 998 + b"\r\n")
    assert await incoming.count() == 0


async def test_local_part_and_domain_length_limits(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await greeted(ingress)
    assert (await client.command(f"MAIL FROM:<{'a' * 65}@s.test>")).startswith("553 5.1.7 ")
    long_domain = ".".join(["d" * 63] * 4) + ".test"  # 260 octets
    assert (await client.command(f"MAIL FROM:<a@{long_domain}>")).startswith("553 5.1.7 ")
    assert (await client.command(f"MAIL FROM:<{'a' * 64}@s.test>")).startswith("250 ")
    assert (await client.command(f"RCPT TO:<{'b' * 65}@local.test>")).startswith("553 5.1.3 ")
    assert (await client.command(f"RCPT TO:<x@{long_domain}>")).startswith("553 5.1.3 ")
    assert (await client.command(f"RCPT TO:<{'b' * 64}@local.test>")).startswith("250 ")
    assert (await client.command("DATA")).startswith("354")
    await client.send(b"Subject: long names\r\n\r\nok\r\n.\r\n")
    assert (await client.reply()).startswith("250 2.0.0 ")
    await client.close()
    assert (await incoming.get()).envelope.recipients == ["b" * 64 + "@local.test"]


async def test_nul_and_invalid_utf8_get_clean_5xx(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await greeted(ingress)
    assert (await client.command(b"MAIL FROM:<a\x00b@s.test>")).startswith("553 5.1.7 ")
    assert (await client.command(b"MAIL FROM:<\xff\xfe@s.test> SMTPUTF8")).startswith("553 5.1.7")
    assert (await client.command(b"MAIL FROM:<a@s.test>")).startswith("250 ")
    assert (await client.command(b"RCPT TO:<\xc3(@local.test>")).startswith("553 5.1.3 ")
    assert (await client.command(b"RCPT TO:<a\x00@local.test>")).startswith("553 5.1.3 ")
    assert (await client.command(b"RCPT TO:<b@local.test>")).startswith("250 ")
    assert (await client.command(b"DATA")).startswith("354")
    await client.send(b"Subject: nul\r\n\r\na\x00b\r\n.\r\n")
    assert (await client.reply()).startswith("550 5.6.0 ")
    assert (await client.command(b"\xff\xfe NOOP")).startswith("500 5.5.2 ")
    assert (await client.command(b"EHLO bad\xff.test")).startswith("501 5.5.4 ")
    assert (await client.command(b"HELO bad\x01.test")).startswith("501 5.5.4 ")
    # Still a working session after all that, and UTF-8 proper is welcome.
    await client.command("EHLO c.test")
    answers = await transaction(
        client, "jos\u00e9@s.test", ["b@local.test"], b"Subject: ok\r\n\r\nok\r\n"
    )
    assert answers[-1].startswith("250 2.0.0 "), answers
    await client.close()
    assert (await incoming.get()).envelope.sender == "jos\u00e9@s.test"
    assert await incoming.count() == 0


INJECTIONS = [
    b"MAIL FROM:<a@s.test> BODY=8BITMIME\rX-Injected: yes",
    b"MAIL FROM:<a@s.test> ENVID=x\rX-Injected:yes",
    b"MAIL FROM:<a@s.test> AUTH=<>\rX-Injected:yes",
    b"MAIL FROM:<a@s.test> X-Injected=yes",
    b"MAIL FROM:<a@s.test> SIZE=10\x00X-Injected",
    b"MAIL FROM:<a@s.test>\rX-Injected: yes",
    b"MAIL FROM:<a@s.test\rX-Injected: yes>",
]
RCPT_INJECTIONS = [
    b"RCPT TO:<b@local.test>\rX-Injected: yes",
    b"RCPT TO:<b@local.test> ORCPT=rfc822;x\rX-Injected:yes",
    b"RCPT TO:<b@local.test> NOTIFY=NEVER\rX-Injected: yes",
    b"RCPT TO:<b@local.test\r>",
    b"RCPT TO:<b@local.test\rX-Injected: yes>",
]


async def test_header_injection_through_mail_and_rcpt_parameters(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await greeted(ingress)
    for line in INJECTIONS:
        reply = await client.command(line)
        assert reply[0] == "5" and reply.split(" ", 2)[1].count(".") == 2, (line, reply)
    assert (await client.command(b"MAIL FROM:<a@s.test>")).startswith("250 ")
    for line in RCPT_INJECTIONS:
        reply = await client.command(line)
        assert reply[0] == "5" and reply.split(" ", 2)[1].count(".") == 2, (line, reply)
    # A bare CR at the end of a line is only white space; what follows the LF is
    # one more command (refused), never part of the address or the message.
    await client.send(b"RCPT TO:<b@local.test>\r\r\nX-Injected: yes\r\n")
    assert (await client.reply()).startswith("250 2.1.5 ")
    assert (await client.reply()).startswith("500 5.5.")
    assert (await client.command("DATA")).startswith("354")
    await client.send(b"Subject: clean\r\n\r\nbody\r\n.\r\n")
    assert (await client.reply()).startswith("250 2.0.0 ")
    await client.close()
    queued = await incoming.get()
    assert (queued.envelope.sender, queued.envelope.recipients) == ("a@s.test", ["b@local.test"])
    assert b"X-Injected" not in queued.body and b"\r\r" not in queued.body


async def send_as_alice(ingress: Running, subject: str) -> str:
    client = await RawSMTP.greeted(ingress.submission_port, ehlo="c.test")
    assert (await client.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")).startswith("235")
    answers = await transaction(
        client, "alice@local.test", ["x@remote.test"], f"Subject: {subject}\r\n\r\n".encode()
    )
    await client.close()
    return answers[-1] if answers[0].startswith("250") else answers[0]


@pytest.fixture
async def redis_keys(prefix: str) -> AsyncIterator[None]:
    yield
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_hourly_limit_per_process(start_ingress: StartIngress, users_file: Path) -> None:
    ingress = await start_ingress(
        users_file=str(users_file), allow_plaintext_auth="true", account_max_per_hour="2"
    )
    assert (await send_as_alice(ingress, "1")).startswith("250 2.0.0 ")
    assert (await send_as_alice(ingress, "2")).startswith("250 2.0.0 ")
    assert (await send_as_alice(ingress, "3")).startswith("450 4.7.1 ")
    # Limits are per account: unauthenticated MTA traffic is not counted.
    client = await greeted(ingress)
    answers = await transaction(client, "a@s.test", ["b@local.test"], b"S: x\r\n\r\n")
    assert answers[-1].startswith("250 2.0.0 ")
    await client.close()


async def test_usage_per_account_with_bounded_labels(
    start_ingress: StartIngress, users_file: Path, incoming: Incoming
) -> None:
    with users_file.open("a") as file:
        file.write(htpasswd_line("bob", "builder"))
    ingress = await start_ingress(
        users_file=str(users_file), allow_plaintext_auth="true", account_metrics_limit="1"
    )
    assert (await send_as_alice(ingress, "1")).startswith("250 2.0.0 ")
    assert (await send_as_alice(ingress, "2")).startswith("250 2.0.0 ")
    client = await RawSMTP.greeted(ingress.submission_port, ehlo="c.test")
    assert (await client.command(f"AUTH PLAIN {plain('bob', 'builder')}")).startswith("235")
    answers = await transaction(client, "bob@local.test", ["x@r.test", "y@r.test"], b"S: b\r\n\r\n")
    assert answers[-1].startswith("250 2.0.0 "), answers
    await client.close()
    mta = await greeted(ingress)  # not authenticated: no account series
    assert (await transaction(mta, "a@s.test", ["b@local.test"], b"S: m\r\n\r\n"))[-1][:3] == "250"
    await mta.close()

    account = "staffetta_ingress_account_messages_total"
    assert ingress.metric(account, account="alice") == 2
    assert ingress.metric(account, account="bob") == 0  # past the limit of one account...
    assert ingress.metric(account, account="_other") == 1  # ...summed here
    assert ingress.metric("staffetta_ingress_account_recipients_total", account="_other") == 2
    text = generate_latest(ingress.service.registry).decode()
    series = [line for line in text.splitlines() if line.startswith(account + "{")]
    assert sorted(series) == [
        account + '{account="_other"} 1.0',
        account + '{account="alice"} 2.0',
    ]
    for _ in range(4):
        await incoming.get()


async def test_limits_are_shared_through_redis(
    start_ingress: StartIngress, users_file: Path, redis_keys: None
) -> None:
    settings = {
        "users_file": str(users_file),
        "allow_plaintext_auth": "true",
        "account_monthly_quota": "2",
        "redis_url": REDIS_URL,
    }
    first = await start_ingress(**settings)
    second = await start_ingress(**settings)
    assert (await send_as_alice(first, "1")).startswith("250 2.0.0 ")
    assert (await send_as_alice(second, "2")).startswith("250 2.0.0 ")
    assert (await send_as_alice(first, "3")).startswith("550 5.7.1 ")
    assert (await send_as_alice(second, "4")).startswith("550 5.7.1 ")


async def test_limits_fall_back_to_the_process_while_redis_is_down(
    start_ingress: StartIngress, users_file: Path
) -> None:
    ingress = await start_ingress(
        users_file=str(users_file),
        allow_plaintext_auth="true",
        account_max_per_day="1",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert (await send_as_alice(ingress, "1")).startswith("250 2.0.0 ")
    assert (await send_as_alice(ingress, "2")).startswith("450 4.7.1 ")


async def test_proxy_protocol_gives_the_real_client_address(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress(
        proxy_protocol="true", proxy_networks="127.0.0.1/32", trusted_networks="10.0.0.0/8"
    )
    client = await RawSMTP.connect(ingress.smtp_port)
    await client.send(b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 25\r\n")
    assert (await client.reply()).startswith("220 ")
    await client.command("EHLO lb.test")
    answers = await transaction(client, "a@s.test", ["x@remote.test"], b"S: p\r\n\r\n")
    assert answers[-1].startswith("250 2.0.0 "), answers  # 10.1.2.3 is trusted
    await client.close()
    queued = await incoming.get()
    assert queued.envelope.client_address == "10.1.2.3"
    assert b"(unknown [10.1.2.3])" in queued.body

    v2 = await RawSMTP.connect(ingress.smtp_port)
    header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12])
    await v2.send(header + bytes([192, 0, 2, 9, 127, 0, 0, 1]) + b"\x9c\x40\x00\x19")
    assert (await v2.reply()).startswith("220 ")
    await v2.command("EHLO lb.test")
    await v2.command("MAIL FROM:<a@s.test>")
    assert (await v2.command("RCPT TO:<x@remote.test>")).startswith("554 5.7.1 ")
    await v2.close()


@pytest.mark.parametrize(
    ("source", "first_bytes"),
    [
        ("127.0.0.1", b"EHLO no-proxy-header.test\r\n"),
        ("127.0.0.6", b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 25\r\n"),  # not a known proxy
    ],
)
async def test_proxy_protocol_refuses_what_is_not_a_trusted_header(
    start_ingress: StartIngress, source: str, first_bytes: bytes
) -> None:
    ingress = await start_ingress(proxy_protocol="true", proxy_networks="127.0.0.1/32")
    client = await RawSMTP.connect(ingress.smtp_port, source=source)
    await client.send(first_bytes)
    assert (await client.reply()).startswith("421 4.7.0 ")
    assert await client.closed()
    await client.close()


async def test_proxy_protocol_on_submission_limits_see_the_real_client(
    start_ingress: StartIngress, users_file: Path
) -> None:
    ingress = await start_ingress(
        proxy_protocol="true",
        proxy_networks="127.0.0.1/32",
        users_file=str(users_file),
        allow_plaintext_auth="true",
        auth_max_failures="1",
        auth_failure_delay="10ms",
        max_sessions_per_ip="1",
    )

    async def via_proxy(real_client: str) -> tuple[RawSMTP, str]:
        client = await RawSMTP.connect(ingress.submission_port)
        await client.send(f"PROXY TCP4 {real_client} 127.0.0.1 40000 587\r\n")
        return client, await client.reply()

    first, greeting = await via_proxy("192.0.2.10")
    assert greeting.startswith("220 ")
    await first.command("EHLO c.test")
    assert (await first.command(f"AUTH PLAIN {plain('alice', 'bad')}")).startswith("535")
    assert (await first.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")).startswith("454")
    # Same load balancer, same real client: the per-address session cap applies to it...
    again, greeting = await via_proxy("192.0.2.10")
    assert greeting.startswith("421 4.7.0 ")
    await again.close()
    # ...while another real client behind the same balancer is neither capped nor locked out.
    second, greeting = await via_proxy("192.0.2.11")
    assert greeting.startswith("220 ")
    await second.command("EHLO c.test")
    assert (await second.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")).startswith("235")
    await second.close()
    await first.close()
