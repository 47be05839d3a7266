"""The recipients and aliases files, re-read when they change (checked at most once a second)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from services.common.addressing import RecipientDirectory

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0

Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(paths: Iterable[Path | None]) -> Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            stat = os.stat(path) if path is not None else None
        except OSError:
            stat = None
        stamps.append(None if stat is None else (stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(stamps)


class ReloadingDirectory:
    """Hands out the current :class:`RecipientDirectory`; a bad rewrite keeps the last good one."""

    def __init__(
        self,
        local_domains: Iterable[str],
        recipients_file: Path | None,
        aliases_file: Path | None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._domains = tuple(local_domains)
        self._files = (recipients_file, aliases_file)
        self._now = now
        self._stamp = _stamp(self._files)
        self._directory = RecipientDirectory.load(self._domains, *self._files)
        self._checked = now()

    def current(self) -> RecipientDirectory:
        now = self._now()
        if now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            stamp = _stamp(self._files)
            if stamp != self._stamp:
                self._reload(stamp)
        return self._directory

    def _reload(self, stamp: Stamp) -> None:
        try:
            directory = RecipientDirectory.load(self._domains, *self._files)
        except (OSError, ValueError) as exc:
            log.warning(
                "recipients/aliases not reloaded",
                extra={"event": "directory_reload_failed", "error": str(exc)},
            )
            return
        self._directory, self._stamp = directory, stamp
        log.info("recipients/aliases reloaded", extra={"event": "directory_reloaded"})
