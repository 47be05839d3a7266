"""Service processes started by a test (``asyncio.create_subprocess_exec``)."""

from __future__ import annotations

import asyncio


async def kill_if_running(process: asyncio.subprocess.Process) -> None:
    """The clean-up of a test that may fail before it stops its process: kill and reap."""
    if process.returncode is None:
        process.kill()
        await process.wait()
