"""Open-relay tricks from an untrusted, unauthenticated client: none may get a 250.

The ingress trusts only 127.0.0.1/32 here and the client connects from
127.0.0.5, so it is a stranger; ``local.test`` and ``bücher.local`` are ours.
"""

from __future__ import annotations

import pytest

from tests.integration.ingress.conftest import Incoming, Running, StartIngress
from tests.integration.ingress.rawsmtp import RawSMTP, transaction

UNTRUSTED = "127.0.0.5"

TRICKS = [
    "user%remote.test@local.test",  # percent hack
    '"user@remote.test"@local.test',  # quoted local part with a route inside
    "@local.test:user@remote.test",  # source route ending elsewhere
    "@local.test,@other.test:user@remote.test",  # longer source route
    "remote.test!user@local.test",  # bang path
    "user@remote.test@local.test",  # two at signs
    "user@local.test@remote.test",
    "user@[192.0.2.1]",  # address literal
    "user@[127.0.0.1]",  # our own address as a literal is not a local domain
    "user@[IPv6:::1]",
    "user@remote.test.",  # trailing dot
    "user@remote.test..",
    "user@local.test..",  # one dot is forgiven, two are not
    "user@.",
    "user%remote.test@local.test.",  # the tricks above, with our domain's trailing dot
    '"user@remote.test"@local.test.',
    "@local.test:user@remote.test.",
    "remote.test!user@local.test.",
    "user@remote.test@local.test.",
    "user@local.test.remote.test.",
    "user@[192.0.2.1].",
    "user@REMOTE.Test",  # mixed case
    "user@local.test.remote.test",  # our domain as a prefix
    "user@remotelocal.test",  # ...or as a suffix without the dot
    "user@xn--mller-kva.test",  # IDN (punycode), not ours
    "user@müller.test",  # IDN (UTF-8), not ours
    "user@local.test%remote.test",
    "user@remote.test%local.test",
    "user@remote.test:25",
    "user@remote.test>",
    " user@remote.test",
    "<user@remote.test>",  # doubled angle brackets
    "user@remote.test\tlocal.test",
    "postmaster@remote.test",
    "user",  # no domain at all
]

STILL_LOCAL = [
    "user@local.test",
    "User@LOCAL.TEST",
    "user@xn--bcher-kva.local",
    "user@bücher.local",
    "user@BÜCHER.local",
    "user@local.test.",  # a trailing dot (the DNS root) is still our domain
    "User@Local.Test.",
    "user@xn--bcher-kva.local.",
    "user@bücher.local.",
    "@remote.test:user@local.test",  # a source route that ends here is ours
]


@pytest.fixture
async def stranger(start_ingress: StartIngress) -> Running:
    return await start_ingress(
        trusted_networks="127.0.0.1/32", local_domains="local.test,bücher.local"
    )


async def rcpt_reply(ingress: Running, address: str) -> str:
    client = await RawSMTP.connect(ingress.smtp_port, source=UNTRUSTED)
    try:
        await client.reply()
        await client.command("EHLO stranger.test")
        assert (await client.command("MAIL FROM:<someone@sender.test> SMTPUTF8")).startswith("250")
        return await client.command(f"RCPT TO:<{address}>".encode())
    finally:
        await client.close()


@pytest.mark.parametrize("address", TRICKS)
async def test_relay_tricks_are_refused(
    stranger: Running, incoming: Incoming, address: str
) -> None:
    reply = await rcpt_reply(stranger, address)
    assert reply[0] in "45", f"{address!r} got {reply!r}"
    assert reply.split(" ", 2)[1].count(".") == 2, reply  # an enhanced status code
    assert await incoming.count() == 0


@pytest.mark.parametrize("address", STILL_LOCAL)
async def test_local_addresses_in_any_spelling_are_accepted(
    stranger: Running, address: str
) -> None:
    assert (await rcpt_reply(stranger, address)).startswith("250 2.1.5 "), address


async def test_a_trailing_dot_on_our_domain_is_queued_without_it(
    stranger: Running, incoming: Incoming
) -> None:
    client = await RawSMTP.greeted(stranger.smtp_port, source=UNTRUSTED, ehlo="stranger.test")
    answers = await transaction(
        client, "someone@sender.test.", ["user@local.test."], b"Subject: dot\r\n\r\nhi\r\n"
    )
    assert answers[-1].startswith("250 2.0.0 Ok: queued as "), answers
    await client.close()
    queued = await incoming.get()
    assert queued.envelope.recipients == ["user@local.test"]
    assert queued.envelope.sender == "someone@sender.test"


async def test_a_refused_trick_leaves_nothing_to_send(
    stranger: Running, incoming: Incoming
) -> None:
    client = await RawSMTP.greeted(stranger.smtp_port, source=UNTRUSTED, ehlo="stranger.test")
    await client.command("MAIL FROM:<someone@sender.test>")
    assert (await client.command("RCPT TO:<user%remote.test@local.test>")).startswith("554 5.7.1")
    assert (await client.command("DATA")).startswith("503 ")
    await client.send(b"Subject: relay me\r\n\r\nplease\r\n.\r\n")
    await client.command("QUIT")
    await client.close()
    assert await incoming.count() == 0
    assert stranger.metric("staffetta_ingress_messages_total", result="rejected") == 1
    assert stranger.metric("staffetta_ingress_rejections_total", stage="rcpt", status="5.7.1") == 1
