"""The AMQP adapter: PREFIX.incoming in, delivery jobs (and bounces) out.

The input is acknowledged only after the broker has confirmed every output,
so a crash or a broker outage between the two repeats the routing rather
than losing a recipient (at-least-once, like every hop of the pipeline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from services.common.addressing import RecipientDirectory
from services.common.amqp import Broker, BrokerUnavailable, InboundMessage, Output
from services.common.consumer import decode_or_park, requeue_after
from services.common.envelope import AcceptedMessage
from services.router.metrics import ROUTES, RouterMetrics
from services.router.routing import RoutingPlan, route_message

log = logging.getLogger(__name__)


class RouterWorker:
    def __init__(
        self,
        broker: Broker,
        directory: Callable[[], RecipientDirectory],
        metrics: RouterMetrics,
        *,
        requeue_pause: float = 1.0,
    ) -> None:
        self._broker = broker
        self._directory = directory
        self._metrics = metrics
        self._requeue_pause = requeue_pause
        # The series every routed message touches, looked up once: labels() costs
        # about as much as the increment it leads to.
        self._routed = metrics.messages.labels(result="routed")
        self._recipients = {route: metrics.recipients.labels(route=route) for route in ROUTES}
        self._jobs_published = {
            route: metrics.jobs_published.labels(route=route) for route in ROUTES
        }

    async def handle(self, message: InboundMessage) -> None:
        started = time.perf_counter()
        accepted = await decode_or_park(AcceptedMessage, message, "accepted message")
        if accepted is None:
            self._metrics.messages.labels(result="rejected").inc()
            return

        plan = route_message(accepted, self._directory())
        try:
            await self._publish(plan, message.body)
        except BrokerUnavailable as exc:
            log.warning(
                "publish not confirmed, message requeued",
                extra={"event": "requeued", "queue_id": accepted.queue_id, "error": str(exc)},
            )
            self._metrics.messages.labels(result="requeued").inc()
            await requeue_after(message, self._requeue_pause)
            return

        await message.ack()
        recipients = self._count(plan, accepted.queue_id)
        self._metrics.processing.observe(time.perf_counter() - started)
        log.info(
            "routed",
            extra={
                "event": "routed",
                "queue_id": accepted.queue_id,
                "jobs": len(plan.jobs),
                "local": recipients["local"],
                "relay": recipients["relay"],
                "failed": len(plan.failed),
            },
        )

    async def _publish(self, plan: RoutingPlan, body: bytes) -> None:
        topology = self._broker.topology
        outputs: list[Output] = [
            (topology.delivery, job, f"{job.queue_id}.{job.route}.{job.domain}")
            for job in plan.jobs
        ]
        if plan.bounce is not None:
            outputs.append((topology.bounce, plan.bounce, f"{plan.bounce.queue_id}.router-bounce"))
        await self._broker.publish_all(body, outputs)

    def _count(self, plan: RoutingPlan, queue_id: str) -> dict[str, int]:
        """Count the routed message in the metrics; its recipients by route."""
        recipients = dict.fromkeys(ROUTES, 0)  # plan.recipient_count(route), in one pass
        for job in plan.jobs:
            recipients[job.route] += len(job.recipients)
            self._jobs_published[job.route].inc()
        for route, count in recipients.items():
            if count:
                self._recipients[route].inc(count)
        for result in plan.failed:
            self._metrics.failed_recipients.labels(status=result.status).inc()
            log.info(
                "recipient failed",
                extra={
                    "event": "recipient_failed",
                    "queue_id": queue_id,
                    "recipient": result.recipient,
                    "status": result.status,
                    "reason": result.diagnostic,
                },
            )
        if plan.alias_expansions:
            self._metrics.alias_expansions.inc(plan.alias_expansions)
        self._routed.inc()
        return recipients
