"""Concurrent-session accounting: in total and per client address (pure)."""

from __future__ import annotations

from collections import Counter


class SessionTable:
    """Counts open sessions; :meth:`open` says whether one more may start."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self._max_total = max_total
        self._max_per_ip = max_per_ip
        self._per_ip: Counter[str] = Counter()
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def open(self, address: str) -> bool:
        """Count a new session from ``address``; False (and not counted) past a limit."""
        if self._total >= self._max_total or self._per_ip[address] >= self._max_per_ip:
            return False
        self._total += 1
        self._per_ip[address] += 1
        return True

    def close(self, address: str) -> None:
        if self._per_ip[address] <= 0:
            return
        self._total -= 1
        self._per_ip[address] -= 1
        if not self._per_ip[address]:
            del self._per_ip[address]
