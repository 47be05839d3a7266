"""The human-readable part of a DSN."""

from __future__ import annotations

import pytest

from services.bounce.wording import (
    human_duration,
    human_report,
    is_smtp_reply,
    recipient_line,
    status_text,
)
from services.common.envelope import RecipientResult


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (3599, "59 minutes"),
        (4 * 3600 + 59, "4 hours"),
        (86400, "1 day"),
        (5 * 86400 + 7200, "5 days"),
        (-3, "0 seconds"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("status", "text"),
    [
        ("5.1.1", "bad destination mailbox address (no such user)"),
        ("5.1.10", "recipient address has null MX"),
        ("5.4.6", "mail forwarding loop"),
        ("4.4.7", "delivery time expired"),
        ("5.9.9", "other or undefined status"),
    ],
)
def test_status_text(status: str, text: str) -> None:
    assert status_text(status) == text


@pytest.mark.parametrize(
    ("diagnostic", "expected"),
    [
        ("550 5.1.1 no such user", True),
        ("421-4.7.0 try later", True),
        ("250", True),
        ("mail forwarding loop", False),
        ("Host or domain name not found", False),
        ("5501 weird", False),
        ("", False),
    ],
)
def test_is_smtp_reply(diagnostic: str, expected: bool) -> None:
    assert is_smtp_reply(diagnostic) is expected


def test_recipient_line_with_remote_reply_is_wrapped() -> None:
    result = RecipientResult(
        recipient="bob@remote.test",
        action="failed",
        status="5.1.1",
        diagnostic="550 5.1.1 <bob@remote.test>:\r\n Recipient address rejected: " + "x " * 60,
        remote_mta="mx.remote.test",
    )
    line = recipient_line(result)
    assert line.startswith("<bob@remote.test>: host mx.remote.test said: 550 5.1.1")
    assert all(len(row) <= 76 for row in line.splitlines())
    assert all(row.startswith("    ") for row in line.splitlines()[1:])


def test_recipient_line_without_diagnostic_explains_the_status() -> None:
    result = RecipientResult(recipient="x@nullmx.test", action="failed", status="5.1.10")
    assert (
        recipient_line(result) == "<x@nullmx.test>: recipient address has null MX (status 5.1.10)"
    )


def test_expired_recipient_says_how_long_and_the_last_error() -> None:
    result = RecipientResult(
        recipient="bob@remote.test",
        action="failed",
        status="4.4.7",
        diagnostic="421 4.3.2 busy",
        remote_mta="mx.remote.test",
    )
    text = " ".join(recipient_line(result, waited=5 * 86400 + 60).split())
    assert text == (
        "<bob@remote.test>: message expired after 5 days in the queue; "
        "the last attempt failed: host mx.remote.test said: 421 4.3.2 busy"
    )
    bare = RecipientResult(recipient="bob@remote.test", action="failed", status="4.4.7")
    assert recipient_line(bare, waited=3600) == (
        "<bob@remote.test>: message expired after 1 hour in the queue"
    )


def test_failure_report_lists_every_recipient() -> None:
    results = [
        RecipientResult(recipient=f"user{i}@remote.test", action="failed", status="5.1.1")
        for i in range(3)
    ]
    text = human_report("failure", "mx.test", results, waited=10, lifetime=86400)
    assert text.startswith("This is the mail system at host mx.test.")
    assert "could not\nbe delivered to one or more recipients" in text
    for i in range(3):
        assert f"<user{i}@remote.test>: bad destination mailbox address" in text
    assert "WARNING" not in text


def test_delay_report_is_a_warning() -> None:
    result = RecipientResult(recipient="bob@remote.test", action="delayed", status="4.4.1")
    text = human_report("delay", "mx.test", [result], waited=4 * 3600 + 5, lifetime=5 * 86400)
    assert "THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE." in text
    assert "could not be delivered for more than 4 hours." in text
    assert "retried until it is 5 days old." in text
    assert "<bob@remote.test>: no answer from host (status 4.4.1)" in text
