"""``staffetta router``: wire settings, broker, directory, worker and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry

from services.common.addressing import RecipientDirectory
from services.common.amqp import Broker
from services.common.queue_metrics import QueueMetrics, cancel
from services.common.settings import Settings
from services.common.topology import Topology
from services.router.metrics import RouterMetrics
from services.router.worker import RouterWorker

log = logging.getLogger(__name__)


class RouterService:
    name = "router"

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
        directory = RecipientDirectory.load(
            settings.local_domains, settings.local_recipients_file, settings.aliases_file
        )
        self._worker = RouterWorker(self._broker, directory, RouterMetrics.create(self.registry))
        self._consuming = False
        self._starting: asyncio.Task[None] | None = None
        # Queue depths for the whole pipeline are exported here only (one router process).
        self._queue_metrics = QueueMetrics(self.registry, topology, self._broker.queue_depth)
        self._queue_stats: asyncio.Task[None] | None = None

    def is_ready(self) -> bool:
        return self._consuming and self._broker.ready

    async def start(self) -> None:
        # The broker may come up after us: connect in the background, /readyz says 503 meanwhile.
        self._starting = asyncio.create_task(self._connect_and_consume())
        self._starting.add_done_callback(_report_failure)

    async def _connect_and_consume(self) -> None:
        await self._broker.connect_forever()
        await self._broker.consume(self._broker.topology.incoming, self._worker.handle)
        self._consuming = True
        self._queue_stats = asyncio.create_task(self._queue_metrics.run())
        log.info(
            "consuming",
            extra={"event": "consuming", "queue": self._broker.topology.incoming},
        )

    async def stop(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        await cancel(self._queue_stats)
        self._consuming = False
        await self._broker.drain()
        await self._broker.close()


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "could not start consuming",
            extra={"event": "start_failed", "error": str(task.exception())},
        )


def build(settings: Settings) -> RouterService:
    return RouterService(settings)
