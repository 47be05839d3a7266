"""``staffetta bounce``: wire settings, broker, worker and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry

from services.bounce.metrics import BounceMetrics
from services.bounce.worker import BounceConfig, BounceWorker
from services.common.amqp import Broker
from services.common.settings import Settings
from services.common.topology import Topology

log = logging.getLogger(__name__)


class BounceService:
    name = "bounce"

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        topology = Topology(
            settings.amqp_prefix,
            tuple(settings.retry_schedule),
            delivery_limit=settings.amqp_delivery_limit,
        )
        self._broker = Broker(
            settings.amqp_url.get_secret_value(), topology, prefetch=settings.amqp_prefetch
        )
        config = BounceConfig(settings.hostname, settings.max_queue_lifetime)
        self._worker = BounceWorker(self._broker, config, BounceMetrics.create(self.registry))
        self._consuming = False
        self._starting: asyncio.Task[None] | None = None

    def is_ready(self) -> bool:
        return self._consuming and self._broker.ready

    async def start(self) -> None:
        # The broker may come up after us: connect in the background, /readyz says 503 meanwhile.
        self._starting = asyncio.create_task(self._connect_and_consume())
        self._starting.add_done_callback(_report_failure)

    async def _connect_and_consume(self) -> None:
        await self._broker.connect_forever()
        await self._broker.consume(self._broker.topology.bounce, self._worker.handle)
        self._consuming = True
        log.info("consuming", extra={"event": "consuming", "queue": self._broker.topology.bounce})

    async def stop(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        self._consuming = False
        await self._broker.drain()
        await self._broker.close()


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "could not start consuming",
            extra={"event": "start_failed", "error": str(task.exception())},
        )


def build(settings: Settings) -> BounceService:
    return BounceService(settings)
