"""Sender restrictions: an authenticated account may use only the senders mapped to it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosmtplib
import pytest

from tests.integration.ingress.conftest import (
    Incoming,
    Running,
    StartIngress,
    Tls,
    htpasswd_line,
)
from tests.integration.ingress.rawsmtp import RawSMTP, plain, transaction


@pytest.fixture
def accounts(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(htpasswd_line("alice", "wonderland") + htpasswd_line("bob", "builder"))
    return path


@pytest.fixture
def sender_logins(tmp_path: Path) -> Path:
    path = tmp_path / "sender_logins"
    path.write_text(
        "# sender: accounts\n"
        "alice@local.test: alice\n"
        "team@local.test: alice, bob\n"
        "@apps.test: bob\n"
    )
    return path


@pytest.fixture
async def restricted(start_ingress: StartIngress, accounts: Path, sender_logins: Path) -> Running:
    return await start_ingress(
        users_file=str(accounts),
        sender_logins_file=str(sender_logins),
        allow_plaintext_auth="true",
    )


async def logged_in(port: int, user: str, password: str) -> RawSMTP:
    client = await RawSMTP.greeted(port, ehlo="c.test")
    assert (await client.command(f"AUTH PLAIN {plain(user, password)}")).startswith("235")
    return client


async def mail_from(ingress: Running, user: str, password: str, sender: str) -> str:
    client = await logged_in(ingress.submission_port, user, password)
    reply = await client.command(f"MAIL FROM:<{sender}>")
    await client.close()
    return reply


@pytest.mark.parametrize(
    ("user", "password", "sender", "allowed"),
    [
        ("alice", "wonderland", "alice@local.test", True),
        ("alice", "wonderland", "Alice@LOCAL.test.", True),
        ("alice", "wonderland", "team@local.test", True),
        ("bob", "builder", "team@local.test", True),
        ("bob", "builder", "alice@local.test", False),
        ("bob", "builder", "ci@apps.test", True),  # a whole domain
        ("alice", "wonderland", "ci@apps.test", False),
        ("alice", "wonderland", "alice@elsewhere.test", False),  # listed nowhere
        ("alice", "wonderland", "", True),  # the null sender stays allowed
    ],
)
async def test_sender_must_belong_to_the_account(
    restricted: Running, user: str, password: str, sender: str, allowed: bool
) -> None:
    reply = await mail_from(restricted, user, password, sender)
    if allowed:
        assert reply.startswith("250 2.1.0 "), reply
    else:
        assert reply.startswith("553 5.7.1 "), reply
        assert (
            restricted.metric("staffetta_ingress_rejections_total", stage="mail", status="5.7.1")
            == 1
        )


async def test_a_refused_sender_sends_nothing_and_the_session_goes_on(
    restricted: Running, incoming: Incoming
) -> None:
    client = await logged_in(restricted.submission_port, "bob", "builder")
    answers = await transaction(client, "alice@local.test", ["x@remote.test"], b"S: forged\r\n\r\n")
    assert answers[0].startswith("553 5.7.1 ")
    assert answers[-1].startswith("503 "), answers  # no RCPT or DATA without a sender
    answers = await transaction(client, "team@local.test", ["x@remote.test"], b"S: ok\r\n\r\n")
    assert answers[-1].startswith("250 2.0.0 Ok: queued as "), answers
    await client.close()
    queued = await incoming.get()
    assert (queued.envelope.sender, queued.envelope.authenticated_user) == (
        "team@local.test",
        "bob",
    )
    assert await incoming.count() == 0
    assert restricted.metric("staffetta_ingress_messages_total", result="rejected") >= 1


async def test_aiosmtplib_sees_553(restricted: Running) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=restricted.submission_port)
    async with smtp:
        await smtp.login("bob", "builder")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.sendmail("alice@local.test", ["x@remote.test"], b"Subject: x\r\n\r\ny\r\n")
    assert refused.value.code == 553
    assert refused.value.message.startswith("5.7.1 ")


async def test_the_map_is_reloaded_when_it_changes(
    restricted: Running, sender_logins: Path
) -> None:
    assert (await mail_from(restricted, "bob", "builder", "bob@local.test")).startswith("553")
    with sender_logins.open("a") as file:
        file.write("bob@local.test: bob\n")
    deadline = time.monotonic() + 10  # the file is checked at most once a second
    while True:
        reply = await mail_from(restricted, "bob", "builder", "bob@local.test")
        if reply.startswith("250") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert reply.startswith("250 2.1.0 "), reply


async def test_unauthenticated_clients_are_not_restricted(
    restricted: Running, incoming: Incoming
) -> None:
    # A trusted network on the MTA port relays without AUTH: the map does not apply.
    client = await RawSMTP.greeted(restricted.smtp_port, ehlo="app.test")
    answers = await transaction(client, "alice@local.test", ["x@remote.test"], b"S: t\r\n\r\n")
    assert answers[-1].startswith("250 2.0.0 "), answers
    await client.close()
    assert (await incoming.get()).envelope.authenticated_user == ""


async def test_auth_on_the_mta_port_is_restricted_too(restricted: Running) -> None:
    client = await logged_in(restricted.smtp_port, "bob", "builder")
    assert (await client.command("MAIL FROM:<alice@local.test>")).startswith("553 5.7.1 ")
    assert (await client.command("MAIL FROM:<ci@apps.test>")).startswith("250 ")
    await client.close()


async def test_swaks_with_starttls_and_auth_is_held_to_its_senders(
    start_ingress: StartIngress, accounts: Path, sender_logins: Path, tls_files: Tls
) -> None:
    ingress = await start_ingress(
        users_file=str(accounts),
        sender_logins_file=str(sender_logins),
        **tls_files.settings(),
    )

    async def swaks(sender: str) -> tuple[int | None, str]:
        process = await asyncio.create_subprocess_exec(
            "swaks", "--server", f"127.0.0.1:{ingress.submission_port}", "--tls",
            "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "builder",
            "--from", sender, "--to", "x@remote.test", "--header", "Subject: swaks",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        return process.returncode, output.decode()

    code, output = await swaks("alice@local.test")
    assert code != 0 and "<~* 553 5.7.1 " in output, output  # <~: over TLS
    code, output = await swaks("team@local.test")
    assert code == 0 and "<~  250 2.0.0 Ok: queued as " in output, output
