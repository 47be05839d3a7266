"""JSON logs: one object per line with ``service``, ``event`` and ``queue_id``.

Bodies and AUTH data are never passed to the logger; callers log ids and replies.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from json.encoder import encode_basestring as _quote  # a str as json.dumps(ensure_ascii=False)
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_FIELDS = ("time", "level", "service", "event", "queue_id", "message", "logger")
_NOT_EXTRA = frozenset(_STANDARD.union(_FIELDS))
_NOT_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}  # json.dumps's spelling


def _extra_json(value: object) -> str:
    """json.dumps of an extra field as the line keeps it: a number, bool, null or str()."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        text = float.__repr__(value)
        return _NOT_FINITE.get(text, text)
    return _quote(str(value))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

        self._second = -1
        self._second_text = ""
        self._level_and_service: dict[str, str] = {}  # levelname -> its JSON text

    def _timestamp(self, record: logging.LogRecord) -> str:
        # strftime once per second, not once per line: a busy service logs hundreds a second.
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """The line :meth:`_format_entry` would give, written without a dict and json.dumps.

        Records with an exception, or an ``event``/``queue_id`` that is not a str, or
        an extra keyed by something else than a str, take :meth:`_format_entry`.
        """
        message = record.getMessage()
        event = getattr(record, "event", message)
        queue_id = getattr(record, "queue_id", "")
        if record.exc_info or type(event) is not str or type(queue_id) is not str:
            return self._format_entry(record, message)
        level = self._level_and_service.get(record.levelname)
        if level is None:
            level = (
                f'"level": {_quote(record.levelname.lower())}, "service": {_quote(self._service)}'
            )
            self._level_and_service[record.levelname] = level
        parts = [
            f'{{"time": "{self._timestamp(record)}", {level}, "event": {_quote(event)}, '
            f'"queue_id": {_quote(queue_id)}, "message": {_quote(message)}, '
            f'"logger": {_quote(record.name)}'
        ]
        for key, value in record.__dict__.items():
            if key not in _NOT_EXTRA:
                if type(key) is not str:
                    return self._format_entry(record, message)
                parts.append(f"{_quote(key)}: {_extra_json(value)}")
        return ", ".join(parts) + "}"

    def _format_entry(self, record: logging.LogRecord, message: str) -> str:
        """Every record: the fields in a dict, written by json.dumps."""
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
