"""``staffetta bounce``: wire settings, broker, worker and metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.bounce.metrics import BounceMetrics
from services.bounce.worker import BounceConfig, BounceWorker
from services.common.amqp import Broker
from services.common.consumer import ConsumerService, QueueConsumer
from services.common.settings import Settings


class BounceService(ConsumerService):
    name = "bounce"

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        broker = Broker.from_settings(settings)
        config = BounceConfig(settings.hostname, settings.max_queue_lifetime)
        worker = BounceWorker(broker, config, BounceMetrics.create(self.registry))
        self.consumer = QueueConsumer(broker, broker.topology.bounce, worker.handle)


def build(settings: Settings) -> BounceService:
    return BounceService(settings)
