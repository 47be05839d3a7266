"""Durations as the contract writes them: ``30s``, ``5m``, ``1h30m``, ``5d``."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Return seconds for a duration string; a bare number means seconds.

    ``0`` is allowed (it disables features such as delay warnings).
    """
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    position = 0
    total = 0.0
    for match in _PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(value):
        raise ValueError(f"invalid duration {text!r} (write e.g. 30s, 5m, 1h30m, 5d)")
    return total


def format_duration(seconds: float) -> str:
    """Inverse of :func:`parse_duration` for whole seconds: ``5400`` -> ``1h30m``."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    remaining = round(seconds)
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
