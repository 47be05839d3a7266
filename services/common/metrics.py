"""Small helpers for the services' Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter


def export_at_zero(counter: Counter, label: str, values: Iterable[str]) -> None:
    """Create the series of every known ``label`` value now, at zero.

    A series appears only once it is first touched; exporting it from the start
    lets dashboards and ``rate()`` see a 0 instead of nothing.
    """
    for value in values:
        counter.labels(**{label: value})
