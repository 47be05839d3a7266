"""JSON logs: one object per line with ``service``, ``event`` and ``queue_id``.

Bodies and AUTH data are never passed to the logger; callers log ids and replies.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

        self._second = -1
        self._second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        # strftime once per second, not once per line: a busy service logs hundreds a second.
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": self._timestamp(record),
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


def configure_logging(service: str, level: str = "INFO") -> None:
    # Our lines carry none of the caller's file/line, thread or process fields, so the
    # logging module need not look them up for every record (the logging HOWTO's
    # "Optimization" section): that was a third of the cost of a line, several per message.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter (reconnect attempts, per-request lines) stays at warnings.
    for noisy in ("aio_pika", "aiormq", "uvicorn", "mail.log", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
