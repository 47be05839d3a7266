"""Enhanced status codes on aiosmtpd's own replies; the session table; account labels."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.ingress import replies
from services.ingress.metrics import OTHER_ACCOUNTS, IngressMetrics
from services.ingress.sessions import SessionTable


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("221 Bye", "221 2.0.0 Bye"),
        ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
        ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
        ("552 Error: Too much mail data", str(replies.MESSAGE_TOO_BIG)),
        ("500 Line too long (see RFC5321 4.5.3.1.6)", str(replies.LINE_TOO_LONG)),
        ("530 5.7.0 Authentication required", "530 5.7.0 Authentication required"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
        ("220 Ready to start TLS", "220 2.0.0 Ready to start TLS"),
        ("334 VXNlcm5hbWU6", "334 VXNlcm5hbWU6"),
        ("not a reply", "not a reply"),
    ],
)
def test_with_enhanced_code(raw: str, expected: str) -> None:
    assert replies.with_enhanced_code(raw) == expected


def test_reply_text() -> None:
    assert str(replies.queued("ABC")) == "250 2.0.0 Ok: queued as ABC"
    assert replies.queued("ABC").ok and not replies.RELAY_DENIED.ok


def test_session_table_limits_total_and_per_address() -> None:
    table = SessionTable(max_total=3, max_per_ip=2)
    assert table.open("a") and table.open("a")
    assert not table.open("a")
    assert table.open("b")
    assert not table.open("c")
    table.close("a")
    assert table.open("c")
    assert table.total == 3
    table.close("nobody")
    assert table.total == 3


def test_account_labels_are_bounded() -> None:
    metrics = IngressMetrics(CollectorRegistry(), account_limit=2)
    assert [metrics.account_label(user) for user in ("alice", "bob", "carol", "alice")] == [
        "alice",
        "bob",
        OTHER_ACCOUNTS,
        "alice",
    ]
    assert metrics.account_label(OTHER_ACCOUNTS) == OTHER_ACCOUNTS
    nobody = IngressMetrics(CollectorRegistry(), account_limit=0)
    assert nobody.account_label("alice") == OTHER_ACCOUNTS
