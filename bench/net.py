"""Loopback ports: wait for a listener (pick a free one: ``tests.support.stack.free_port``)."""

from __future__ import annotations

import socket
import time


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False
