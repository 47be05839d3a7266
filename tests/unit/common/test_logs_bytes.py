"""JsonFormatter writes its lines without a dict and json.dumps; the bytes must not change.

The reference is the formatter's own fallback, ``_format_entry`` (the formatter as it
was: every line through json.dumps); the direct path must give the same text for the
same records, ordinary and odd. The fixed lines of test_logs.py pin the fields.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from services.common.logs import JsonFormatter


def reference(service: str, record: logging.LogRecord) -> str:
    """The line through json.dumps: the production fallback, on a formatter of its own
    (so its per-second time cache starts empty for every record)."""
    return JsonFormatter(service)._format_entry(record, record.getMessage())


class CountingFormatter(JsonFormatter):
    """Counts the records that took the fallback: those compare with themselves."""

    fallbacks = 0

    def _format_entry(self, record: logging.LogRecord, message: str) -> str:
        CountingFormatter.fallbacks += 1
        return super()._format_entry(record, message)


class Colour(enum.IntEnum):
    RED = 1


class Mode(enum.Enum):
    FAST = "fast"


class Ratio(float):
    def __repr__(self) -> str:
        return "Ratio(...)"


class Name(str):
    def __str__(self) -> str:
        return "Name(...)"


class Code(int):
    def __repr__(self) -> str:
        return "Code(...)"


ODD_TEXT = [
    "",
    "plain",
    'quote " and backslash \\',
    "new\nline\ttab\r\x00\x1f\x7f",
    "ünïcödé ✉ 中文 😀",
    "\ud800 lone surrogate",
    "\u2028\u2029",
    "</script>",
    "x" * 300,
]
ODD_VALUES: list[object] = [
    0,
    -1,
    2**70,
    True,
    False,
    None,
    0.0,
    -0.0,
    1.5,
    1e300,
    float("nan"),
    float("inf"),
    float("-inf"),
    Colour.RED,
    Mode.FAST,
    Ratio(2.5),
    Ratio(float("inf")),
    Name("named"),
    Code(7),
    b"bytes\xff",
    ["a", 1],
    {"k": "v"},
    ("t",),
    Path("/var/mail"),
    ValueError("broken"),
    object,
    *ODD_TEXT,
]


def make_record(rng: random.Random) -> logging.LogRecord:
    level = rng.choice([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, 5, 60])
    msg: object = rng.choice(["routed", "%s and %d", "100%% sure", *ODD_TEXT, Mode.FAST])
    args: tuple[object, ...] = ("x", 3) if msg == "%s and %d" else ()
    record = logging.LogRecord(
        rng.choice(["services.router.worker", "aio_pika", "ünï.logger", 'q"uote']),
        level,
        "",
        0,
        msg,
        args,
        None,
    )
    record.created = rng.choice([1_700_000_000.25, 1_700_000_000.999, 1_700_000_001.0])
    record.msecs = (record.created - int(record.created)) * 1000
    extras: dict[Any, object] = {}
    if rng.random() < 0.8:
        extras["event"] = rng.choice(["routed", *ODD_TEXT]) if rng.random() < 0.9 else 5
    if rng.random() < 0.8:
        queue_ids: list[object] = ["2Q3HWQZJB7GLZWFNQ", *ODD_TEXT, None, 7, ["Q"]]
        extras["queue_id"] = rng.choice(queue_ids) if rng.random() < 0.3 else "QID"
    names = ["jobs", "local", "error", "service", "time", "level", "logger", "message"]
    names += ["exception", "ünï", 'k"ey', "asctime", "taskName"]
    for _ in range(rng.randint(0, 6)):
        extras[rng.choice(names)] = rng.choice(ODD_VALUES)
    if rng.random() < 0.02:
        extras[42] = "a key that is no str"
    record.__dict__.update(extras)
    if rng.random() < 0.1:
        try:
            raise ValueError("ünï broken")
        except ValueError:
            record.exc_info = sys.exc_info()
    return record


@pytest.mark.parametrize("seed", range(4))
def test_lines_match_json_dumps_of_the_fields(seed: int) -> None:
    rng = random.Random(seed)
    CountingFormatter.fallbacks = 0
    for _ in range(2_000):
        record = make_record(rng)
        service = rng.choice(["router", "ünï-service"])
        assert CountingFormatter(service).format(record) == reference(service, record)
    # Most records take the direct path (about a quarter are odd enough for the fallback).
    assert CountingFormatter.fallbacks < 1_000


def test_one_formatter_keeps_giving_the_same_lines() -> None:
    rng = random.Random(99)
    formatter = JsonFormatter("router")
    for _ in range(2_000):
        record = make_record(rng)
        assert formatter.format(record) == reference("router", record)


def test_a_routed_line_from_the_logging_module() -> None:
    logger = logging.getLogger("services.router.worker.bytes_test")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(JsonFormatter("router"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        fields = {"event": "routed", "queue_id": "Q1", "jobs": 1, "local": 0, "relay": 1}
        logger.warning("routed", extra={**fields, "failed": 0})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = json.loads(lines[0])
    assert list(line) == [
        "time",
        "level",
        "service",
        "event",
        "queue_id",
        "message",
        "logger",
        "jobs",
        "local",
        "relay",
        "failed",
    ]
    assert line["level"] == "warning" and line["relay"] == 1 and line["service"] == "router"
