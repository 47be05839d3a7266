"""A test server that runs in a daemon thread with its own event loop, so it answers
the test's loop and service subprocesses alike.

A subclass implements ``_serve(stopped)``: bind, call ``self._ready.set()`` once it
listens, await ``stopped.wait()``, then close. ``start()`` waits for that readiness
(or re-raises what went wrong); ``stop()`` sets ``stopped`` and joins the thread.
Use it as ``with server:``, ``async with server:`` or ``start()`` / ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Self


class BackgroundLoop:
    #: The thread's name, and the server's name in start-up errors.
    thread_name = "test-loop"
    description = "test server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    async def _serve(self, stopped: asyncio.Event) -> None:
        raise NotImplementedError

    def _before_start(self) -> None:
        """Runs in the caller's thread before the loop thread starts."""

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._before_start()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{self.description} did not start")
        if self._error is not None:
            raise RuntimeError(f"{self.description} failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopped is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        await self._serve(self._stopped)
