"""Service processes started by a test (``asyncio.create_subprocess_exec``)."""

from __future__ import annotations

import asyncio
import subprocess


async def kill_if_running(process: asyncio.subprocess.Process) -> None:
    """The clean-up of a test that may fail before it stops its process: kill and reap."""
    if process.returncode is None:
        process.kill()
        await process.wait()


def terminate_popen(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """Stop a helper process: SIGTERM, ``grace`` seconds to exit, then SIGKILL; always reaped."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
