"""``--cpu-profile``: each Staffetta service under cProfile with a CPU-time clock.

py-spy samples wall time, and on this 2-core VM a process that is waiting for a
core in a system call is caught there far more often than its CPU use warrants
(see the README here). cProfile timed with ``time.process_time`` counts only the
CPU a process spends, by function and with call counts. It slows Python code by
about three times, the more so where calls are many and small, so read its
numbers as shares and call counts per message, not as costs: CPU seconds per
message come from the plain runs.

The services run as ``python -m bench.cpu_profile OUT.prof SERVICE``; a service
writes its profile when it stops (SIGTERM). ``run (asyncio/runners.py)`` holds
the event loop's own time: uvloop is C, so its polling and socket reads count
there. The run is a single smtp-source run of ``--count`` messages after the
warm-up; the summary lists, per service, the functions with the most own time
and our own functions by inclusive time, both per message.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from bench.compare import ComparePlan, serving
from bench.source import SourcePlan, run_source
from bench.systems import Staffetta
from tests.support.stack import ServiceProcess, Stack

OURS = "/services/"
REPOSITORY = f"{Path(__file__).resolve().parents[1]}/"


class CpuProfiledProcess(ServiceProcess):
    """A service started under cProfile, its profile written to ``profile_path`` on exit."""

    profile_path: Path = Path("service.prof")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.cpu_profile", str(self.profile_path), self.name]


class CpuProfiledStack(Stack):
    """The harness's stack with every service under cProfile, profiles in ``profile_dir``."""

    profile_dir: Path = Path(".")

    def _make(self, name: str, index: int) -> ServiceProcess:
        made = super()._make(name, index)
        process = CpuProfiledProcess(made.name, made.http_port, made.env, made.log_path)
        process.profile_path = self.profile_dir / f"{name}-{index}.prof"
        return process


class CpuProfiledStaffetta(Staffetta):
    name = "staffetta-cpu-profile"

    def __init__(self, profile_dir: Path, **options: Any) -> None:
        super().__init__(**options)
        self.profile_dir = profile_dir

    def make_stack(self, extra_env: dict[str, str]) -> Stack:
        stack = self._new_stack(CpuProfiledStack, extra_env)
        assert isinstance(stack, CpuProfiledStack)
        stack.profile_dir = self.profile_dir
        return stack


def _label(function: tuple[str, int, str]) -> str:
    filename, line, name = function
    for marker in ("site-packages/", "/lib/python3.11/", REPOSITORY):
        _, found, tail = filename.partition(marker)
        if found:
            filename = tail
            break
    return f"{name} ({filename}:{line})" if line else name


def summarise(path: Path, messages: int, top: int = 15) -> dict[str, Any]:
    """Per message: the top functions by own time, and ours (``services/``) inclusive."""
    stats: Any = pstats.Stats(str(path))
    rows = stats.stats  # function -> (calls, primitive calls, own time, inclusive time, callers)
    total = sum(row[2] for row in rows.values())
    by_own = sorted(rows.items(), key=lambda item: item[1][2], reverse=True)[:top]
    ours = [item for item in rows.items() if OURS in item[0][0]]
    by_inclusive = sorted(ours, key=lambda item: item[1][3], reverse=True)[:top]

    def line(item: tuple[tuple[str, int, str], tuple[Any, ...]], column: int) -> dict[str, Any]:
        function, row = item
        return {
            "function": _label(function),
            "us_per_message": 1e6 * row[column] / messages,
            "calls_per_message": row[0] / messages,
        }

    return {
        "cpu_seconds": total,
        "calls_per_message": stats.total_calls / messages,
        "own": [line(item, 2) for item in by_own],
        "ours_inclusive": [line(item, 3) for item in by_inclusive],
    }


def measure(plan: ComparePlan, size: int, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    system = CpuProfiledStaffetta(
        folder,
        delivery_replicas=plan.delivery_replicas,
        route=plan.route,
        log_level=plan.log_level,
    )
    with serving(system) as sink:
        warm = run_source(
            SourcePlan(system.host, system.port, plan.warmup, size, plan.sessions, tag="warm"),
            plan.timeout,
        )
        sink.wait_for("warm", warm.accepted, plan.timeout, system.failure)
        started = time.monotonic()
        run = run_source(
            SourcePlan(system.host, system.port, plan.count, size, plan.sessions), plan.timeout
        )
        delivered = sink.wait_for("user", run.accepted, plan.timeout, system.failure)
        seconds = time.monotonic() - started
    # The services wrote their profiles as they stopped (on leaving ``serving``).
    messages = max(1, warm.accepted + run.accepted)  # the profile covers the warm-up too
    return {
        "size": size,
        "messages": messages,
        "delivered": delivered,
        "seconds": seconds,
        "folder": str(folder),
        "services": {
            path.stem: summarise(path, messages) for path in sorted(folder.glob("*.prof"))
        },
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"cProfile (CPU clock, about 3x slower than a plain run: read shares, not costs), "
        f"{result['size']} bytes, {result['messages']} messages; profiles in {result['folder']}"
    ]
    for service, found in result["services"].items():
        lines.append(
            f"\n{service}: {found['cpu_seconds']:.2f} s profiled CPU, "
            f"{found['calls_per_message']:.0f} Python calls per message"
        )
        lines.append("  own time, us per message (calls per message):")
        lines += [
            f"    {row['us_per_message']:7.1f} ({row['calls_per_message']:5.1f})  {row['function']}"
            for row in found["own"]
        ]
        lines.append("  our functions, inclusive, us per message:")
        lines += [
            f"    {row['us_per_message']:7.1f} ({row['calls_per_message']:5.1f})  {row['function']}"
            for row in found["ours_inclusive"]
        ]
    return "\n".join(lines)


def run_cpu_profile_command(args: argparse.Namespace, plan: ComparePlan, stamp: str) -> int:
    from bench.cli import environment, write_json

    results = []
    for size in plan.sizes:
        result = measure(plan, size, args.output / f"cpu-profile-{stamp}" / str(size))
        print(report(result), flush=True)
        results.append(result)
    document = {"mode": "cpu-profile", "env": environment(), "results": results}
    print(f"JSON: {write_json(args.output, f'cpu-profile-{stamp}.json', document)}")
    return 0


def main(argv: list[str]) -> int:
    """``python -m bench.cpu_profile OUT.prof SERVICE``: one service under cProfile."""
    output, service = argv
    from services.cli import main as service_main

    # Import (and compile) the service before profiling: the profile is of the work.
    importlib.import_module("services.common.runner")
    importlib.import_module(f"services.{service}.service")
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        return service_main([service])
    finally:
        profiler.disable()
        profiler.dump_stats(output)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
