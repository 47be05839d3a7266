"""A cache of idle SMTP sessions, so the next message to the same host skips
connect, EHLO, STARTTLS and AUTH (Postfix's connection cache, RSET between messages).

A session is kept for ``keep`` seconds of idleness and at most ``max_uses``
messages; a reaper task closes expired ones with QUIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosmtplib

PoolKey = tuple[str, str, int, str, str]  # host, address, port, TLS mode, username


@dataclass
class Connection:
    client: aiosmtplib.SMTP
    tls: bool
    uses: int = 0
    idle_since: float = 0.0


class ConnectionPool:
    def __init__(
        self,
        keep: float,
        *,
        max_uses: int = 100,
        quit_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keep = keep
        self.max_uses = max_uses
        self._quit_timeout = quit_timeout
        self._clock = clock
        self._idle: dict[PoolKey, list[Connection]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.keep > 0

    def idle_count(self) -> int:
        return sum(len(entries) for entries in self._idle.values())

    def idle(self) -> list[Connection]:
        return [connection for entries in self._idle.values() for connection in entries]

    def take(self, key: PoolKey) -> Connection | None:
        """The most recently used idle session to ``key``, if one is still fresh."""
        self.prune()
        entries = self._idle.get(key)
        if not entries:
            return None
        connection = entries.pop()
        if not entries:
            del self._idle[key]
        return connection

    def give(self, key: PoolKey, connection: Connection) -> None:
        """Keep a session that just finished a transaction cleanly (or close it)."""
        connection.uses += 1
        if not self.enabled or connection.uses >= self.max_uses:
            self._quit_later(connection)
            return
        connection.idle_since = self._clock()
        self._idle.setdefault(key, []).append(connection)

    def prune(self) -> None:
        """Close sessions idle for longer than ``keep``."""
        deadline = self._clock() - self.keep
        for key in list(self._idle):
            fresh = []
            for connection in self._idle[key]:
                if connection.idle_since < deadline or not connection.client.is_connected:
                    self._quit_later(connection)
                else:
                    fresh.append(connection)
            if fresh:
                self._idle[key] = fresh
            else:
                del self._idle[key]

    async def reap_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.prune()

    async def close(self) -> None:
        for entries in self._idle.values():
            for connection in entries:
                self._quit_later(connection)
        self._idle.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _quit_later(self, connection: Connection) -> None:
        task = asyncio.get_running_loop().create_task(self._quit(connection))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _quit(self, connection: Connection) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            if connection.client.is_connected:
                await connection.client.quit(timeout=self._quit_timeout)
        connection.client.close()
