"""The ``staffetta`` command: one subcommand per service, plus ``up`` and ``check-config``."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from services.common.settings import ListenAddress, Settings, SettingsError, load_settings
from services.delivery import queue_admin
from services.tracing import command as trace

SERVICES = ("ingress", "router", "delivery", "bounce")


def _load_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"staffetta: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def run_service(name: str) -> int:
    settings = _load_or_exit()
    module = importlib.import_module(f"services.{name}.service")
    from services.common.runner import run

    return run(module.build(settings), settings)


def check_config() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    for key, value in settings.describe().items():
        print(f"{key}={value}")
    return 0


def up(delivery_replicas: int) -> int:
    """Run every service as a child process, each on its own HTTP port."""
    settings = _load_or_exit()
    base = settings.http_address
    plan = [*SERVICES[:2], *(["delivery"] * delivery_replicas), "bounce"]
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    print(f"staffetta up: SMTP on {settings.smtp_address}", flush=True)
    if settings.submission_address:
        print(f"staffetta up: submission on {settings.submission_address}", flush=True)
    for offset, name in enumerate(plan):
        http = ListenAddress(base.host, base.port + offset)
        env = {**os.environ, "STAFFETTA_HTTP_LISTEN": str(http)}
        child = subprocess.Popen([sys.executable, "-m", "services.cli", name], env=env)
        children.append((name, child))
        print(f"staffetta up: {name} (pid {child.pid}) HTTP on {http}", flush=True)

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for _, child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while any(child.poll() is None for _, child in children):
        for name, child in children:
            code = child.poll()
            if code not in (None, 0) and not stopping:
                print(
                    f"staffetta up: {name} exited with {code}; stopping the rest", file=sys.stderr
                )
                status = 1
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    return status if status else max((child.returncode or 0) for _, child in children)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="staffetta", description="Staffetta SMTP relay")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in SERVICES:
        commands.add_parser(name, help=f"run the {name} service in the foreground")
    run_all = commands.add_parser("up", help="run all four services as child processes")
    run_all.add_argument("--delivery-replicas", type=int, default=1, metavar="N")
    commands.add_parser("check-config", help="validate settings and print the effective values")
    queue_admin.add_commands(commands)  # `queue list|flush|delete`, `requeue-parked`
    trace.add_command(commands)  # `trace QUEUEID [--logs PATH...]`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in SERVICES:
        return run_service(args.command)
    if args.command in ("queue", "requeue-parked"):
        return queue_admin.run(args, _load_or_exit())
    if args.command == "trace":
        return trace.run(args)
    if args.command == "up":
        if args.delivery_replicas < 1:
            print("staffetta: --delivery-replicas must be at least 1", file=sys.stderr)
            return 2
        return up(args.delivery_replicas)
    return check_config()


if __name__ == "__main__":
    sys.exit(main())
