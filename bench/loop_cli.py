"""One Staffetta service on a chosen event loop, for A/B runs: ``python -m bench.loop_cli
asyncio ingress``. Replaces ``services.common.runner.run`` (the services' own choice,
uvloop) in this process only, before the CLI looks it up; measurement only.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable

import services.common.runner as runner
from services.common.logs import configure_logging
from services.common.settings import Settings


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        factory: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module(
            "uvloop"
        ).new_event_loop
        return factory
    if name == "asyncio":
        return asyncio.new_event_loop
    raise SystemExit(f"unknown loop {name!r}: uvloop or asyncio")


def main(argv: list[str]) -> int:
    name, *rest = argv
    factory = loop_factory(name)

    def run(service: runner.Service, settings: Settings) -> int:
        configure_logging(service.name, settings.log_level)
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            loop_runner.run(runner.serve(service, settings))
        return 0

    runner.run = run
    from services.cli import main as service_main

    return service_main(rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
