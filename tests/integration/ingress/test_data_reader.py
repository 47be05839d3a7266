"""The DATA reader: the end marker wherever TCP splits it, dot-stuffing, limits, pipelining."""

from __future__ import annotations

import pytest

from tests.integration.ingress.conftest import Incoming, StartIngress
from tests.integration.ingress.rawsmtp import RawSMTP, open_data, transaction

QUEUED = "250 2.0.0 Ok: queued as "


def without_trace(body: bytes) -> bytes:
    """The message as the client sent it: our Received: header (first, folded) removed."""
    assert body.startswith(b"Received: ")
    lines = body.split(b"\r\n")
    index = 1
    while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
        index += 1
    return b"\r\n".join(lines[index:])


@pytest.mark.parametrize("piece", [1, 2, 3, 7])
async def test_end_marker_split_across_writes(
    start_ingress: StartIngress, incoming: Incoming, piece: int
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port)
    await open_data(client)
    data = b"Subject: split\r\n\r\nbody line\r\n.\r\n"
    for start in range(0, len(data), piece):
        await client.send(data[start : start + piece])
    assert (await client.reply()).startswith(QUEUED)
    await client.close()
    assert without_trace((await incoming.get()).body) == b"Subject: split\r\n\r\nbody line\r\n"


async def test_dots_at_line_starts_are_unstuffed(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port)
    sent = b".first line starts with a dot\r\n\r\n..\r\n...two\r\n.x\r\nend. .\r\n"
    answers = await transaction(client, "a@s.test", ["b@local.test"], sent)
    assert answers[-1].startswith(QUEUED), answers
    await client.close()
    assert without_trace((await incoming.get()).body) == (
        b"first line starts with a dot\r\n\r\n.\r\n..two\r\nx\r\nend. .\r\n"
    )


async def test_an_empty_message_is_accepted(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port)
    await open_data(client)
    await client.send(b".\r\n")
    assert (await client.reply()).startswith(QUEUED)
    await client.close()
    assert without_trace((await incoming.get()).body) == b""


async def test_size_limit_is_exact_and_the_session_goes_on(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress(max_message_size="1000")
    client = await RawSMTP.greeted(ingress.smtp_port)
    fits = b"Subject: fits\r\n\r\n" + b"x" * (1000 - 19) + b"\r\n"
    assert len(fits) == 1000
    assert (await transaction(client, "a@s.test", ["b@local.test"], fits))[-1].startswith(QUEUED)
    over = fits + b"y\r\n"
    answers = await transaction(client, "a@s.test", ["b@local.test"], over * 300)
    assert answers[-1].startswith("552 5.3.4 "), answers
    assert (await transaction(client, "a@s.test", ["b@local.test"], fits))[-1].startswith(QUEUED)
    await client.close()
    assert without_trace((await incoming.get()).body) == fits
    assert without_trace((await incoming.get()).body) == fits
    assert await incoming.count() == 0


async def test_a_line_over_the_limit_is_refused(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port)
    # aiosmtpd's limit, kept: 1001 octets with the CRLF (RFC 5321 says 1000).
    longest = b"Subject: long\r\n\r\n" + b"x" * 999 + b"\r\n"
    answers = await transaction(client, "a@s.test", ["b@local.test"], longest)
    assert answers[-1].startswith(QUEUED), answers
    answers = await transaction(
        client, "a@s.test", ["b@local.test"], longest + b"z" * 1000 + b"\r\n"
    )
    assert answers[-1].startswith("500 "), answers
    await client.close()
    assert without_trace((await incoming.get()).body) == longest
    assert await incoming.count() == 0


async def test_pipelined_transactions_after_the_dot(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port)
    await open_data(client)
    await client.send(
        b"Subject: one\r\n\r\n1\r\n.\r\n"
        b"MAIL FROM:<c@s.test>\r\nRCPT TO:<d@local.test>\r\nDATA\r\n"
        b"Subject: two\r\n\r\n2\r\n.\r\nQUIT\r\n"
    )
    replies = [await client.reply() for _ in range(5)]
    assert replies[0].startswith(QUEUED) and replies[4].startswith(QUEUED), replies
    assert replies[1].startswith("250 ") and replies[2].startswith("250 "), replies
    assert replies[3].startswith("354 "), replies
    assert (await client.reply()).startswith("221 ")
    await client.close()
    first, second = await incoming.get(), await incoming.get()
    assert without_trace(first.body) == b"Subject: one\r\n\r\n1\r\n"
    assert second.envelope.sender == "c@s.test"
    assert without_trace(second.body) == b"Subject: two\r\n\r\n2\r\n"


async def test_connection_lost_during_data_queues_nothing(
    start_ingress: StartIngress, incoming: Incoming
) -> None:
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port)
    await open_data(client)
    await client.send(b"Subject: cut\r\n\r\nhalf a message\r\n")
    await client.close()
    survivor = await RawSMTP.greeted(ingress.smtp_port)
    answers = await transaction(survivor, "a@s.test", ["b@local.test"], b"Subject: ok\r\n\r\n")
    assert answers[-1].startswith(QUEUED), answers
    await survivor.close()
    assert without_trace((await incoming.get()).body) == b"Subject: ok\r\n\r\n"
    assert await incoming.count() == 0


@pytest.mark.parametrize(
    ("sent", "wire_ready"),
    [
        (b"Subject: plain\r\n\r\nno line starts with a dot\r\nend. .\r\n", True),
        (b"Subject: dotted\r\n\r\n..a line that starts with a dot\r\n", False),
        (b"..first line\r\nSubject: x\r\n\r\nbody\r\n", False),
        (b"Subject: bare\n\nline ends\r\n", False),
        # A bare CR before a dot: normalising it makes a line that starts with "."
        (b"Subject: cr\r\n\r\nbefore\r.after\r\n", False),
    ],
)
async def test_wire_ready_says_whether_delivery_may_skip_the_checks(
    start_ingress: StartIngress, incoming: Incoming, sent: bytes, wire_ready: bool
) -> None:
    """The flag delivery trusts to send the body as it is: set only when true of the
    body that was queued (Received: header included), checked here against it."""
    ingress = await start_ingress()
    client = await RawSMTP.greeted(ingress.smtp_port)
    answers = await transaction(client, "a@s.test", ["b@local.test"], sent)
    assert answers[-1].startswith(QUEUED), answers
    await client.close()
    queued = await incoming.get()
    assert queued.envelope.wire_ready is wire_ready
    # Never set when untrue (a bare line end in DATA clears it even when normalising
    # them leaves no dot line: the flag is only worth one search).
    outside_crlf = queued.body.replace(b"\r\n", b"")
    crlf_only = b"\r" not in outside_crlf and b"\n" not in outside_crlf
    no_dot_lines = not any(line.startswith(b".") for line in queued.body.split(b"\r\n"))
    if wire_ready:
        assert crlf_only and no_dot_lines and queued.body.endswith(b"\r\n")
