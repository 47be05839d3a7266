"""DSNs for SMTPUTF8 / 8-bit originals and oversized input: RFC 6533 parts, SMTP line limits."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest
from flufl.bounce import all_failures

from services.bounce.dsn import build_dsn
from services.common.envelope import BounceJob, RecipientResult
from tests.unit.bounce.test_dsn import (
    ACCEPTED_AT,
    CONTEXT,
    ORIGINAL,
    failure_job,
    parse,
    raw_part,
    rejected,
    status_blocks,
    unfold,
)


def test_eight_bit_headers_use_global_headers_in_8bit() -> None:
    original = "Subject: Grüße aus Köln\r\nFrom: jürgen@example.org\r\n\r\nHallo\r\n".encode()
    raw = build_dsn(failure_job(rejected()), original, CONTEXT)
    dsn = parse(raw)
    assert dsn["Content-Transfer-Encoding"] == "8bit"
    part = dsn.get_payload(2)
    assert isinstance(part, Message)
    assert part.get_content_type() == "message/global-headers"
    head, body = raw_part(raw, 2)
    assert "Content-Transfer-Encoding: 8bit" in head
    assert body.decode("utf-8") == "Subject: Grüße aus Köln\r\nFrom: jürgen@example.org\r\n"
    # The report itself is still plain ASCII: flufl.bounce reads it.
    status = dsn.get_payload(1)
    assert isinstance(status, Message)
    assert status.get_content_type() == "message/delivery-status"
    assert all_failures(dsn)[1] == {b"bob@remote.test"}
    # Every line still within SMTP's limit, and only the headers part is 8-bit.
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert raw.replace(body, b"").isascii()


def test_eight_bit_headers_that_are_not_utf8_are_base64_encoded() -> None:
    original = "Subject: caf\xe9\r\n\r\nx\r\n".encode("latin-1")
    raw = build_dsn(failure_job(rejected()), original, CONTEXT)
    assert raw.isascii()
    head, body = raw_part(raw, 2)
    assert "Content-Type: text/rfc822-headers" in head
    assert "Content-Transfer-Encoding: base64" in head
    assert body == b"Subject: caf\xe9\r\n"


def test_utf8_recipient_uses_global_delivery_status() -> None:
    result = RecipientResult(recipient="jürgen@remote.test", action="failed", status="5.1.1")
    raw = build_dsn(failure_job(result), ORIGINAL, CONTEXT)
    dsn = parse(raw)
    part = dsn.get_payload(1)
    assert isinstance(part, Message)
    assert part.get_content_type() == "message/global-delivery-status"
    head, body = raw_part(raw, 1)
    assert "Content-Transfer-Encoding: 8bit" in head
    blocks = body.decode("utf-8").split("\r\n\r\n")
    recipient = email.message_from_string(blocks[1])
    assert recipient["Final-Recipient"] == "utf-8; jürgen@remote.test"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    # The person's part names the address too, quoted-printable encoded.
    text = dsn.get_payload(0)
    assert isinstance(text, Message)
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    decoded = text.get_payload(decode=True)
    assert isinstance(decoded, bytes)
    assert "<jürgen@remote.test>" in decoded.decode("utf-8")


def test_huge_diagnostic_is_cut_and_every_line_stays_under_998() -> None:
    result = RecipientResult(
        recipient="bob@remote.test",
        action="failed",
        status="5.0.0",
        diagnostic="550 " + "y" * 5000,
        remote_mta="mx.remote.test",
    )
    raw = build_dsn(failure_job(result), ORIGINAL, CONTEXT)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    [_, block] = status_blocks(parse(raw))
    assert unfold(block["Diagnostic-Code"]).endswith("...")
    assert all_failures(parse(raw))[1] == {b"bob@remote.test"}


def test_overlong_original_header_line_is_base64_encoded() -> None:
    original = b"Subject: " + b"z" * 1200 + b"\r\nFrom: a@b.test\r\n\r\nbody\r\n"
    raw = build_dsn(failure_job(rejected()), original, CONTEXT)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    head, decoded = raw_part(raw, 2)
    assert "Content-Type: text/rfc822-headers" in head
    assert "Content-Transfer-Encoding: base64" in head
    assert decoded == original.split(b"\r\n\r\n")[0] + b"\r\n"


@pytest.mark.parametrize(
    ("original", "recipient"),
    [
        (ORIGINAL, "bob@remote.test"),
        ("Subject: Grüße\r\nFrom: a@b.test\r\n\r\nx\r\n".encode(), "bob@remote.test"),
        (ORIGINAL, "jürgen@remote.test"),
        (b"", "bob@remote.test"),
    ],
)
def test_the_parser_finds_no_defects(original: bytes, recipient: str) -> None:
    result = rejected(recipient)
    for kind in ("failure", "delay"):
        job = BounceJob(
            queue_id="QID1",
            sender="alice@example.org",
            accepted_at=ACCEPTED_AT,
            kind=kind,
            results=[
                result.model_copy(update={"action": "delayed" if kind == "delay" else "failed"})
            ],
        )
        dsn = email.message_from_bytes(
            build_dsn(job, original, CONTEXT), policy=email.policy.default
        )
        for part in dsn.walk():
            assert part.defects == [], (kind, part.get_content_type(), part.defects)
        assert dsn.get_content_type() == "multipart/report"
        assert len(dsn.get_payload()) == 3
