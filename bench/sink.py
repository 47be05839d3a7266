"""Postfix's smtp-sink as the remote MX, dumping each message so it can be counted and timed.

``smtp-sink -d DIR/`` writes one file per mail transaction. A harvester thread reads
the ``X-Rcpt-Args`` line of each finished file (the recipient carries smtp-source's
``-N`` sequence number, or the sweep client's own), keeps the file's modification time
as the delivery instant, and deletes the file. The dump folder lives in /dev/shm so
the sink's own disk writes never compete with the queues being measured.
Linux stamps mtimes with the coarse clock: delivery instants are up to ~4 ms early.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.net import free_port, wait_for_port

RCPT = re.compile(rb"^X-Rcpt-Args: <(\d+)([^@>]*)@", re.MULTILINE)
SETTLE = 0.25  # a dump file untouched this long is complete (loopback writes take < 1 ms)


def parse_dump(head: bytes) -> tuple[str, int] | None:
    """(tag, sequence number) of a dumped message: ``<17user@x>`` gives ("user", 17)."""
    match = RCPT.search(head)
    if match is None:
        return None
    return match.group(2).decode(), int(match.group(1))


class Sink:
    def __init__(
        self, host: str = "127.0.0.2", shm: Path = Path("/dev/shm"), user: str = "postfix"
    ) -> None:
        # Not 127.0.0.1: Staffetta (like Postfix) refuses an MX that is its own address.
        self.host = host
        self.port = free_port(host)
        self.user = user
        self.folder = Path(tempfile.mkdtemp(prefix="staffetta-bench-sink-", dir=shm))
        self.delivered: dict[str, dict[int, float]] = {}
        self.unparsed = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._harvest_loop, name="sink", daemon=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        command = ["smtp-sink", "-d", f"{self.folder}/", f"{self.host}:{self.port}", "256"]
        if os.geteuid() == 0:  # smtp-sink refuses to run as root without -u
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            command[1:1] = ["-u", self.user]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_for_port(self.port, 10, self.host):
            raise RuntimeError(f"smtp-sink did not listen: {self._stderr()}")
        self._thread.start()

    def _stderr(self) -> str:
        if self.process is None or self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode(errors="replace")

    def count(self, tag: str) -> int:
        with self._lock:
            return len(self.delivered.get(tag, {}))

    def times(self, tag: str) -> dict[int, float]:
        with self._lock:
            return dict(self.delivered.get(tag, {}))

    def wait_for(self, tag: str, count: int, timeout: float) -> bool:
        """Until ``count`` messages of ``tag`` arrived; False at the deadline (never raises)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(tag) >= count:
                return True
            time.sleep(0.05)
        return self.count(tag) >= count

    def _harvest_loop(self) -> None:
        while not self._stop.wait(0.05):
            self.harvest(settle=SETTLE)

    def harvest(self, settle: float) -> None:
        now = time.time()
        with os.scandir(self.folder) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    self._take(entry, now, settle)

    def _take(self, entry: os.DirEntry[str], now: float, settle: float) -> None:
        mtime = entry.stat().st_mtime
        if now - mtime < settle:
            return
        with open(entry.path, "rb") as dump:
            head = dump.read(4096)
        os.unlink(entry.path)
        found = parse_dump(head)
        with self._lock:
            if found is None:
                self.unparsed += 1
            else:
                self.delivered.setdefault(found[0], {})[found[1]] = mtime

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
