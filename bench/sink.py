"""Postfix's smtp-sink as the remote MX, dumping each message so it can be counted and timed.

``smtp-sink -d DIR/`` writes one file per mail transaction. A harvester thread reads
the ``X-Rcpt-Args`` line of each new file (the recipient carries smtp-source's ``-N``
sequence number, or the sweep client's own) to count arrivals. Files are kept until
the run ends: a file is created at MAIL and grows until the final ".", so its
modification time, read once everything has arrived and settled, is the instant
the message was delivered. The dump folder lives in /dev/shm so the sink's writes
never compete with the queues being measured (memory: count x size per run).
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
from collections.abc import Callable
from pathlib import Path

from bench.net import wait_for_port
from tests.support.processes import terminate_popen
from tests.support.stack import free_port

RCPT = re.compile(rb"^X-Rcpt-Args: <(\d+)([^@>]*)@", re.MULTILINE)
SETTLE = 0.5  # after the last arrival, time for the final writes before reading mtimes


def parse_dump(head: bytes) -> tuple[str, int] | None:
    """(tag, sequence number) of a dumped message: ``<17user@x>`` gives ("user", 17)."""
    match = RCPT.search(head)
    if match is None:
        return None
    return match.group(2).decode(), int(match.group(1))


class SystemFailed(RuntimeError):
    """The system under test stopped being able to deliver during a run."""


class Sink:
    def __init__(
        self, host: str = "127.0.0.2", shm: Path = Path("/dev/shm"), user: str = "postfix"
    ) -> None:
        # Not 127.0.0.1: Staffetta (like Postfix) refuses an MX that is its own address.
        self.host = host
        self.port = free_port(host)
        self.user = user
        self.folder = Path(tempfile.mkdtemp(prefix="staffetta-bench-sink-", dir=shm))
        self.files: dict[str, dict[int, str]] = {}  # tag -> sequence number -> file name
        self._seen: set[str] = set()
        self._harvesting = threading.Lock()
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
        """Distinct sequence numbers of ``tag`` seen so far (a redelivery counts once)."""
        with self._lock:
            return len(self.files.get(tag, {}))

    def times(self, tag: str, settle: float = SETTLE) -> dict[int, float]:
        """Delivery instant per sequence number: the dump's mtime once it stopped growing."""
        time.sleep(settle)
        self.harvest()
        with self._lock:
            names = dict(self.files.get(tag, {}))
        found = {}
        for number, name in names.items():
            with contextlib.suppress(FileNotFoundError):
                found[number] = os.stat(self.folder / name).st_mtime
        return found

    def wait_for(
        self,
        tag: str,
        count: int,
        timeout: float,
        failure: Callable[[], str | None] = lambda: None,
    ) -> bool:
        """Until ``count`` messages of ``tag`` arrived; False at the deadline.

        Raises :class:`SystemFailed` as soon as ``failure()`` names a reason (a
        process of the system under test died), instead of waiting out the deadline.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(tag) >= count:
                return True
            reason = failure()
            if reason is not None:
                raise SystemFailed(reason)
            time.sleep(0.05)
        return self.count(tag) >= count

    def _harvest_loop(self) -> None:
        while not self._stop.wait(0.05):
            self.harvest()

    def harvest(self) -> None:
        """Name the new dump files whose recipient line has been written."""
        with self._harvesting:
            self._harvest()

    def _harvest(self) -> None:
        with os.scandir(self.folder) as entries:
            names = [entry.name for entry in entries if entry.name not in self._seen]
        for name in names:
            try:
                with open(self.folder / name, "rb") as dump:
                    head = dump.read(4096)
            except FileNotFoundError:
                continue
            found = parse_dump(head)
            if found is None:
                continue  # before RCPT: look again next time
            with self._lock:
                self._seen.add(name)
                self.files.setdefault(found[0], {}).setdefault(found[1], name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        terminate_popen(self.process, 10)
        shutil.rmtree(self.folder, ignore_errors=True)
