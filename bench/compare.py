"""The comparison: smtp-source -> {sink, Postfix -> sink, Staffetta -> sink}, alternated."""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.postfix import PostfixRelay
from bench.procstat import ProcSampler, find_pids
from bench.profiling import Profiler
from bench.results import summarise_run
from bench.sink import Sink
from bench.source import SourcePlan, run_source
from bench.systems import Ceiling, Staffetta, System

log = logging.getLogger("bench")


@dataclass(frozen=True)
class ComparePlan:
    count: int = 10_000
    sizes: tuple[int, ...] = (1024, 51_200)
    sessions: int = 20
    runs: int = 3
    systems: tuple[str, ...] = ("ceiling", "postfix", "staffetta")
    delivery_replicas: int = 1
    route: str = "mx"
    reuse_connections: bool = False
    warmup: int = 200
    timeout: float = 900.0
    profile_dir: Path | None = None
    log_level: str = "INFO"


def make_system(name: str, plan: ComparePlan) -> System:
    if name == "ceiling":
        return Ceiling()
    if name == "postfix":
        return PostfixRelay()
    if name == "staffetta" or name.startswith("staffetta-"):
        loop = name.partition("-")[2] or None  # staffetta-uvloop, staffetta-asyncio: A/B
        return Staffetta(
            delivery_replicas=plan.delivery_replicas,
            route=plan.route,
            log_level=plan.log_level,
            loop=loop,
        )
    raise ValueError(f"unknown system {name!r} (ceiling, postfix, staffetta[-uvloop|-asyncio])")


def schedule(plan: ComparePlan) -> list[tuple[int, int, str]]:
    """(repetition, size, system), alternating systems inside each repetition and size."""
    return [
        (repetition, size, system)
        for repetition in range(1, plan.runs + 1)
        for size in plan.sizes
        for system in plan.systems
    ]


@contextlib.contextmanager
def serving(system: System) -> Iterator[Sink]:
    """A fresh sink and ``system`` relaying to it; both stopped on the way out."""
    sink = Sink()
    try:
        sink.start()
        system.start(sink.host, sink.port)
        yield sink
    finally:
        system.stop()
        sink.stop()


def _warm(system: System, sink: Sink, plan: ComparePlan, size: int) -> None:
    if plan.warmup <= 0:
        return
    source = SourcePlan(system.host, system.port, plan.warmup, size, plan.sessions, tag="warm")
    warm = run_source(source, plan.timeout)
    sink.wait_for("warm", warm.accepted, plan.timeout, system.failure)


def run_one(
    name: str, size: int, plan: ComparePlan, profile_as: str | None = None
) -> dict[str, Any]:
    """One measured run on a fresh system and a fresh sink; never raises."""
    system = make_system(name, plan)
    try:
        with serving(system) as sink:
            return _measure(name, size, plan, system, sink, profile_as)
    except Exception as error:  # a broken system is reported, never fatal
        log.error("%s %s failed: %s", name, size, error)
        return {"system": name, "size": size, "error": f"{error}\n{traceback.format_exc()}"}


def _measure(
    name: str, size: int, plan: ComparePlan, system: System, sink: Sink, profile_as: str | None
) -> dict[str, Any]:
    _warm(system, sink, plan, size)
    own = system.groups()
    groups = {**own, "rabbitmq": find_pids("beam.smp"), "sink": [sink.pid]}
    staffetta = isinstance(system, Staffetta)
    system_groups = [*own, "rabbitmq"] if staffetta else list(own)
    profiler = None
    if profile_as and plan.profile_dir and isinstance(system, Staffetta):
        profiler = Profiler(plan.profile_dir / profile_as, system.pids())
        profiler.start()
    sampler = ProcSampler(groups)
    sampler.begin()
    source = SourcePlan(
        system.host,
        system.port,
        plan.count,
        size,
        plan.sessions,
        reuse_connections=plan.reuse_connections,
    )
    run = run_source(source, plan.timeout)
    sink.wait_for("user", run.accepted, plan.timeout, system.failure)
    usage = sampler.end()
    usage.cpu_seconds["source"] = run.cpu_seconds
    result = summarise_run(name, size, run, sink.times("user"), usage, system_groups)
    if profiler is not None:
        result["hotspots"] = {k: v.as_dict() for k, v in profiler.stop().items()}
    return result


def run_compare(plan: ComparePlan, progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every scheduled run, then (with a profile folder) one extra Staffetta run per size
    under py-spy, marked ``profiled`` and left out of the summary (py-spy costs CPU)."""
    results = []
    extra = [(plan.runs + 1, size, "staffetta") for size in plan.sizes]
    wanted = plan.profile_dir is not None and "staffetta" in plan.systems
    for repetition, size, name in schedule(plan) + (extra if wanted else []):
        profiled = repetition > plan.runs
        label = "profiled run" if profiled else f"run {repetition}/{plan.runs}"
        progress(f"{label}: {name}, {size} bytes x {plan.count}")
        result = run_one(name, size, plan, f"staffetta-{size}" if profiled else None)
        result["repetition"] = repetition
        result["load_average_1m"] = os.getloadavg()[0]  # other work on the machine
        result["profiled"] = profiled
        results.append(result)
        if "error" in result:
            progress(f"  failed: {result['error'].splitlines()[0]}")
        else:
            progress(
                f"  accepted {result['accepted']} delivered {result['delivered']}: "
                f"accept {result['accept_rate'] or 0:.0f}/s, "
                f"end-to-end {result['e2e_rate'] or 0:.0f}/s, "
                f"p50 {result['latency']['p50_ms'] or 0:.0f} ms "
                f"(load average {result['load_average_1m']:.1f})"
            )
    return results
