"""py-spy on each Staffetta process during a run, summarised as the top hotspots.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``),
leaf last, idle samples excluded. Self time is the leaf frame; "inclusive" counts
each function once per stack, so it shows which of our own functions lead to the cost.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FRAME_LINE = re.compile(r":\d+\)$")
ENTRY_FRAMES = ("(services/cli.py)", "(services/common/runner.py)")  # in every stack
LOOP_FILES = ("(asyncio/", "(selectors.py)")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def frame_name(frame: str) -> str:
    """``handle (services/x.py:12)`` -> ``handle (services/x.py)``; the path shortened."""
    frame = FRAME_LINE.sub(")", frame.strip())
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        head, found, tail = frame.partition(marker)
        if found:
            if marker.startswith("/lib/python3"):
                tail = "stdlib/" + tail.partition("/")[2]
            name = head.split(" (")[0]
            return f"{name} ({tail}"
    return frame


def parse_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([frame_name(f) for f in stack.split(";") if f], int(count)))
    return stacks


@dataclass(frozen=True)
class Hotspots:
    samples: int
    self_time: list[tuple[str, float]]  # function, share of samples
    own_inclusive: list[tuple[str, float]]  # our functions (services/), inclusive share
    loop_share: float  # self time in asyncio's loop and transports (socket syscalls included)

    def as_dict(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "event_loop_share": self.loop_share,
            "self": [{"function": f, "share": s} for f, s in self.self_time],
            "services_inclusive": [{"function": f, "share": s} for f, s in self.own_inclusive],
        }


def summarise(stacks: list[tuple[list[str], int]], top: int = 12) -> Hotspots:
    total = sum(count for _, count in stacks) or 1
    leaves: Counter[str] = Counter()
    own: Counter[str] = Counter()
    loop = 0
    for frames, count in stacks:
        # py-spy puts the thread name first; the leaf is last.
        real = [frame for frame in frames if "(" in frame]
        if real:
            leaves[real[-1]] += count
            loop += count if any(mark in real[-1] for mark in LOOP_FILES) else 0
        for name in {frame for frame in real if "(services/" in frame}:
            if not name.endswith(ENTRY_FRAMES):
                own[name] += count
    return Hotspots(
        samples=total,
        self_time=[(name, count / total) for name, count in leaves.most_common(top)],
        own_inclusive=[(name, count / total) for name, count in own.most_common(top)],
        loop_share=loop / total,
    )


class Profiler:
    """One ``py-spy record`` per named pid, stopped with SIGINT (it then writes its file)."""

    def __init__(self, folder: Path, pids: dict[str, int], rate: int = 100) -> None:
        self.folder = folder
        self.pids = pids
        self.rate = rate
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> bool:
        binary = py_spy()
        if binary is None:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            output = self.folder / f"{name}.txt"
            command = [binary, "record", "--pid", str(pid), "--format", "raw"]
            command += ["--rate", str(self.rate), "--nonblocking", "-o", str(output)]
            self.processes[name] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        return True

    def stop(self) -> dict[str, Hotspots]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        found: dict[str, Hotspots] = {}
        for name, process in self.processes.items():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            output = self.folder / f"{name}.txt"
            if output.exists():
                with output.open() as lines:
                    found[name] = summarise(parse_collapsed(lines))
        return found
