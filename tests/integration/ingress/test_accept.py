"""The ingress accepts mail into PREFIX.incoming, and refuses what policy forbids."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiosmtplib
import pytest

from tests.integration.ingress.conftest import Incoming, StartIngress
from tests.integration.ingress.rawsmtp import RawSMTP, transaction

MESSAGE = (
    b"Received: from older.example by relay.example; Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Received: from oldest.example by older.example; Fri, 27 Nov 2026 09:00:00 +0000\r\n"
    b"From: Alice <alice@sender.test>\r\n"
    b"To: Bob <bob@local.test>\r\n"
    b"Subject: hello\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Caf\xc3\xa9 and \xe2\x82\xac.\r\n"
    b"..a line that starts with a dot\r\n"
    b"\r\n"
)
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-Z]+)$")


async def test_accepted_message_is_queued_byte_for_byte(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.connect(ingress.smtp_port)
    assert await client.reply() == "220 mx.staffetta.test ESMTP Staffetta"
    await client.command("EHLO client.test")
    answers = await transaction(client, "alice@sender.test", ["bob@local.test"], MESSAGE)
    await client.command("QUIT")
    await client.close()

    match = QUEUED.match(answers[-1])
    assert match, answers
    queue_id = match.group(1)
    queued = await incoming.get()
    assert queued.message_id == queue_id
    envelope = queued.envelope
    assert envelope.queue_id == queue_id
    assert envelope.sender == "alice@sender.test"
    assert envelope.recipients == ["bob@local.test"]
    assert envelope.client_address == "127.0.0.1"
    assert envelope.helo == "client.test"
    assert envelope.received_headers == 2
    assert envelope.authenticated_user == ""

    header, _, rest = queued.body.partition(b"\r\nReceived: from older.example")
    assert header.startswith(b"Received: from client.test (unknown [127.0.0.1])\r\n")
    assert f"by mx.staffetta.test (Staffetta) with ESMTP id {queue_id}".encode() in header
    assert b"for <bob@local.test>; " in header
    # Dot-unstuffing aside, the client's bytes travel untouched after our header.
    sent = MESSAGE.replace(b"\r\n..a line", b"\r\n.a line")
    assert b"Received: from older.example" + rest == sent
    assert ingress.metric("staffetta_ingress_messages_total", result="accepted") == 1
    assert ingress.metric("staffetta_ingress_sessions_total", port="smtp") == 1


async def test_ehlo_announces_the_contract_keywords(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(max_message_size="12345")
    client = await RawSMTP.connect(ingress.smtp_port)
    await client.reply()
    ehlo = (await client.command("EHLO client.test")).split("\n")
    await client.close()
    keywords = [line[4:] for line in ehlo[1:]]
    assert ehlo[0] == "250-mx.staffetta.test"
    assert "SIZE 12345" in keywords
    for keyword in ("8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "SMTPUTF8"):
        assert keyword in keywords
    assert not any(k.startswith(("STARTTLS", "AUTH")) for k in keywords)


async def test_null_sender_and_several_recipients(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ingress.smtp_port) as smtp:
        errors, reply = await smtp.sendmail(
            "", ["a@local.test", "b@remote.test"], b"Subject: dsn\r\n\r\nbody\r\n"
        )
    assert errors == {}
    assert QUEUED.match(f"250 {reply}"), reply
    queued = await incoming.get()
    assert queued.envelope.sender == ""
    assert queued.envelope.recipients == ["a@local.test", "b@remote.test"]
    assert b"for <" not in queued.body.split(b"\r\n\r\n", 1)[0]


async def test_relay_denied_for_untrusted_clients(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress(trusted_networks="10.0.0.0/8")
    client = await RawSMTP.greeted(ingress.smtp_port)
    assert (await client.command("MAIL FROM:<a@sender.test>")).startswith("250")
    assert (await client.command("RCPT TO:<x@remote.test>")).startswith("554 5.7.1 ")
    assert (await client.command("RCPT TO:<y@local.test>")).startswith("250 2.1.5")
    assert (await client.command("DATA")).startswith("354")
    await client.send(b"Subject: t\r\n\r\nhi\r\n.\r\n")
    assert QUEUED.match(await client.reply())
    await client.close()
    assert (await incoming.get()).envelope.recipients == ["y@local.test"]


async def test_trusted_clients_relay_anywhere(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ingress.smtp_port) as smtp:
        await smtp.sendmail("a@sender.test", ["x@remote.test"], b"Subject: t\r\n\r\nhi\r\n")
    assert (await incoming.get()).envelope.recipients == ["x@remote.test"]


async def test_recipients_file_aliases_and_unsafe_names(
    start_ingress: StartIngress, tmp_path: Path
) -> None:
    recipients = tmp_path / "recipients"
    recipients.write_text("alice@local.test\n")
    aliases = tmp_path / "aliases"
    aliases.write_text("team@local.test: alice@local.test, carol@remote.test\n")
    ingress = await start_ingress(local_recipients_file=str(recipients), aliases_file=str(aliases))
    client = await RawSMTP.greeted(ingress.smtp_port)
    await client.command("MAIL FROM:<a@sender.test>")
    assert (await client.command("RCPT TO:<mallory@local.test>")).startswith("550 5.1.1 ")
    assert (await client.command("RCPT TO:<Alice@Local.Test>")).startswith("250 ")
    assert (await client.command("RCPT TO:<team@local.test>")).startswith("250 ")
    assert (await client.command("RCPT TO:<a/b@local.test>")).startswith("550 5.1.3 ")
    assert (await client.command('RCPT TO:<"..x"@local.test>')).startswith("550 5.1.3 ")
    await client.close()


async def test_declared_and_actual_size_limits(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress(max_message_size="1000")
    client = await RawSMTP.greeted(ingress.smtp_port)
    assert (await client.command("MAIL FROM:<a@sender.test> SIZE=1001")).startswith("552 5.3.4 ")
    answers = await transaction(
        client,
        "a@sender.test",
        ["b@local.test"],
        b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 30,
    )
    assert answers[-1].startswith("552 5.3.4 "), answers
    # The session goes on: a message that fits is still accepted.
    answers = await transaction(client, "a@sender.test", ["b@local.test"], b"Subject: ok\r\n\r\n")
    assert QUEUED.match(answers[-1]), answers
    await client.command("QUIT")
    await client.close()
    assert (await incoming.get()).body.endswith(b"Subject: ok\r\n\r\n")
    assert await incoming.count() == 0
    assert ingress.metric("staffetta_ingress_messages_total", result="rejected") == 2
    assert ingress.metric("staffetta_ingress_messages_total", result="accepted") == 1


async def test_recipients_past_the_limit_get_452(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress(max_recipients="2")
    client = await RawSMTP.greeted(ingress.smtp_port)
    answers = await transaction(
        client, "a@s.test", ["r1@local.test", "r2@local.test", "r3@local.test"], b"S: x\r\n\r\n"
    )
    await client.close()
    assert answers[3].startswith("452 4.5.3 "), answers
    assert QUEUED.match(answers[-1])
    assert (await incoming.get()).envelope.recipients == ["r1@local.test", "r2@local.test"]


async def test_swaks_delivers_through_the_ingress(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    process = await asyncio.create_subprocess_exec(
        "swaks", "--server", f"127.0.0.1:{ingress.smtp_port}", "--helo", "swaks.test",
        "--from", "a@sender.test", "--to", "bob@local.test", "--header", "Subject: swaks",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    assert b"<-  250 2.0.0 Ok: queued as " in output
    queued = await incoming.get()
    assert queued.envelope.helo == "swaks.test"
    assert b"\r\nSubject: swaks\r\n" in queued.body


async def test_submission_port_requires_auth(start_ingress: StartIngress) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.submission_port)
    assert (await client.command("MAIL FROM:<a@sender.test>")).startswith("530 5.7.0 ")
    await client.close()
    assert ingress.metric("staffetta_ingress_sessions_total", port="submission") == 1


@pytest.mark.parametrize("command", ["HELO", "EHLO"])
async def test_helo_is_recorded(
    start_ingress: StartIngress, incoming: Incoming, command: str
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.connect(ingress.smtp_port)
    await client.reply()
    await client.command(f"{command} my.helo.test")
    await transaction(client, "a@s.test", ["b@local.test"], b"Subject: h\r\n\r\n")
    await client.close()
    queued = await incoming.get()
    assert queued.envelope.helo == "my.helo.test"
    protocol = b"ESMTP" if command == "EHLO" else b"SMTP"
    assert b" with " + protocol + b" id " in queued.body


async def test_duplicate_recipients_are_queued_once(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
    recipients = ["b@local.test", "b@local.test", "B@Local.Test", "c@local.test"]
    answers = await transaction(client, "a@s.test", recipients, b"Subject: d\r\n\r\n")
    await client.close()
    assert all(answer.startswith("250 2.1.5 ") for answer in answers[1:5]), answers
    assert QUEUED.match(answers[-1])
    assert (await incoming.get()).envelope.recipients == ["b@local.test", "c@local.test"]


async def test_concurrent_sessions_each_get_their_own_message(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()

    async def send(number: int) -> str:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ingress.smtp_port) as smtp:
            _, reply = await smtp.sendmail(
                f"s{number}@sender.test",
                [f"r{number}@local.test"],
                f"Subject: {number}\r\n\r\nbody {number}\r\n".encode(),
            )
        return reply

    replies = await asyncio.gather(*(send(number) for number in range(20)))
    assert len({reply.rsplit(" ", 1)[-1] for reply in replies}) == 20  # distinct queue ids
    for _ in range(20):
        queued = await incoming.get()
        number = queued.envelope.sender[1:].split("@")[0]
        assert queued.envelope.recipients == [f"r{number}@local.test"]
        assert queued.body.endswith(f"Subject: {number}\r\n\r\nbody {number}\r\n".encode())
    assert ingress.metric("staffetta_ingress_messages_total", result="accepted") == 20
    assert ingress.metric("staffetta_ingress_active_sessions") == 0


async def test_a_second_transaction_on_the_connection_may_repeat_the_recipients(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port, ehlo="c.test")
    for subject in (b"one", b"two"):
        answers = await transaction(
            client,
            "a@s.test",
            ["b@local.test", "B@local.test"],
            b"Subject: " + subject + b"\r\n\r\n",
        )
        assert QUEUED.match(answers[-1]), answers
    await client.command("RSET")
    await client.close()
    for _ in range(2):
        assert (await incoming.get()).envelope.recipients == ["b@local.test"]
