"""The pipelined command batch: the fast path for plain addresses sends what
aiosmtplib's quote_address (email.utils.parseaddr) would have it send."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence

import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX

from services.delivery.pipelining import envelope_commands


def aiosmtplib_way(
    sender: str, recipients: Sequence[str], encoding: str, options: Sequence[str], reset: bool
) -> bytes:
    """The lines as aiosmtplib's rset(), mail(), rcpt() and data() build them."""

    def command(*args: bytes) -> bytes:
        for arg in args:
            if COMMAND_INJECTION_REGEX.search(arg):
                raise ValueError("Command arg contains a prohibited control character")
        return b" ".join(args) + b"\r\n"

    lines = [command(b"RSET")] if reset else []
    mail_from = quote_address(sender).encode(encoding)
    lines.append(command(b"MAIL", b"FROM:" + mail_from, *(o.encode("ascii") for o in options)))
    lines.extend(command(b"RCPT", b"TO:" + quote_address(r).encode(encoding)) for r in recipients)
    lines.append(command(b"DATA"))
    return b"".join(lines)


def outcome(call: Callable[..., bytes], *args: object) -> tuple[str, object]:
    """What a call returned, or the type of what it raised."""
    try:
        return "ok", call(*args)
    except Exception as exc:
        return "raised", type(exc)


ODD = [
    "",
    " ",
    "user@example.test",
    "User.Name+tag@Sub.Example.TEST",
    "o'brien!#$%&*/=?^_`{|}~-@x-y.example",
    "a..b@example.test",
    ".a@example.test",
    "a.@example.test",
    "a@example.test.",
    "a@.example.test",
    "a@example..test",
    "a@",
    "@example.test",
    "a@b@c",
    "<a@example.test>",
    "Name <a@example.test>",
    '"quoted local"@example.test',
    '"a\\"b"@example.test',
    "a(comment)@example.test",
    "a@[192.0.2.1]",
    "a@[IPv6:2001:db8::1]",
    " a@example.test",
    "a@example.test ",
    "a@example.test\r\nRCPT TO:<b@example.test>",
    "a@example.test\n",
    "a\x00@example.test",
    "a b@example.test",
    "a,b@example.test",
    "a;b@example.test",
    "a:b@example.test",
    "a\\b@example.test",
    "postmaster",
    "josé@exämple.test",
    "用户@例子.测试",
    "a@xn--exmple-cua.test",
    "a@exa_mple.test",
    "a@-example-.test",
]


def same_as_aiosmtplib(sender: str, recipients: list[str], encoding: str, reset: bool) -> bool:
    options = ["SIZE=10"]
    fast = outcome(
        lambda: envelope_commands(
            sender, recipients, encoding=encoding, options=options, reset=reset
        )
    )
    return fast == outcome(aiosmtplib_way, sender, recipients, encoding, options, reset)


@pytest.mark.parametrize("address", ODD)
@pytest.mark.parametrize("encoding", ["ascii", "utf-8"])
def test_odd_addresses_as_aiosmtplib(address: str, encoding: str) -> None:
    assert same_as_aiosmtplib(address, ["r@example.test"], encoding, reset=False)
    assert same_as_aiosmtplib("s@example.test", [address], encoding, reset=True)


def test_random_plain_addresses_as_aiosmtplib() -> None:
    """Dot-atoms of every atom character, and near misses (empty atoms, other characters)."""
    chooser = random.Random(5)
    atom_chars = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
    odd_chars = ' "(),:;<>[]\\\t\r\né'

    def atom() -> str:
        chars = atom_chars + (odd_chars if chooser.random() < 0.1 else "")
        return "".join(chooser.choice(chars) for _ in range(chooser.randrange(0, 6)))

    for _ in range(4000):
        local = ".".join(atom() for _ in range(chooser.randrange(1, 4)))
        domain = ".".join(atom() for _ in range(chooser.randrange(1, 4)))
        address = f"{local}@{domain}"
        encoding = chooser.choice(["ascii", "utf-8"])
        assert same_as_aiosmtplib(address, [address], encoding, reset=False), address


def test_random_strings_as_aiosmtplib() -> None:
    chooser = random.Random(11)
    pieces = [*"aZ09.-_+!#$%&'*/=?^`{|}~", "@", "@", "..", " ", '"', "(", ")", "<", ">"]
    pieces += ["[", "]", ",", ";", ":", "\\", "\t", "\r\n", "é", "user", "example", "test"]
    for _ in range(4000):
        address = "".join(chooser.choice(pieces) for _ in range(chooser.randrange(0, 10)))
        encoding = chooser.choice(["ascii", "utf-8"])
        assert same_as_aiosmtplib(address, [address, "r@example.test"], encoding, True), address


def test_batch_bytes() -> None:
    batch = envelope_commands(
        "s@example.test",
        ["a@example.test", "b@example.test"],
        encoding="ascii",
        options=["SIZE=1100", "BODY=8BITMIME"],
        reset=True,
    )
    assert batch == (
        b"RSET\r\nMAIL FROM:<s@example.test> SIZE=1100 BODY=8BITMIME\r\n"
        b"RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
    )
