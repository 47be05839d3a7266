"""``staffetta router``: wire settings, broker, directory, worker and metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.amqp import Broker
from services.common.consumer import ConsumerService, QueueConsumer
from services.common.queue_metrics import QueueMetrics
from services.common.reloading import ReloadingDirectory
from services.common.settings import Settings
from services.router.metrics import RouterMetrics
from services.router.worker import RouterWorker


class RouterService(ConsumerService):
    name = "router"

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        broker = Broker.from_settings(settings)
        # Re-read when the files change, like the ingress does, so both agree on aliases.
        directory = ReloadingDirectory(
            settings.local_domains, settings.local_recipients_file, settings.aliases_file
        )
        worker = RouterWorker(broker, directory.current, RouterMetrics.create(self.registry))
        # Queue depths for the whole pipeline are exported here only (one router process).
        queue_metrics = QueueMetrics(self.registry, broker.topology, broker.queue_depth)
        self.consumer = QueueConsumer(
            broker, broker.topology.incoming, worker.handle, background=[queue_metrics.run]
        )


def build(settings: Settings) -> RouterService:
    return RouterService(settings)
