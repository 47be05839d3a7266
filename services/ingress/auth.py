"""Accounts for SMTP AUTH, and the per-address guard against password guessing.

Pure apart from reading the users file: no asyncio here. The adapter runs
:meth:`UserDirectory.verify` (bcrypt, deliberately slow) in a worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt

log = logging.getLogger(__name__)

# Checked against when the user is unknown, so that timing does not tell
# existing accounts from missing ones.
_DUMMY_HASH = bcrypt.hashpw(b"staffetta-no-such-user", bcrypt.gensalt(rounds=5))


def parse_users(text: str) -> dict[str, bytes]:
    """``user:hash`` lines as ``htpasswd -nbB`` writes them; ``#`` comments and blanks skipped."""
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not user or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            raise ValueError(f"users file line {number}: expected 'user:<bcrypt hash>'")
        # htpasswd writes the $2y$ variant; bcrypt computes the same hash as $2b$.
        users[user] = ("$2b$" + hashed[4:]).encode("ascii")
    return users


class UserDirectory:
    """The accounts of ``STAFFETTA_USERS_FILE``, reloaded when the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._users: dict[str, bytes] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._reload()

    @property
    def configured(self) -> bool:
        return self.path is not None

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            log.warning(
                "users file unreadable", extra={"event": "users_file_error", "error": str(exc)}
            )
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return
        try:
            users = parse_users(self.path.read_text())
        except (OSError, ValueError) as exc:
            # Keep the accounts we had: a half-written file must not lock everyone out.
            log.warning(
                "users file not reloaded", extra={"event": "users_file_error", "error": str(exc)}
            )
            return
        self._users, self._stamp = users, stamp
        log.info("users file loaded", extra={"event": "users_loaded", "accounts": len(users)})

    def verify(self, user: str, password: bytes) -> bool:
        """Does ``password`` match ``user``'s hash? (Thread-safe; slow on purpose.)"""
        with self._lock:
            self._reload()
            hashed = self._users.get(user)
        if hashed is None:
            bcrypt.checkpw(password, _DUMMY_HASH)
            return False
        try:
            return bcrypt.checkpw(password, hashed)
        except ValueError:
            return False


@dataclass(frozen=True)
class GuardSettings:
    max_failures: int = 5  # failed AUTH attempts per client address...
    window: float = 900.0  # ...within this many seconds lock the address out...
    lockout: float = 900.0  # ...for this long
    delay: float = 1.0  # pause before answering a failure, doubling per recent failure
    max_delay: float = 8.0


class AuthGuard:
    """Counts failed AUTH per client address: slows answers down, then locks out."""

    def __init__(self, settings: GuardSettings, now: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._now = now
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, address: str) -> bool:
        until = self._locked_until.get(address)
        if until is None:
            return False
        if self._now() >= until:
            del self._locked_until[address]
            return False
        return True

    SWEEP_ABOVE = 4096  # addresses tracked before forgetting the stale ones

    def _sweep(self, now: float) -> None:
        """Forget addresses whose failures are all out of the window, and ended lockouts."""
        horizon = now - self.settings.window
        for address in [a for a, times in self._failures.items() if times[-1] < horizon]:
            del self._failures[address]
        for address in [a for a, until in self._locked_until.items() if until <= now]:
            del self._locked_until[address]

    @property
    def tracked(self) -> int:
        return len(self._failures) + len(self._locked_until)

    def failure(self, address: str) -> float:
        """Record a failure; returns how long to wait before answering."""
        now = self._now()
        if self.tracked > self.SWEEP_ABOVE:
            self._sweep(now)
        recent = self._failures.setdefault(address, deque())
        recent.append(now)
        while recent and recent[0] < now - self.settings.window:
            recent.popleft()
        if len(recent) >= self.settings.max_failures:
            self._locked_until[address] = now + self.settings.lockout
            del self._failures[address]
        count = len(recent)
        return float(min(self.settings.delay * 2.0 ** max(count - 1, 0), self.settings.max_delay))

    def success(self, address: str) -> None:
        self._failures.pop(address, None)
