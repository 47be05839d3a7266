"""One Staffetta service on a chosen event loop, for A/B runs: ``python -m bench.loop_cli
uvloop ingress``. ``asyncio.run`` (the runner's) takes the loop from the policy set here.
The services' own choice stays in ``services/common/runner.py``; this is measurement only.
"""

from __future__ import annotations

import asyncio
import importlib
import sys


def main(argv: list[str]) -> int:
    loop, *rest = argv
    if loop == "uvloop":
        uvloop = importlib.import_module("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif loop == "asyncio":
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    else:
        raise SystemExit(f"unknown loop {loop!r}: uvloop or asyncio")
    from services.cli import main as service_main

    return service_main(rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
