"""The relay policy: who may send to whom, as pure decisions."""

from __future__ import annotations

import pytest

from services.common.addressing import RecipientDirectory
from services.ingress import policy, replies
from services.ingress.policy import Client, Limits

LIMITS = Limits(max_message_size=1000, max_recipients=3)
OPEN = RecipientDirectory(frozenset({"local.test", "xn--bcher-kva.test"}))
LISTED = RecipientDirectory(
    frozenset({"local.test"}),
    known_recipients=frozenset({"alice@local.test"}),
    aliases={"team@local.test": ["alice@local.test", "bob@remote.test"]},
)
STRANGER = Client("192.0.2.7")
TRUSTED = Client("127.0.0.1", trusted=True)
TRUSTED_ON_SUBMISSION = Client("127.0.0.1", port="submission", trusted=True)
AUTHENTICATED = Client("192.0.2.7", port="submission", user="alice")


def rcpt(
    client: Client, address: str, directory: RecipientDirectory = OPEN, so_far: int = 0
) -> replies.Reply:
    return policy.check_recipient(client, address, directory, so_far, LIMITS.max_recipients)


def test_local_domain_accepted_from_anyone() -> None:
    assert rcpt(STRANGER, "anyone@local.test") == replies.RECIPIENT_OK


@pytest.mark.parametrize("address", ["x@remote.test", "x@[192.0.2.1]", "x@remote.test."])
def test_relay_denied_for_strangers(address: str) -> None:
    assert rcpt(STRANGER, address) == replies.RELAY_DENIED
    assert str(replies.RELAY_DENIED).startswith("554 5.7.1 ")


def test_trusted_networks_relay_on_the_mta_port_only() -> None:
    assert rcpt(TRUSTED, "x@remote.test") == replies.RECIPIENT_OK
    assert rcpt(TRUSTED_ON_SUBMISSION, "x@remote.test") == replies.RELAY_DENIED


def test_authenticated_clients_relay() -> None:
    assert rcpt(AUTHENTICATED, "x@remote.test") == replies.RECIPIENT_OK


@pytest.mark.parametrize(
    "address", ["ALICE@LOCAL.TEST", "alice@local.test.", "someone@Local.Test", "u@bücher.test"]
)
def test_case_trailing_dot_and_idn_are_still_local(address: str) -> None:
    assert rcpt(STRANGER, address) == replies.RECIPIENT_OK


def test_unknown_recipient_with_a_recipients_file() -> None:
    assert rcpt(STRANGER, "mallory@local.test", LISTED) == replies.UNKNOWN_RECIPIENT
    assert str(replies.UNKNOWN_RECIPIENT).startswith("550 5.1.1 ")
    assert rcpt(STRANGER, "alice@local.test", LISTED) == replies.RECIPIENT_OK


def test_aliases_need_not_be_in_the_recipients_file() -> None:
    assert rcpt(STRANGER, "Team@local.test", LISTED) == replies.RECIPIENT_OK


@pytest.mark.parametrize("local", ["a/b", "..", "a..b", "x\x01y", "../etc", "a\\b"])
def test_unsafe_local_parts(local: str) -> None:
    assert rcpt(TRUSTED, f"{local}@local.test") == replies.UNSAFE_RECIPIENT
    assert str(replies.UNSAFE_RECIPIENT).startswith("550 5.1.3 ")


@pytest.mark.parametrize("local", ["user%remote.test", "remote.test!user", "user@remote.test"])
def test_routing_in_the_local_part_is_relaying(local: str) -> None:
    assert rcpt(STRANGER, f"{local}@local.test") == replies.RELAY_DENIED
    assert rcpt(TRUSTED, f"{local}@local.test") == replies.RECIPIENT_OK


def test_recipients_past_the_limit_are_deferred() -> None:
    assert rcpt(STRANGER, "a@local.test", so_far=2) == replies.RECIPIENT_OK
    assert rcpt(STRANGER, "a@local.test", so_far=3) == replies.TOO_MANY_RECIPIENTS
    assert str(replies.TOO_MANY_RECIPIENTS).startswith("452 4.5.3 ")


@pytest.mark.parametrize("address", ["postmaster", "@local.test", ""])
def test_addresses_without_a_domain_or_local_part(address: str) -> None:
    assert rcpt(TRUSTED, address) == replies.BAD_ADDRESS


def test_declared_size() -> None:
    assert policy.check_declared_size(None, LIMITS).ok
    assert policy.check_declared_size(1000, LIMITS).ok
    assert policy.check_declared_size(1001, LIMITS) == replies.MESSAGE_TOO_BIG
    assert str(replies.MESSAGE_TOO_BIG).startswith("552 5.3.4 ")


def test_senders() -> None:
    assert policy.check_sender("").ok
    assert policy.check_sender("a@b.test").ok
    assert policy.check_sender("nodomain") == replies.BAD_SENDER


@pytest.mark.parametrize(
    ("address", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.0.0.5", False),
        ("::ffff:127.0.0.1", True),
        ("::1", True),
        ("fe80::1%eth0", False),
        ("not-an-ip", False),
    ],
)
def test_trusted_networks(address: str, trusted: bool) -> None:
    networks = policy.parse_networks(["127.0.0.1/32", "::1/128"])
    assert policy.is_trusted(address, networks) is trusted


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("<user@local.test.>", "<user@local.test>"),
        ("<user@local.test.> SIZE=10", "<user@local.test> SIZE=10"),
        (" <@a.test:user@local.test.>", "<@a.test:user@local.test>"),
        ("user@local.test.", "user@local.test"),
        ("user@local.test. SMTPUTF8", "user@local.test SMTPUTF8"),
        ("<user@local.test..>", None),  # only one dot is forgiven
        ("<user@.>", None),
        ("<user@[192.0.2.1].>", None),
        ("<user.>", None),  # no domain: nothing to forgive
        ("<>", None),
        ("<user@local.test>", None),
    ],
)
def test_without_root_dot(argument: str, expected: str | None) -> None:
    assert policy.without_root_dot(argument) == expected


def test_rfc5321_length_limits() -> None:
    at_limit = "a" * 64 + "@" + "d" * 61 + "." + "local.test"
    assert rcpt(STRANGER, "a" * 64 + "@local.test") == replies.RECIPIENT_OK
    assert rcpt(STRANGER, "a" * 65 + "@local.test") == replies.BAD_ADDRESS
    assert rcpt(STRANGER, "\u00e9" * 33 + "@local.test") == replies.BAD_ADDRESS  # 66 octets
    assert rcpt(AUTHENTICATED, "x@" + "d" * 252 + ".test") == replies.BAD_ADDRESS
    assert rcpt(AUTHENTICATED, "x@" + "d" * 250 + ".test") == replies.RECIPIENT_OK
    assert policy.check_sender(at_limit) == replies.SENDER_OK
    assert policy.check_sender("a" * 65 + "@s.test") == replies.BAD_SENDER
    assert policy.check_sender("a@" + "s" * 256) == replies.BAD_SENDER


def test_control_characters_are_c0_and_del_in_any_position() -> None:
    def by_code_point(text: str) -> bool:
        return any(ord(char) < 0x20 or ord(char) == 0x7F for char in text)

    for code in range(0x3000):
        char = chr(code)
        for text in (char, f"a{char}", f"{char}b@c", f"a@b{char}"):
            assert policy.has_control_character(text) == by_code_point(text), hex(code)
    assert not policy.has_control_character("")
    assert not policy.has_control_character("josé@exämple.org")
