"""AUTH against the users file, STARTTLS and implicit TLS, on the submission ports."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import aiosmtplib
import pytest
import trustme

from tests.integration.ingress.conftest import (
    Incoming,
    StartIngress,
    Tls,
    htpasswd_line,
)
from tests.integration.ingress.rawsmtp import RawSMTP, b64, plain, starttls, transaction


def keywords(ehlo: str) -> list[str]:
    return [line[4:] for line in ehlo.split("\n")[1:]]


async def test_auth_needs_tls_on_submission(
    start_ingress: StartIngress, tls_files: Tls, users_file: Path
) -> None:
    ingress = await start_ingress(
        **tls_files.settings(),
        users_file=str(users_file),
    )
    client = await RawSMTP.connect(ingress.submission_port, source="127.0.0.1")
    await client.reply()
    offered = keywords(await client.command("EHLO c.test"))
    assert "STARTTLS" in offered
    assert not any(k.startswith("AUTH") for k in offered)
    assert (await client.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")).startswith(
        "538 5.7.11 "
    )
    # Trusted networks do not skip AUTH on the submission port.
    assert (await client.command("MAIL FROM:<alice@local.test>")).startswith("530 5.7.0 ")
    await client.close()


async def test_starttls_then_auth_plain_relays_and_is_recorded(
    start_ingress: StartIngress, incoming: Incoming, tls_files: Tls, users_file: Path
) -> None:
    ingress = await start_ingress(
        **tls_files.settings(),
        users_file=str(users_file),
        trusted_networks="10.0.0.0/8",
    )
    client = await RawSMTP.greeted(ingress.submission_port, ehlo="c.test")
    assert (await starttls(client, tls_files.client)).startswith("220 2.0.0 ")
    offered = keywords(await client.command("EHLO c.test"))
    assert "AUTH PLAIN LOGIN" in offered and "STARTTLS" not in offered
    assert (await client.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")).startswith(
        "235 2.7.0 "
    )
    answers = await transaction(
        client, "alice@local.test", ["friend@remote.test"], b"Subject: tls\r\n\r\nhi\r\n"
    )
    assert answers[-1].startswith("250 2.0.0 Ok: queued as "), answers
    await client.close()
    queued = await incoming.get()
    assert queued.envelope.authenticated_user == "alice"
    header = queued.body.split(b"\r\nSubject: tls", 1)[0]
    assert b"(using TLSv1." in header and b" with cipher " in header
    assert b"(Authenticated sender: alice)" in header
    assert b" with ESMTPSA id " in header


async def test_aiosmtplib_starttls_and_login(
    start_ingress: StartIngress, incoming: Incoming, tls_files: Tls, users_file: Path
) -> None:
    ingress = await start_ingress(
        **tls_files.settings(),
        users_file=str(users_file),
    )
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=ingress.submission_port,
        tls_context=tls_files.client,
        start_tls=True,
    )
    async with smtp:
        await smtp.login("alice", "wonderland")
        await smtp.sendmail("alice@local.test", ["x@remote.test"], b"Subject: lib\r\n\r\nb\r\n")
    assert (await incoming.get()).envelope.authenticated_user == "alice"


async def test_auth_login_failures_slow_down_then_lock_out(
    start_ingress: StartIngress, users_file: Path
) -> None:
    ingress = await start_ingress(
        users_file=str(users_file),
        allow_plaintext_auth="true",
        auth_max_failures="3",
        auth_failure_delay="200ms",
    )
    client = await RawSMTP.connect(ingress.submission_port)
    await client.reply()
    assert "AUTH PLAIN LOGIN" in keywords(await client.command("EHLO c.test"))
    started = time.monotonic()
    assert (await client.command("AUTH LOGIN")) == "334 VXNlcm5hbWU6"
    assert (await client.command(b64("alice"))) == "334 UGFzc3dvcmQ6"
    assert (await client.command(b64("wrong"))).startswith("535 5.7.8 ")
    assert time.monotonic() - started >= 0.2
    assert (await client.command(f"AUTH PLAIN {plain('bob', 'x')}")).startswith("535 5.7.8 ")
    assert (await client.command(f"AUTH PLAIN {plain('alice', 'no')}")).startswith("535 5.7.8 ")
    # Locked out now, even with the right password, from this address.
    locked = await client.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")
    assert locked.startswith("454 4.7.0 "), locked
    await client.close()
    other = await RawSMTP.greeted(ingress.submission_port, source="127.0.0.9", ehlo="c.test")
    assert (await other.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")).startswith("235")
    assert (await other.command("AUTH PLAIN")).startswith("503 ")  # already authenticated
    await other.close()
    assert ingress.metric("staffetta_ingress_rejections_total", stage="auth", status="5.7.8") == 3


async def test_auth_login_with_initial_response_and_abort(
    start_ingress: StartIngress, users_file: Path
) -> None:
    ingress = await start_ingress(users_file=str(users_file), allow_plaintext_auth="true")
    client = await RawSMTP.greeted(ingress.submission_port, ehlo="c.test")
    assert (await client.command(f"AUTH LOGIN {b64('alice')}")) == "334 UGFzc3dvcmQ6"
    assert (await client.command("*")).startswith("501 ")
    assert (await client.command("AUTH PLAIN")) == "334 "
    assert (await client.command(plain("alice", "wonderland"))).startswith("235 2.7.0 ")
    assert (await client.command("MAIL FROM:<alice@local.test>")).startswith("250 ")
    await client.close()


async def test_users_file_is_reloaded_when_it_changes(
    start_ingress: StartIngress, users_file: Path
) -> None:
    ingress = await start_ingress(users_file=str(users_file), allow_plaintext_auth="true")

    async def auth(user: str, password: str) -> str:
        client = await RawSMTP.greeted(ingress.submission_port, ehlo="c.test")
        reply = await client.command(f"AUTH PLAIN {plain(user, password)}")
        await client.close()
        return reply

    assert (await auth("carol", "secret")).startswith("535")
    with users_file.open("a") as file:
        file.write(htpasswd_line("carol", "secret"))
    assert (await auth("carol", "secret")).startswith("235")
    assert (await auth("alice", "wonderland")).startswith("235")


async def test_mta_port_offers_auth_only_with_a_users_file(
    start_ingress: StartIngress, tls_files: Tls, users_file: Path
) -> None:
    tls = {"tls_cert_file": str(tls_files.cert_file), "tls_key_file": str(tls_files.key_file)}
    without = await start_ingress(**tls)
    client = await RawSMTP.greeted(without.smtp_port, ehlo="c.test")
    await starttls(client, tls_files.client)
    assert not any(k.startswith("AUTH") for k in keywords(await client.command("EHLO c.test")))
    assert (await client.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")).startswith("502")
    await client.close()

    with_users = await start_ingress(users_file=str(users_file), **tls)
    client = await RawSMTP.connect(with_users.smtp_port)
    await client.reply()
    assert not any(k.startswith("AUTH") for k in keywords(await client.command("EHLO c.test")))
    await starttls(client, tls_files.client)
    assert "AUTH PLAIN LOGIN" in keywords(await client.command("EHLO c.test"))
    await client.close()


async def test_commands_pipelined_after_starttls_are_discarded(
    start_ingress: StartIngress, tls_files: Tls
) -> None:
    ingress = await start_ingress(**tls_files.settings())
    client = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
    await client.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
    assert (await client.reply()).startswith("220 ")
    await client.writer.start_tls(tls_files.client, server_hostname="mx.staffetta.test")
    ehlo = await client.command("EHLO c.test")
    assert ehlo.startswith("250-mx.staffetta.test")
    # The injected MAIL never ran: there is no transaction to add a recipient to.
    assert (await client.command("RCPT TO:<b@local.test>")).startswith("503 ")
    await client.close()


async def test_implicit_tls_submissions_port(
    start_ingress: StartIngress, incoming: Incoming, tls_files: Tls, users_file: Path
) -> None:
    ingress = await start_ingress(
        **tls_files.settings(),
        users_file=str(users_file),
        submissions_listen="127.0.0.1:0",
    )
    client = await RawSMTP.connect(ingress.submissions_port, tls=tls_files.client)
    assert (await client.reply()).startswith("220 mx.staffetta.test ")
    offered = keywords(await client.command("EHLO c.test"))
    assert "STARTTLS" not in offered and "AUTH PLAIN LOGIN" in offered
    assert (await client.command("MAIL FROM:<alice@local.test>")).startswith("530 5.7.0 ")
    assert (await client.command(f"AUTH PLAIN {plain('alice', 'wonderland')}")).startswith("235")
    answers = await transaction(client, "alice@local.test", ["z@remote.test"], b"S: i\r\n\r\n")
    assert answers[-1].startswith("250 2.0.0 Ok: queued as ")
    await client.close()
    queued = await incoming.get()
    assert b"(using TLSv1." in queued.body
    assert ingress.metric("staffetta_ingress_sessions_total", port="submissions") == 1


async def test_tls_below_1_2_is_refused(start_ingress: StartIngress, tls_files: Tls) -> None:
    ingress = await start_ingress(
        **tls_files.settings(),
        submissions_listen="127.0.0.1:0",
    )
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client = await asyncio.wait_for(RawSMTP.connect(ingress.submissions_port, tls=old), 10)
        await client.close()


async def test_renewed_certificate_is_used_without_a_restart(
    start_ingress: StartIngress, tmp_path: Path
) -> None:
    def issue(ca: trustme.CA) -> tuple[bytes, bytes, ssl.SSLContext]:
        cert = ca.issue_cert("mx.staffetta.test", "127.0.0.1")
        client = ssl.create_default_context()
        ca.configure_trust(client)
        return cert.private_key_and_cert_chain_pem.bytes(), cert.private_key_pem.bytes(), client

    old_chain, old_key, trusts_old = issue(trustme.CA())
    new_chain, new_key, trusts_new = issue(trustme.CA())
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(old_chain)
    key_file.write_bytes(old_key)
    ingress = await start_ingress(
        tls_cert_file=str(cert_file),
        tls_key_file=str(key_file),
        submissions_listen="127.0.0.1:0",
    )

    async def handshakes(client: ssl.SSLContext) -> tuple[bool, bool]:
        """(STARTTLS on the MTA port, implicit TLS) with a client trusting one CA."""
        results = []
        try:
            smtp = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
            await starttls(smtp, client)
            results.append((await smtp.command("NOOP")).startswith("250"))
            await smtp.close()
        except (ssl.SSLError, ConnectionError):
            results.append(False)
        try:
            implicit = await RawSMTP.connect(ingress.submissions_port, tls=client)
            results.append((await implicit.reply()).startswith("220 "))
            await implicit.close()
        except (ssl.SSLError, ConnectionError):
            results.append(False)
        return results[0], results[1]

    async def eventually(client: ssl.SSLContext) -> tuple[bool, bool]:
        deadline = time.monotonic() + 10  # the files are checked at most once a second
        while True:
            result = await handshakes(client)
            if result == (True, True) or time.monotonic() > deadline:
                return result
            await asyncio.sleep(0.1)

    assert await handshakes(trusts_old) == (True, True)
    assert await handshakes(trusts_new) == (False, False)
    # A half-done renewal (new certificate, old key) is not loaded: the old pair stays.
    cert_file.write_bytes(new_chain)
    await asyncio.sleep(1.1)  # past the check interval: the next connection looks at it
    assert await handshakes(trusts_old) == (True, True)
    key_file.write_bytes(new_key)
    assert await eventually(trusts_new) == (True, True)
    assert await handshakes(trusts_old) == (False, False)


async def test_auth_lockout_ends_after_a_while(
    start_ingress: StartIngress, users_file: Path
) -> None:
    ingress = await start_ingress(
        users_file=str(users_file),
        allow_plaintext_auth="true",
        auth_max_failures="2",
        auth_failure_delay="50ms",
        auth_lockout="1s",
    )
    client = await RawSMTP.greeted(ingress.submission_port, source="127.0.0.7", ehlo="c.test")
    for _ in range(2):
        assert (await client.command(f"AUTH PLAIN {plain('alice', 'guess')}")).startswith("535")
    locked_at = time.monotonic()
    right = f"AUTH PLAIN {plain('alice', 'wonderland')}"
    assert (await client.command(right)).startswith("454 4.7.0 ")
    deadline = locked_at + 10
    while True:
        reply = await client.command(right)
        if not reply.startswith("454") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert reply.startswith("235 2.7.0 "), reply
    assert time.monotonic() - locked_at >= 0.9  # refused for the whole lockout
    assert ingress.metric("staffetta_ingress_rejections_total", stage="auth", status="4.7.0") >= 1
    await client.close()
