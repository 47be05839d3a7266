"""Health, readiness and metrics over HTTP, served in the service's own event loop.

``/healthz``, ``/readyz`` and ``/metrics`` are open; a service may add its own
routes (the delivery service's token-protected ``/admin/*``) as an ``APIRouter``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.common.settings import ListenAddress


def build_app(
    registry: CollectorRegistry,
    is_ready: Callable[[], bool],
    service: str,
    extra: APIRouter | None = None,
) -> FastAPI:
    app = FastAPI(title=f"staffetta {service}", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz")
    async def readyz(response: Response) -> dict[str, str]:
        if is_ready():
            return {"status": "ready", "service": service}
        response.status_code = 503
        return {"status": "not ready", "service": service}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if extra is not None:
        app.include_router(extra)
    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    def __init__(self, app: FastAPI, address: ListenAddress) -> None:
        config = uvicorn.Config(
            app,
            host=address.host,
            port=address.port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0); after :meth:`start`."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the HTTP server is not listening")

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
