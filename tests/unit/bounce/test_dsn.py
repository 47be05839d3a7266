"""DSN building, checked by parsing the result with the email package and flufl.bounce."""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
from email.message import Message

import pytest
from flufl.bounce import all_failures

from services.bounce.dsn import (
    DsnContext,
    build_dsn,
    drop_reason,
    fold,
    format_date,
    mta_name,
    original_headers,
    reported_results,
)
from services.common.envelope import BounceJob, RecipientResult

ACCEPTED_AT = 1_790_000_000.0  # Sun, 21 Sep 2026 14:13:20 +0000
NOW = ACCEPTED_AT + 5 * 3600
LIFETIME = 5 * 86400.0
CONTEXT = DsnContext(
    hostname="mx.staffetta.test", queue_id="DSNQID", now=NOW, max_queue_lifetime=LIFETIME
)
ORIGINAL = (
    b"Received: from client.test (client.test [127.0.0.9]) by mx.staffetta.test\r\n"
    b"\t(Staffetta) id QID1; Sun, 21 Sep 2026 14:13:20 +0000\r\n"
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@remote.test, carol@remote.test\r\n"
    b"Subject: quarterly figures\r\n"
    b"Message-ID: <orig-1@example.org>\r\n"
    b"\r\n"
    b"The secret body must not come back.\r\n"
)
REMOTE_REPLY = (
    "550 5.1.1 <bob@remote.test>: Recipient address rejected: "
    "User unknown in virtual mailbox table, and a long explanation after it"
)


def failure_job(*results: RecipientResult, sender: str = "alice@example.org") -> BounceJob:
    return BounceJob(
        queue_id="QID1",
        sender=sender,
        accepted_at=ACCEPTED_AT,
        kind="failure",
        results=list(results),
    )


def rejected(recipient: str = "bob@remote.test") -> RecipientResult:
    return RecipientResult(
        recipient=recipient,
        action="failed",
        status="5.1.1",
        diagnostic=REMOTE_REPLY,
        remote_mta="mx.remote.test",
    )


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw)


def status_blocks(dsn: Message) -> list[Message]:
    part = dsn.get_payload(1)
    assert isinstance(part, Message)
    assert part.get_content_type() == "message/delivery-status"
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return [block for block in blocks if isinstance(block, Message)]


def raw_part(raw: bytes, index: int) -> tuple[str, bytes]:
    """(headers, decoded body) of the ``index``-th part, straight from the bytes.

    Python's parser reads every message/* part as an embedded message, so it
    does not decode a base64 RFC 6533 part; this helper does.
    """
    dsn = parse(raw)
    boundary = dsn.get_boundary()
    assert boundary is not None
    chunks = raw.split(b"\r\n--" + boundary.encode() + b"\r\n")
    chunk = chunks[1 + index].split(b"\r\n--" + boundary.encode() + b"--")[0]
    head, _, body = chunk.partition(b"\r\n\r\n")
    text = head.decode("ascii")
    return text, base64.b64decode(body) if "Encoding: base64" in text else body


def unfold(value: str | None) -> str:
    assert value is not None
    return " ".join(value.split())


def test_failure_dsn_structure_and_top_headers() -> None:
    raw = build_dsn(failure_job(rejected()), ORIGINAL, CONTEXT)
    dsn = parse(raw)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = dsn.get_payload()
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts if isinstance(p, Message)] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert dsn["From"] == "MAILER-DAEMON@mx.staffetta.test (Mail Delivery System)"
    assert email.utils.parseaddr(dsn["To"])[1] == "alice@example.org"
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn["Auto-Submitted"] == "auto-replied"
    assert dsn["MIME-Version"] == "1.0"
    assert email.utils.parsedate_to_datetime(dsn["Date"]).timestamp() == NOW
    assert dsn["Message-ID"].startswith("<DSNQID.") and dsn["Message-ID"].endswith(
        "@mx.staffetta.test>"
    )
    assert "mx.staffetta.test" in unfold(dsn["Received"])


def test_every_line_ends_in_crlf_and_is_seven_bit_and_short() -> None:
    raw = build_dsn(failure_job(rejected()), ORIGINAL, CONTEXT)
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_per_message_fields() -> None:
    dsn = parse(build_dsn(failure_job(rejected()), ORIGINAL, CONTEXT))
    per_message = status_blocks(dsn)[0]
    assert per_message["Reporting-MTA"] == "dns; mx.staffetta.test"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == ACCEPTED_AT
    assert per_message["Arrival-Date"] == "Mon, 21 Sep 2026 14:13:20 +0000"
    assert per_message["X-Staffetta-Queue-ID"] == "QID1"
    assert per_message["Final-Recipient"] is None


def test_per_recipient_fields_for_a_remote_rejection() -> None:
    dsn = parse(build_dsn(failure_job(rejected()), ORIGINAL, CONTEXT))
    [_, block] = status_blocks(dsn)
    assert block["Final-Recipient"] == "rfc822; bob@remote.test"
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert block["Remote-MTA"] == "dns; mx.remote.test"
    assert unfold(block["Diagnostic-Code"]) == f"smtp; {REMOTE_REPLY}"
    assert email.utils.parsedate_to_datetime(block["Last-Attempt-Date"]).timestamp() == NOW
    assert block["Will-Retry-Until"] is None


def test_long_diagnostic_is_folded_not_cut() -> None:
    raw = build_dsn(failure_job(rejected()), ORIGINAL, CONTEXT)
    text = raw.decode("ascii")
    start = text.index("Diagnostic-Code:")
    field = text[start : text.index("\r\nLast-Attempt-Date", start)]
    assert "\r\n " in field
    assert all(len(line) <= 78 for line in field.split("\r\n"))


def test_every_failed_recipient_is_in_one_dsn_and_flufl_bounce_finds_them() -> None:
    loop = RecipientResult(
        recipient="team@local.test",
        action="failed",
        status="5.4.6",
        diagnostic="mail forwarding loop: alias loop: team@local.test -> team@local.test",
    )
    nomx = RecipientResult(recipient="x@nullmx.test", action="failed", status="5.1.10")
    dsn = parse(build_dsn(failure_job(rejected(), loop, nomx), ORIGINAL, CONTEXT))
    blocks = status_blocks(dsn)[1:]
    assert [(b["Final-Recipient"], b["Status"]) for b in blocks] == [
        ("rfc822; bob@remote.test", "5.1.1"),
        ("rfc822; team@local.test", "5.4.6"),
        ("rfc822; x@nullmx.test", "5.1.10"),
    ]
    # No remote server answered for the loop: our own diagnostic type, no Remote-MTA.
    assert unfold(blocks[1]["Diagnostic-Code"]).startswith("X-Staffetta; mail forwarding loop")
    assert blocks[1]["Remote-MTA"] is None
    assert blocks[2]["Diagnostic-Code"] is None
    temporary, permanent = all_failures(dsn)
    assert temporary == frozenset()
    assert permanent == {b"bob@remote.test", b"team@local.test", b"x@nullmx.test"}


def test_smtp_reply_without_remote_mta_is_still_an_smtp_diagnostic() -> None:
    result = RecipientResult(
        recipient="bob@remote.test", action="failed", status="5.7.1", diagnostic="554 5.7.1 no"
    )
    [_, block] = status_blocks(parse(build_dsn(failure_job(result), ORIGINAL, CONTEXT)))
    assert block["Diagnostic-Code"] == "smtp; 554 5.7.1 no"


def test_lifetime_expired_is_failed_with_4_4_7() -> None:
    expired = RecipientResult(
        recipient="bob@remote.test",
        action="failed",
        status="4.4.7",
        diagnostic="421 4.3.2 try again later",
        remote_mta="mx.remote.test",
    )
    dsn = parse(build_dsn(failure_job(expired), ORIGINAL, CONTEXT))
    [_, block] = status_blocks(dsn)
    assert block["Action"] == "failed"
    assert block["Status"] == "4.4.7"
    assert block["Diagnostic-Code"] == "smtp; 421 4.3.2 try again later"
    assert all_failures(dsn)[1] == {b"bob@remote.test"}


def test_delay_warning() -> None:
    waiting = RecipientResult(
        recipient="bob@remote.test",
        action="delayed",
        status="4.4.1",
        diagnostic="",
        remote_mta="",
    )
    job = BounceJob(
        queue_id="QID1",
        sender="alice@example.org",
        accepted_at=ACCEPTED_AT,
        kind="delay",
        results=[waiting],
    )
    dsn = parse(build_dsn(job, ORIGINAL, CONTEXT))
    assert dsn["Subject"] == "Delayed Mail (still being retried)"
    [_, block] = status_blocks(dsn)
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.4.1"
    assert block["Diagnostic-Code"] is None
    until = email.utils.parsedate_to_datetime(block["Will-Retry-Until"]).timestamp()
    assert until == ACCEPTED_AT + LIFETIME
    text = dsn.get_payload(0)
    assert isinstance(text, Message)
    body = text.get_payload()
    assert isinstance(body, str)
    assert "THIS IS A WARNING ONLY" in body
    assert "more than 5 hours" in body
    assert "until it is 5 days old" in body
    temporary, permanent = all_failures(dsn)
    assert temporary == {b"bob@remote.test"}
    assert permanent == frozenset()


def test_human_part_names_recipients_and_the_remote_reply() -> None:
    dsn = parse(build_dsn(failure_job(rejected()), ORIGINAL, CONTEXT))
    text = dsn.get_payload(0)
    assert isinstance(text, Message)
    assert text.get_content_type() == "text/plain"
    body = " ".join(str(text.get_payload()).split())
    assert "This is the mail system at host mx.staffetta.test." in body
    assert f"<bob@remote.test>: host mx.remote.test said: {REMOTE_REPLY}" in body


def test_original_headers_are_returned_without_the_body() -> None:
    dsn = parse(build_dsn(failure_job(rejected()), ORIGINAL, CONTEXT))
    headers = dsn.get_payload(2)
    assert isinstance(headers, Message)
    returned = str(headers.get_payload())
    assert "Subject: quarterly figures" in returned
    assert "Message-ID: <orig-1@example.org>" in returned
    assert "secret body" not in returned
    reparsed = email.message_from_string(returned)
    assert reparsed["Subject"] == "quarterly figures"


def test_original_headers_with_bare_lf_and_no_body() -> None:
    assert original_headers(b"Subject: a\nFrom: b@c\n") == b"Subject: a\r\nFrom: b@c\r\n"
    assert original_headers(b"Subject: a\r\n\r\nbody\n") == b"Subject: a\r\n"
    assert original_headers(b"\r\nbody only\r\n") == b""


def test_invalid_status_falls_back_to_a_generic_code() -> None:
    result = RecipientResult(recipient="bob@remote.test", action="failed", status="bogus")
    [_, block] = status_blocks(parse(build_dsn(failure_job(result), ORIGINAL, CONTEXT)))
    assert block["Status"] == "5.0.0"


@pytest.mark.parametrize("sender", ["", "<>", " "])
def test_null_sender_is_never_bounced(sender: str) -> None:
    assert why_dropped(failure_job(rejected(), sender=sender)) == "null_sender"


def test_job_without_reportable_recipients_is_dropped() -> None:
    delivered = RecipientResult(recipient="bob@remote.test", action="delivered", status="2.0.0")
    assert why_dropped(failure_job()) == "no_recipients"
    assert why_dropped(failure_job(delivered)) == "no_recipients"
    assert why_dropped(failure_job(rejected())) is None


def why_dropped(job: BounceJob) -> str | None:
    """``drop_reason`` as the worker asks it: with the job's reported recipients."""
    return drop_reason(job, reported_results(job))


def test_fold() -> None:
    assert fold("Status", "5.1.1") == "Status: 5.1.1"
    folded = fold("Diagnostic-Code", "smtp; " + " ".join(["word"] * 40))
    lines = folded.split("\r\n")
    assert len(lines) > 1
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])
    assert " ".join(folded.split()) == "Diagnostic-Code: smtp; " + " ".join(["word"] * 40)
    long_word = "x" * 100
    assert fold("A", long_word) == f"A: {long_word}"


def test_format_date_is_rfc5322() -> None:
    assert format_date(ACCEPTED_AT) == "Mon, 21 Sep 2026 14:13:20 +0000"
    assert email.utils.parsedate_to_datetime(format_date(ACCEPTED_AT)).timestamp() == ACCEPTED_AT


def test_a_recipient_is_reported_once() -> None:
    again = rejected("BOB@Remote.Test")
    dsn = parse(build_dsn(failure_job(rejected(), again), ORIGINAL, CONTEXT))
    assert [b["Final-Recipient"] for b in status_blocks(dsn)[1:]] == ["rfc822; bob@remote.test"]


def test_delay_headers_part_is_described_as_delayed() -> None:
    job = BounceJob(
        queue_id="QID1",
        sender="alice@example.org",
        accepted_at=ACCEPTED_AT,
        kind="delay",
        results=[RecipientResult(recipient="bob@remote.test", action="delayed", status="4.4.1")],
    )
    dsn = parse(build_dsn(job, ORIGINAL, CONTEXT))
    descriptions = [p["Content-Description"] for p in dsn.get_payload() if isinstance(p, Message)]
    assert descriptions == ["Notification", "Delayed-Mail Report", "Delayed Message Headers"]


def test_remote_mta_field_names_the_host_and_the_text_keeps_the_address() -> None:
    result = rejected().model_copy(update={"remote_mta": "mx1.remote.test[127.0.0.2]"})
    dsn = parse(build_dsn(failure_job(result), ORIGINAL, CONTEXT))
    [_, block] = status_blocks(dsn)
    assert block["Remote-MTA"] == "dns; mx1.remote.test"
    text = dsn.get_payload(0)
    assert isinstance(text, Message)
    assert "host mx1.remote.test[127.0.0.2] said: 550 5.1.1" in " ".join(
        str(text.get_payload()).split()
    )
    assert mta_name("[127.0.0.3]") == "[127.0.0.3]"
    assert mta_name("smarthost.test") == "smarthost.test"
