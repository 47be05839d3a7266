"""JsonFormatter writes its lines without a dict and json.dumps; the bytes must not change.

The reference below is the formatter as it was (every line through json.dumps); both
format the same records, ordinary and odd, and must give the same text.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from services.common.logs import JsonFormatter

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class ReferenceFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(record.created)))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "event": getattr(record, "event", message),
            "queue_id": getattr(record, "queue_id", ""),
            "message": message,
            "logger": record.name,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = (
                    value if isinstance(value, (int, float, bool, type(None))) else str(value)
                )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


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
    for _ in range(2_000):
        record = make_record(rng)
        service = rng.choice(["router", "ünï-service"])
        expected = ReferenceFormatter(service).format(record)
        assert JsonFormatter(service).format(record) == expected


def test_one_formatter_keeps_giving_the_same_lines() -> None:
    rng = random.Random(99)
    formatter, reference = JsonFormatter("router"), ReferenceFormatter("router")
    for _ in range(2_000):
        record = make_record(rng)
        assert formatter.format(record) == reference.format(record)


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
