"""``python -m bench``: the comparison (default) or ``--sweep``; prints a table, writes JSON.

Never fails on speed: the exit status is 0 unless the arguments are wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.broker import CHART_SCHEDULERS, broker_schedulers
from bench.compare import ComparePlan, run_compare
from bench.results import aggregate, ratios, table

RESULTS = Path(__file__).parent / "results"


def parse_size(text: str) -> int:
    text = text.strip().lower()
    for suffix, unit in (("k", 1024), ("m", 1024 * 1024)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * unit)
    return int(text)


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Staffetta vs Postfix vs the smtp-source->smtp-sink ceiling.",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 messages, 1 run, 100 warm-up")
    parser.add_argument("--count", type=int, help="messages per run (default 10000)")
    parser.add_argument("--sizes", default="1k,50k", help="payload sizes, e.g. 1k,50k")
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions")
    parser.add_argument("--runs", type=int, help="runs per system and size (default 3)")
    parser.add_argument("--systems", help="default ceiling,postfix,staffetta (sweep: staffetta)")
    parser.add_argument("--delivery-replicas", type=int, default=1)
    parser.add_argument("--route", choices=("mx", "smarthost"), default="mx")
    parser.add_argument(
        "--reuse-connections", action="store_true", help="smtp-source -d: many messages a session"
    )
    parser.add_argument("--warmup", type=int, help="messages sent before measuring (default 200)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait per phase")
    parser.add_argument("--profile", action="store_true", help="py-spy the Staffetta services")
    parser.add_argument("--log-level", default="INFO", help="STAFFETTA_LOG_LEVEL of the services")
    parser.add_argument(
        "--broker-schedulers",
        type=int,
        default=CHART_SCHEDULERS,
        help="RabbitMQ's online Erlang schedulers during the bench, as the chart sets them "
        f"(default {CHART_SCHEDULERS}; 0 leaves the broker as it is)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for the JSON")
    parser.add_argument(
        "--cpu-profile",
        action="store_true",
        help="instead: one Staffetta run per size with every service under cProfile (CPU clock)",
    )
    parser.add_argument(
        "--big-message",
        metavar="SIZE",
        help="instead: relay one message of SIZE (e.g. 25m), report each service's peak RSS",
    )
    sweep = parser.add_argument_group("sweep (--sweep)")
    sweep.add_argument("--sweep", action="store_true", help="latency per offered load step")
    sweep.add_argument("--rates", default="25,50,100,200,400", help="messages per second")
    sweep.add_argument("--step-seconds", type=float, default=10.0)
    sweep.add_argument("--connections", type=int, default=20, help="sweep client sessions")
    sweep.add_argument("--size", default="1k", help="sweep payload size")
    return parser


def compare_plan(args: argparse.Namespace, stamp: str) -> ComparePlan:
    quick = bool(args.quick)
    return ComparePlan(
        count=args.count or (2000 if quick else 10_000),
        sizes=tuple(parse_size(s) for s in parse_list(args.sizes)),
        sessions=args.sessions,
        runs=args.runs or (1 if quick else 3),
        systems=tuple(parse_list(args.systems or "ceiling,postfix,staffetta")),
        delivery_replicas=args.delivery_replicas,
        route=args.route,
        reuse_connections=args.reuse_connections,
        warmup=args.warmup if args.warmup is not None else (100 if quick else 200),
        timeout=args.timeout,
        profile_dir=(args.output / f"profile-{stamp}") if args.profile else None,
        log_level=args.log_level,
    )


def environment() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "python": platform.python_version(),
        # The services run on this interpreter (sys.executable): its build matters.
        "python_executable": os.path.realpath(sys.executable),
        "python_build": sys.version,
        "cpus": len(os.sched_getaffinity(0)),
        "load_average": list(os.getloadavg()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(folder: Path, name: str, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with broker_schedulers(args.broker_schedulers) as online:
        print(f"RabbitMQ's Erlang schedulers online: {online if online is not None else '?'}")
        return run_mode(args, stamp, online)


def run_mode(args: argparse.Namespace, stamp: str, broker_online: int | None) -> int:
    if args.sweep:
        from bench.sweep import run_sweep_command

        return run_sweep_command(args, stamp)
    plan = compare_plan(args, stamp)
    if args.cpu_profile:
        from bench.cpu_profile import run_cpu_profile_command

        return run_cpu_profile_command(args, plan, stamp)
    if args.big_message:
        from bench.big_message import run_big_message_command

        return run_big_message_command(args, plan, stamp)
    env = {**environment(), "broker_schedulers_online": broker_online}
    document: dict[str, Any] = {"mode": "compare", "plan": plan.__dict__, "env": env}
    # Which CPython runs the services: its build (PGO/LTO or not) moves the result.
    print(f"Staffetta's services run on Python {env['python']} ({env['python_executable']})")
    runs = run_compare(plan)
    rows = aggregate(runs)
    ratio_rows = ratios(rows)
    variants = {row["system"] for row in rows if row["system"].startswith("staffetta-")}
    loop_ratios = {name: ratios(rows, name, "staffetta") for name in sorted(variants)}
    document.update(
        {"runs": runs, "summary": rows, "ratios": ratio_rows, "loop_ratios": loop_ratios}
    )
    path = write_json(args.output, f"compare-{stamp}.json", document)
    print()
    print(table(rows, ratio_rows))
    for name, found in loop_ratios.items():
        for entry in found:
            parts = [f"{k} x{v:.2f}" for k, v in entry.items() if k != "size" and v is not None]
            print(f"{name} / staffetta, {entry['size']} bytes: " + ", ".join(parts))
    hotspots_note(runs)
    print(f"\nJSON: {path}")
    return 0


def hotspots_note(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        for service, spots in (run.get("hotspots") or {}).items():
            print(
                f"\nhotspots {service} ({run['size']} bytes, {spots['samples']} samples, "
                f"{spots['event_loop_share']:.0%} in the asyncio loop and socket calls):"
            )
            for entry in spots["self"][:6]:
                print(f"  self {entry['share']:6.1%}  {entry['function']}")
            for entry in spots["services_inclusive"][:6]:
                print(f"  incl {entry['share']:6.1%}  {entry['function']}")
