"""Postfix's smtp-source as the client, with the instant each message was accepted.

smtp-source cannot stamp a header per message, so the accept instant is taken from
its ``-c`` counter: it prints ``N\\r`` the moment the N-th DATA completes, and a reader
thread timestamps each number. With ``-N`` the recipient of the N-th RCPT is
``N<to>``, so the message the sink sees as number N is paired with the N-th accept.
The two orders differ by at most the number of parallel sessions, so each pairing is
off by at most ``sessions / rate`` seconds (in both directions; the medians stay
sound). The ceiling run (source -> sink, true latency ~0) shows that error floor.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourcePlan:
    host: str
    port: int
    count: int
    size: int
    sessions: int = 20
    tag: str = "user"
    domain: str = "bench.test"
    reuse_connections: bool = False

    def command(self) -> list[str]:
        command = [
            "smtp-source",
            "-c",
            "-N",
            *("-s", str(self.sessions)),
            *("-m", str(self.count)),
            *("-l", str(self.size)),
            *("-M", "source.test"),
            *("-f", "bench@source.test"),
            *("-t", f"{self.tag}@{self.domain}"),
        ]
        if self.reuse_connections:
            command.append("-d")
        return [*command, f"{self.host}:{self.port}"]


@dataclass
class SourceRun:
    started: float
    finished: float = 0.0
    accepted_at: list[float] = field(default_factory=list)  # index N-1: the N-th accept
    exit_code: int = 0
    cpu_seconds: float = 0.0
    stderr: str = ""

    @property
    def accepted(self) -> int:
        return len(self.accepted_at)


def parse_counter(buffer: bytes) -> tuple[list[int], bytes]:
    """Complete ``N\\r`` tokens in ``buffer`` and the unfinished rest."""
    *complete, rest = buffer.replace(b"\n", b"\r").split(b"\r")
    return [int(token) for token in complete if token.strip().isdigit()], rest


def _read_counter(stream: int, run: SourceRun) -> None:
    pending = b""
    while chunk := os.read(stream, 4096):
        now = time.time()
        numbers, pending = parse_counter(pending + chunk)
        for number in numbers:
            while len(run.accepted_at) < number:  # numbers are consecutive; be safe
                run.accepted_at.append(now)


def run_source(plan: SourcePlan, timeout: float) -> SourceRun:
    """Run smtp-source to completion; never raises on SMTP failures (see exit_code)."""
    run = SourceRun(started=time.time())
    process = subprocess.Popen(plan.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    reader = threading.Thread(
        target=_read_counter, args=(process.stdout.fileno(), run), daemon=True
    )
    reader.start()
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    run.finished = time.time()
    process.returncode = os.waitstatus_to_exitcode(status)
    run.exit_code = process.returncode
    run.cpu_seconds = usage.ru_utime + usage.ru_stime
    reader.join(10)
    run.stderr = process.stderr.read().decode(errors="replace")[-2000:]
    process.stdout.close()
    process.stderr.close()
    return run
