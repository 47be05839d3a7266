"""JSON log lines: the fields every line carries, and the per-second time cache."""

from __future__ import annotations

import json
import logging
import time

from services.common.logs import JsonFormatter


def record(created: float, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("services.router.worker", logging.INFO, "", 0, "routed", (), None)
    entry.created, entry.msecs = created, (created - int(created)) * 1000
    entry.__dict__.update(extra)
    return entry


def test_a_line_has_service_event_queue_id_and_the_extras() -> None:
    line = json.loads(
        JsonFormatter("router").format(
            record(1_700_000_000.25, event="routed", queue_id="Q1", jobs=2, route="relay")
        )
    )
    assert line == {
        "time": "2023-11-14T22:13:20.250Z",
        "level": "info",
        "service": "router",
        "event": "routed",
        "queue_id": "Q1",
        "message": "routed",
        "logger": "services.router.worker",
        "jobs": 2,
        "route": "relay",
    }


def test_the_time_follows_each_second_and_millisecond() -> None:
    formatter = JsonFormatter("ingress")
    stamps = [
        json.loads(formatter.format(record(moment)))["time"]
        for moment in (1_700_000_000.125, 1_700_000_000.75, 1_700_000_001.5, 1_700_000_000.5)
    ]
    assert stamps == [
        "2023-11-14T22:13:20.125Z",
        "2023-11-14T22:13:20.750Z",
        "2023-11-14T22:13:21.500Z",
        "2023-11-14T22:13:20.500Z",
    ]
    now = time.time()
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    assert json.loads(formatter.format(record(now)))["time"].startswith(expected)


def test_an_exception_is_kept_with_its_traceback() -> None:
    try:
        raise ValueError("broken")
    except ValueError as error:
        entry = record(1_700_000_000.0)
        entry.exc_info = (ValueError, error, error.__traceback__)
    line = json.loads(JsonFormatter("bounce").format(entry))
    assert "ValueError: broken" in line["exception"]
