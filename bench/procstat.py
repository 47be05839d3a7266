"""CPU seconds and peak memory of process groups, read from /proc.

A group is a set of root pids and all their descendants. Its CPU time at an instant
is the sum of utime+stime+cutime+cstime over the live processes of the tree: when a
child exits and its parent reaps it, the child's time moves into the parent's
cutime/cstime, so the sum stays continuous (Postfix's master reaps every daemon it
spawned). The difference between two instants is the CPU the group used.

Memory: VmHWM (peak resident set) of each process, the highest seen per label
(``smtpd``, ``ingress``...), and the group's footprint: the highest sum of Pss
(proportional set size: shared pages split between the processes sharing them, so
forty Postfix daemons do not count libc forty times) over the group at one sample.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line (the command name may hold spaces and parentheses)."""
    head, _, tail = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = tail.split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    ticks = sum(int(value) for value in fields[11:15])
    return ProcStat(int(pid_text), comm, int(fields[1]), ticks)


def parse_status_kb(text: str, key: str) -> int:
    """A ``Key:   1234 kB`` line of /proc/<pid>/status, in kB (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def read_all() -> dict[int, ProcStat]:
    table: dict[int, ProcStat] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
    return table


def tree(table: Mapping[int, ProcStat], roots: Iterable[int]) -> list[ProcStat]:
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: list[ProcStat] = []
    pending = [pid for pid in roots if pid in table]
    seen: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(table[pid])
        pending.extend(children.get(pid, []))
    return found


def find_pids(comm: str) -> list[int]:
    return [stat.pid for stat in read_all().values() if stat.comm == comm]


def label_for(group: str, stat: ProcStat) -> str:
    """Python processes are named after their group (the service); others by command."""
    return group if stat.comm.startswith("python") else stat.comm


@dataclass
class Usage:
    """What one measured interval cost, per group."""

    cpu_seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    peak_total_pss_mb: dict[str, float] = field(default_factory=dict)


class ProcSampler:
    """Samples groups every ``interval`` seconds between ``begin()`` and ``end()``."""

    def __init__(self, groups: Mapping[str, list[int]], interval: float = 0.25) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.interval = interval
        self.usage = Usage()
        self._start_ticks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="procstat", daemon=True)

    def _ticks(self, table: Mapping[int, ProcStat]) -> dict[str, int]:
        return {
            name: sum(stat.ticks for stat in tree(table, roots))
            for name, roots in self.groups.items()
        }

    def begin(self) -> None:
        self._start_ticks = self._ticks(read_all())
        self._thread.start()

    def end(self) -> Usage:
        self._stop.set()
        self._thread.join(10)
        table = read_all()
        self._sample(table)
        ticks = self._ticks(table)
        self.usage.cpu_seconds = {
            name: (ticks[name] - self._start_ticks.get(name, 0)) / CLOCK_TICKS
            for name in self.groups
        }
        return self.usage

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(read_all())

    def _sample(self, table: Mapping[int, ProcStat]) -> None:
        for name, roots in self.groups.items():
            peaks = self.usage.peak_rss_mb.setdefault(name, {})
            total_kb = 0
            for stat in tree(table, roots):
                try:
                    status = (PROC / str(stat.pid) / "status").read_text()
                    rollup = (PROC / str(stat.pid) / "smaps_rollup").read_text()
                except OSError:
                    continue
                total_kb += parse_status_kb(rollup, "Pss")
                label = label_for(name, stat)
                hwm = parse_status_kb(status, "VmHWM") / 1024.0
                peaks[label] = max(peaks.get(label, 0.0), hwm)
            previous = self.usage.peak_total_pss_mb.get(name, 0.0)
            self.usage.peak_total_pss_mb[name] = max(previous, total_kb / 1024.0)
