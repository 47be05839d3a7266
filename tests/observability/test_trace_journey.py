"""The journey core on lines written by the services' own JSON formatter."""

from __future__ import annotations

import logging

from services.common.logs import JsonFormatter
from services.tracing.journey import follow, outcomes, parse, parse_line, render


def line(service: str, event: str, queue_id: str, created: float, **extra: object) -> str:
    record = logging.LogRecord("test", logging.INFO, __file__, 1, event, (), None)
    record.created = created
    record.msecs = (created % 1) * 1000
    record.__dict__.update({"event": event, "queue_id": queue_id, **extra})
    return JsonFormatter(service).format(record)


def test_prefixes_and_noise_are_skipped() -> None:
    json_line = line("router", "routed", "Q1", 1000.0, jobs=1)
    assert parse_line(f"[pod/staffetta-router-abc/router] {json_line}") is not None
    assert parse_line(f"2026-11-28T20:00:00.000000000Z {json_line}") is not None
    assert parse_line("Traceback (most recent call last):") is None
    assert parse_line('{"not": "ours"}') is None
    assert parse_line("{broken json") is None


def test_job_ids_belong_to_their_message_and_equal_times_keep_pipeline_order() -> None:
    lines = [
        line("bounce", "dsn_queued", "Q1", 1000.5, dsn_queue_id="D1", kind="failure"),
        line("delivery", "failed", "Q1", 1000.5, recipient="a@x.test", route="relay"),
        line("delivery", "handler_error", "Q1.relay.x.test", 1000.4, error="boom"),
        line("ingress", "accepted", "Q1", 1000.0, sender="s@y.test", recipients=1),
        line("ingress", "accepted", "Q2", 1000.1, sender="other@y.test", recipients=1),
        line("router", "routed", "D1", 1000.6, jobs=1, local=1, relay=0),
    ]
    journey = follow(parse(lines), "Q1")
    assert [(e.service, e.event, e.queue_id) for e in journey] == [
        ("ingress", "accepted", "Q1"),
        ("delivery", "handler_error", "Q1.relay.x.test"),
        ("delivery", "failed", "Q1"),
        ("bounce", "dsn_queued", "Q1"),
        ("router", "routed", "D1"),
    ]
    assert follow(parse(lines), "Q2")[0].get("sender") == "other@y.test"
    assert follow(parse(lines), "NONE") == []


def test_a_deferred_recipient_is_shown_as_retrying() -> None:
    lines = [
        line("ingress", "accepted", "Q1", 1000.0, sender="s@y.test", recipients=1),
        line(
            "delivery",
            "deferred",
            "Q1",
            1001.0,
            recipient="a@x.test",
            route="relay",
            attempt=3,
            reply="4.4.1 from mx.x.test[127.0.0.9]: connection refused",
        ),
    ]
    entries = parse(lines)
    [state] = outcomes(follow(entries, "Q1"))
    assert (state.recipient, state.state) == ("a@x.test", "deferred")
    text = render(entries, "Q1")
    assert text[0] == "Q1"
    assert "deferred a@x.test (relay, attempt 3): 4.4.1 from mx.x.test" in text[2]
    assert text[-1].startswith("  a@x.test  deferred (retrying): 4.4.1")
