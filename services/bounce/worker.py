"""The AMQP adapter: PREFIX.bounce in, DSNs out to PREFIX.incoming.

A DSN re-enters the pipeline through the front door, like Postfix's bounce(8)
hands its notice to cleanup: it becomes a new accepted message from ``<>`` to
the original sender, routed and delivered like any other. The bounce job is
acknowledged only after the broker has confirmed the DSN.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from services.bounce.dsn import DsnContext, build_dsn, drop_reason, reported_results
from services.bounce.metrics import BounceMetrics
from services.common.amqp import Broker, BrokerUnavailable, InboundMessage
from services.common.consumer import decode_or_park, requeue_after
from services.common.envelope import AcceptedMessage, BounceJob, new_queue_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BounceConfig:
    hostname: str
    max_queue_lifetime: float


class BounceWorker:
    def __init__(
        self,
        broker: Broker,
        config: BounceConfig,
        metrics: BounceMetrics,
        *,
        requeue_pause: float = 1.0,
    ) -> None:
        self._broker = broker
        self._config = config
        self._metrics = metrics
        self._requeue_pause = requeue_pause

    async def handle(self, message: InboundMessage) -> None:
        started = time.perf_counter()
        job = await decode_or_park(BounceJob, message, "bounce job")
        if job is None:
            self._metrics.messages.labels(result="rejected").inc()
            return

        reported = reported_results(job)
        reason = drop_reason(job, reported)
        if reason is not None:
            self._drop(job, reason)
            await message.ack()
            self._metrics.processing.observe(time.perf_counter() - started)
            return

        dsn_id = new_queue_id()
        now = time.time()
        context = DsnContext(self._config.hostname, dsn_id, now, self._config.max_queue_lifetime)
        dsn = build_dsn(job, message.body, context)
        notice = AcceptedMessage(
            queue_id=dsn_id,
            sender="",
            recipients=[job.sender],
            accepted_at=now,
            received_headers=1,  # the DSN's own Received: header
        )
        try:
            await self._broker.publish(
                self._broker.topology.incoming, dsn, notice, message_id=dsn_id
            )
        except BrokerUnavailable as exc:
            log.warning(
                "DSN not confirmed, bounce job requeued",
                extra={"event": "requeued", "queue_id": job.queue_id, "error": str(exc)},
            )
            self._metrics.messages.labels(result="requeued").inc()
            await requeue_after(message, self._requeue_pause)
            return

        await message.ack()
        self._metrics.bounces.labels(kind=job.kind).inc()
        self._metrics.recipients.labels(kind=job.kind).inc(len(reported))
        self._metrics.messages.labels(result="sent").inc()
        self._metrics.processing.observe(time.perf_counter() - started)
        log.info(
            "DSN queued",
            extra={
                "event": "dsn_queued",
                "queue_id": job.queue_id,
                "dsn_queue_id": dsn_id,
                "kind": job.kind,
                "recipients": ",".join(result.recipient for result in reported),
                "statuses": ",".join(result.status for result in reported),
            },
        )

    def _drop(self, job: BounceJob, reason: str) -> None:
        self._metrics.dropped.inc()
        self._metrics.messages.labels(result="dropped").inc()
        log.info(
            "no DSN sent",
            extra={
                "event": "dsn_dropped",
                "queue_id": job.queue_id,
                "reason": reason,
                "kind": job.kind,
                "recipients": ",".join(result.recipient for result in job.results),
            },
        )
