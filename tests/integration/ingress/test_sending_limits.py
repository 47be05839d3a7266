"""The sending limits file: per-account overrides and limits per client address."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.integration.ingress.conftest import Incoming, Running, StartIngress, htpasswd_line
from tests.integration.ingress.rawsmtp import RawSMTP, plain, transaction


@pytest.fixture
def accounts(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(htpasswd_line("alice", "wonderland") + htpasswd_line("bob", "builder"))
    return path


async def send(
    ingress: Running,
    *,
    source: str = "127.0.0.1",
    login: tuple[str, str] | None = None,
    recipients: tuple[str, ...] = ("x@local.test",),
) -> list[str]:
    """One message; the replies to MAIL, each RCPT, DATA and the end of data."""
    port = ingress.submission_port if login else ingress.smtp_port
    client = await RawSMTP.greeted(port, source=source, ehlo="c.test")
    if login:
        assert (await client.command(f"AUTH PLAIN {plain(*login)}")).startswith("235")
    sender = f"{login[0]}@local.test" if login else "someone@sender.test"
    answers = await transaction(client, sender, list(recipients), b"Subject: l\r\n\r\nx\r\n")
    await client.command("RSET")
    await client.close()
    return answers


async def test_limits_per_client_address_for_listed_networks(
    start_ingress: StartIngress, tmp_path: Path, incoming: Incoming
) -> None:
    limits = tmp_path / "limits"
    limits.write_text("127.0.0.0/24 hour=2  # each address on its own\n127.0.0.9 hour=0\n")
    ingress = await start_ingress(sending_limits_file=str(limits))
    for _ in range(2):
        assert (await send(ingress, source="127.0.0.8"))[-1].startswith("250 2.0.0 ")
    refused = await send(ingress, source="127.0.0.8")
    assert refused[0].startswith("450 4.7.1 "), refused
    # Another address in the same network has its own count; 127.0.0.9 has no limit.
    assert (await send(ingress, source="127.0.0.7"))[-1].startswith("250 2.0.0 ")
    for _ in range(3):
        assert (await send(ingress, source="127.0.0.9"))[-1].startswith("250 2.0.0 ")
    assert ingress.metric("staffetta_ingress_rejections_total", stage="mail", status="4.7.1") == 1
    for _ in range(6):
        await incoming.get()
    assert await incoming.count() == 0


async def test_account_lines_override_the_account_settings(
    start_ingress: StartIngress, tmp_path: Path, accounts: Path
) -> None:
    limits = tmp_path / "limits"
    limits.write_text("alice: hour=3 recipients=2\n")
    ingress = await start_ingress(
        users_file=str(accounts),
        allow_plaintext_auth="true",
        account_max_per_hour="1",
        sending_limits_file=str(limits),
    )
    alice, bob = ("alice", "wonderland"), ("bob", "builder")
    assert (await send(ingress, login=bob))[-1].startswith("250 2.0.0 ")
    assert (await send(ingress, login=bob))[0].startswith("450 4.7.1 ")  # the default: 1/hour
    three = ("a@remote.test", "b@remote.test", "c@remote.test")
    answers = await send(ingress, login=alice, recipients=three)
    assert answers[1].startswith("250 ") and answers[2].startswith("250 ")
    assert answers[3].startswith("452 4.5.3 "), answers  # recipients=2 per message
    assert answers[-1].startswith("250 2.0.0 "), answers
    assert (await send(ingress, login=alice))[-1].startswith("250 2.0.0 ")
    assert (await send(ingress, login=alice))[-1].startswith("250 2.0.0 ")
    assert (await send(ingress, login=alice))[0].startswith("450 4.7.1 ")


async def test_monthly_quota_from_the_file_and_reload(
    start_ingress: StartIngress, tmp_path: Path, accounts: Path
) -> None:
    limits = tmp_path / "limits"
    limits.write_text("alice month=1\n")
    ingress = await start_ingress(
        users_file=str(accounts), allow_plaintext_auth="true", sending_limits_file=str(limits)
    )
    alice = ("alice", "wonderland")
    assert (await send(ingress, login=alice))[-1].startswith("250 2.0.0 ")
    refused = await send(ingress, login=alice)
    assert refused[0].startswith("550 5.7.1 ") and "quota" in refused[0], refused
    limits.write_text("alice month=2\n")
    deadline = time.monotonic() + 10  # the file is checked at most once a second
    while True:
        answers = await send(ingress, login=alice)
        if answers[0].startswith("250") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert answers[-1].startswith("250 2.0.0 "), answers
    assert (await send(ingress, login=alice))[0].startswith("550 5.7.1 ")
