"""Tables read from files and re-read when they change (checked at most once a second).

:class:`ReloadingTable` is the mechanism; :class:`ReloadingDirectory` (recipients and
aliases, read by the ingress and the router alike), the ingress's sender login map and
sending limits use it, so an edited file takes effect without a restart.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from services.common.addressing import RecipientDirectory

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0

Stamp = tuple[tuple[int, int, int] | None, ...]
T = TypeVar("T")


def file_stamp(paths: Iterable[Path | None]) -> Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            stat = os.stat(path) if path is not None else None
        except OSError:
            stat = None
        stamps.append(None if stat is None else (stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(stamps)


class ReloadingTable(Generic[T]):
    """Hands out the current value loaded from ``files``; a bad rewrite keeps the last good one.

    ``load`` reads the files and raises :class:`OSError` or :class:`ValueError` when
    they are unusable; at construction that error propagates (a bad file stops the
    start), afterwards it is logged as ``<name>_reload_failed``.
    """

    def __init__(
        self,
        files: tuple[Path | None, ...],
        load: Callable[[], T],
        name: str,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files = files
        self._load = load
        self._name = name
        self._now = now
        self._stamp = file_stamp(self._files)
        self._value = load()
        self._checked = now()

    def current(self) -> T:
        now = self._now()
        if now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            stamp = file_stamp(self._files)
            if stamp != self._stamp:
                self._reload(stamp)
        return self._value

    def _reload(self, stamp: Stamp) -> None:
        try:
            value = self._load()
        except (OSError, ValueError) as exc:
            log.warning(
                f"{self._name} not reloaded",
                extra={"event": f"{self._name}_reload_failed", "error": str(exc)},
            )
            return
        self._value, self._stamp = value, stamp
        log.info(f"{self._name} reloaded", extra={"event": f"{self._name}_reloaded"})


class ReloadingDirectory(ReloadingTable[RecipientDirectory]):
    """The current :class:`RecipientDirectory` (local domains, recipients and aliases files)."""

    def __init__(
        self,
        local_domains: Iterable[str],
        recipients_file: Path | None,
        aliases_file: Path | None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        domains = tuple(local_domains)
        super().__init__(
            (recipients_file, aliases_file),
            lambda: RecipientDirectory.load(domains, recipients_file, aliases_file),
            "directory",
            now,
        )
