"""Run one service in the foreground: HTTP, the worker, and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol, runtime_checkable

import uvloop
from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from services.common.http import HttpServer, build_app
from services.common.logs import configure_logging
from services.common.settings import Settings

log = logging.getLogger(__name__)


class Service(Protocol):
    """What every service offers the runner."""

    name: str
    registry: CollectorRegistry

    def is_ready(self) -> bool: ...

    async def start(self) -> None:
        """Begin work; return once listening/consuming has been set up (or scheduled)."""

    async def stop(self) -> None:
        """Stop taking work, finish or return in-flight work, release connections."""


@runtime_checkable
class HasHttpRoutes(Protocol):
    """A service that serves more than health, readiness and metrics on its HTTP port."""

    def http_routes(self) -> APIRouter | None: ...


async def serve(service: Service, settings: Settings) -> None:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)

    routes = service.http_routes() if isinstance(service, HasHttpRoutes) else None
    http = HttpServer(
        build_app(service.registry, service.is_ready, service.name, routes), settings.http_address
    )
    await http.start()
    await service.start()
    log.info("started", extra={"event": "started", "http": str(settings.http_address)})
    await stop_requested.wait()
    log.info("stopping", extra={"event": "stopping"})
    await service.stop()
    await http.stop()
    log.info("stopped", extra={"event": "stopped"})


def run(service: Service, settings: Settings) -> int:
    configure_logging(service.name, settings.log_level)
    # uvloop: the same asyncio API with the loop and socket transports in C. Measured by
    # `make bench` (two A/B rounds of 3 runs): +14-18 % msg/s with 1 KB messages, 0-15 %
    # with 50 KB; CPU per message within the noise (-13 % to +2 %).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(service, settings))
    return 0
