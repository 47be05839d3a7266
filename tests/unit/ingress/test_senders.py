"""The sender login map: which envelope senders an authenticated account may use."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.reloading import CHECK_INTERVAL, ReloadingTable
from services.common.settings import SettingsError, load_settings
from services.ingress import replies
from services.ingress.senders import (
    SenderLogins,
    check_sender_login,
    load_sender_logins,
    parse_sender_logins,
)

MAP = parse_sender_logins(
    [
        "# who may send as whom",
        "alice@example.test: alice",
        "shared@example.test: alice, bob  # both",
        "@example.test: admin",
        "@Bücher.Test.: carol",
        "",
        "noreply@example.test: app",
        "noreply@example.test: cron",
    ]
)


@pytest.mark.parametrize(
    ("user", "sender", "allowed"),
    [
        ("alice", "alice@example.test", True),
        ("alice", "ALICE@Example.Test.", True),  # addresses compare case-insensitively
        ("bob", "alice@example.test", False),
        ("bob", "shared@example.test", True),
        ("alice", "shared@example.test", True),
        ("admin", "anyone@example.test", True),  # the domain line
        ("admin", "alice@example.test", False),  # the address line is more specific
        ("alice", "alice@other.test", False),  # a domain nobody listed
        ("Alice", "alice@example.test", False),  # account names compare exactly
        ("carol", "c@xn--bcher-kva.test", True),  # IDN in either form
        ("carol", "c@bücher.test", True),
        ("app", "noreply@example.test", True),  # repeated lines add up
        ("cron", "noreply@example.test", True),
        ("alice", "", True),  # the null sender, as in Postfix
        ("", "alice@example.test", True),  # not authenticated: not this check's business
    ],
)
def test_who_may_use_which_sender(user: str, sender: str, allowed: bool) -> None:
    reply = check_sender_login(MAP, user, sender)
    assert reply == (replies.SENDER_OK if allowed else replies.SENDER_NOT_OWNED)


def test_refusal_is_553_5_7_1_and_no_map_allows_everything() -> None:
    assert str(replies.SENDER_NOT_OWNED).startswith("553 5.7.1 ")
    assert check_sender_login(None, "bob", "alice@example.test") == replies.SENDER_OK
    assert check_sender_login(SenderLogins(), "bob", "bob@example.test") == replies.SENDER_NOT_OWNED


@pytest.mark.parametrize(
    "line",
    [
        "alice@example.test alice",  # no colon
        "alice@example.test:",  # no account
        "alice@example.test: , ",
        "alice: alice",  # no domain
        "@: alice",
        "a b@example.test: alice",
    ],
)
def test_bad_lines_are_refused_with_their_number(line: str) -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_sender_logins(["ok@example.test: ok", line])


def test_reloaded_on_change_and_a_bad_rewrite_keeps_the_last_map(tmp_path: Path) -> None:
    path = tmp_path / "sender_logins"
    path.write_text("alice@example.test: alice\n")
    clock = [0.0]
    table = ReloadingTable((path,), lambda: load_sender_logins(path), "t", now=lambda: clock[0])
    assert not table.current().may_use("bob", "alice@example.test")
    path.write_text("alice@example.test: alice, bob\n")
    assert not table.current().may_use("bob", "alice@example.test")  # not checked yet
    clock[0] += CHECK_INTERVAL
    assert table.current().may_use("bob", "alice@example.test")
    path.write_text("this line is broken and longer than the one before it\n")
    clock[0] += CHECK_INTERVAL
    assert table.current().may_use("bob", "alice@example.test")


def test_the_setting_names_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sender_logins"
    path.write_text("a@example.test: a\n")
    settings = load_settings({"STAFFETTA_SENDER_LOGINS_FILE": str(path)})
    assert settings.sender_logins_file == path
    assert load_settings({}).sender_logins_file is None
    with pytest.raises(SettingsError, match="STAFFETTA_SENDER_LOGINS_FILE: no such file"):
        load_settings({"STAFFETTA_SENDER_LOGINS_FILE": str(tmp_path / "missing")})
