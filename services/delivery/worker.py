"""The AMQP adapter: PREFIX.delivery in; retries, bounces and delay notices out.

Each job is attempted once, right away. The outcome (see :mod:`outcome`) is
published with confirms, and only then is the job acknowledged: a crash or
a broker outage in between repeats the attempt rather than losing mail. No
job ever waits unacknowledged -- deferred ones wait in the TTL retry queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.amqp import Broker, BrokerUnavailable, InboundMessage, Output
from services.common.consumer import decode_or_park
from services.common.envelope import DeliveryJob, RecipientResult
from services.delivery.deferred import DeferredTracker
from services.delivery.maildir import Maildir, UnsafeMailbox, to_lf
from services.delivery.metrics import DeliveryMetrics
from services.delivery.outcome import (
    MAIL_LOOP,
    Outcome,
    RetryPolicy,
    decide,
    describe,
    is_mail_loop,
    next_retry_delay,
)
from services.delivery.relay import Relay, RelayReport
from services.delivery.replies import local_result
from services.delivery.shared_limits import Limiter

log = logging.getLogger(__name__)

UNSAFE_MAILBOX = "5.1.3"
LOCAL_TROUBLE = "4.3.0"


@dataclass(frozen=True)
class Throttle:
    limiter: Limiter
    queue: str  # PREFIX.throttle.<ttl>
    smarthost: str = ""  # with a smarthost every relay job shares one destination


@dataclass(frozen=True)
class Attempt:
    results: list[RecipientResult]
    note: str = ""


def job_key(job: DeliveryJob) -> str:
    """One message has one job per destination."""
    return f"{job.queue_id}/{job.route}/{job.domain}"


class DeliveryWorker:
    def __init__(
        self,
        broker: Broker,
        relay: Relay,
        maildir: Maildir,
        policy: RetryPolicy,
        metrics: DeliveryMetrics,
        clock: Callable[[], float] = time.time,
        throttle: Throttle | None = None,
    ) -> None:
        self._throttle = throttle
        self._broker = broker
        self._relay = relay
        self._maildir = maildir
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self._deferred = DeferredTracker()

    async def handle(self, message: InboundMessage) -> None:
        job = await decode_or_park(DeliveryJob, message, "delivery job")
        if job is None:
            self._metrics.child(self._metrics.jobs, "rejected").inc()
            return
        destination = self._destination(job)
        if destination and self._throttle is not None:
            refusal = await self._throttle.limiter.acquire(destination)
            if refusal is not None:
                await self._hold_back(job, message, refusal)
                return
        self._metrics.in_flight.inc()
        try:
            await self._handle(job, message)
        finally:
            self._metrics.in_flight.dec()
            if destination and self._throttle is not None:
                await self._throttle.limiter.release(destination)

    def _destination(self, job: DeliveryJob) -> str:
        """What the per-destination limits count: the smarthost, or the domain."""
        if job.route != "relay":
            return ""
        if self._throttle is not None and self._throttle.smarthost:
            return self._throttle.smarthost
        return job.domain

    async def _hold_back(self, job: DeliveryJob, message: InboundMessage, reason: str) -> None:
        """Over a destination's limit: wait in the throttle queue, unchanged, no attempt."""
        assert self._throttle is not None
        try:
            await self._broker.publish(
                self._throttle.queue,
                message.body,
                job,
                message_id=message.message_id or f"{job.queue_id}.throttled",
            )
        except BrokerUnavailable:
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await message.ack()
        self._metrics.child(self._metrics.throttled, reason).inc()
        log.debug(
            "throttled",
            extra={"event": "throttled", "queue_id": job.queue_id, "reason": reason},
        )

    async def _handle(self, job: DeliveryJob, message: InboundMessage) -> None:
        started_wall = self._clock()
        started = time.perf_counter()
        attempt = await self.attempt(job, message.body)
        outcome = decide(
            job,
            attempt.results,
            now=self._clock(),
            attempt_started=started_wall,
            policy=self._policy,
        )
        try:
            await self._publish(job, outcome, message.body)
        except BrokerUnavailable as exc:
            log.warning(
                "publish not confirmed, job requeued",
                extra={"event": "requeued", "queue_id": job.queue_id, "error": str(exc)},
            )
            self._metrics.child(self._metrics.jobs, "requeued").inc()
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await message.ack()
        metrics = self._metrics
        metrics.child(metrics.duration, job.route).observe(time.perf_counter() - started)
        self._record(job, outcome, attempt.note)

    async def attempt(self, job: DeliveryJob, body: bytes) -> Attempt:
        """One delivery attempt of every recipient of ``job``."""
        if is_mail_loop(job):
            note = f"mail loop: {job.received_headers} Received: headers"
            return Attempt([local_result(r, MAIL_LOOP) for r in job.recipients], note)
        if job.route == "local":
            return Attempt(await self._deliver_local(job, body))
        report: RelayReport = await self._relay.deliver(job, body)
        return Attempt(report.results, report.note)

    async def _deliver_local(self, job: DeliveryJob, body: bytes) -> list[RecipientResult]:
        results = []
        lf_body = to_lf(body)
        for recipient in job.recipients:
            try:
                path = await asyncio.to_thread(self._maildir.store, recipient, lf_body)
            except UnsafeMailbox as exc:
                log.info(
                    "unsafe local mailbox",
                    extra={"event": "unsafe_mailbox", "queue_id": job.queue_id, "error": str(exc)},
                )
                results.append(local_result(recipient, UNSAFE_MAILBOX))
                continue
            except OSError as exc:
                log.error(
                    "maildir write failed",
                    extra={"event": "maildir_error", "queue_id": job.queue_id, "error": str(exc)},
                )
                results.append(local_result(recipient, LOCAL_TROUBLE))
                continue
            log.debug(
                "stored", extra={"event": "stored", "queue_id": job.queue_id, "file": path.name}
            )
            results.append(local_result(recipient, "2.0.0"))
        return results

    async def _publish(self, job: DeliveryJob, outcome: Outcome, body: bytes) -> None:
        topology = self._broker.topology
        tag = f"{job.queue_id}.{job.route}.{job.domain or 'local'}.a{job.attempts + 1}"
        outputs: list[Output] = []
        if outcome.bounce is not None:
            outputs.append((topology.bounce, outcome.bounce, f"{tag}.failure"))
        if outcome.delay_notice is not None:
            outputs.append((topology.bounce, outcome.delay_notice, f"{tag}.delay"))
        if outcome.retry is not None:
            queue = topology.retry_queue(outcome.retry.attempts)
            outputs.append((queue, outcome.retry, f"{tag}.retry"))
        await self._broker.publish_all(body, outputs)

    def _record(self, job: DeliveryJob, outcome: Outcome, note: str) -> None:
        metrics = self._metrics
        now = self._clock()
        for result, action in (
            (outcome.delivered, "delivered"),
            (outcome.deferred, "deferred"),
            (outcome.failed, "failed"),
        ):
            if result:
                metrics.child(metrics.attempts, job.route, action).inc(len(result))
        for _ in outcome.delivered:
            metrics.child(metrics.latency, job.route).observe(max(now - job.accepted_at, 0.0))
        if outcome.expired:
            metrics.expired.inc(len(outcome.expired))
        for bounce in (outcome.bounce, outcome.delay_notice):
            if bounce is not None:
                metrics.child(metrics.bounce_jobs, bounce.kind).inc()
        key = job_key(job)
        self._deferred.seen(key)
        if outcome.retry is not None:
            metrics.child(metrics.retries, str(min(job.attempts + 1, 10))).inc()
            delay = next_retry_delay(self._broker.topology.retry_schedule, outcome.retry.attempts)
            self._deferred.deferred(key, job.accepted_at, now, delay)
        self.refresh_gauges()
        metrics.child(metrics.jobs, "retried" if outcome.retry else "done").inc()
        self._log(job, outcome, note)

    def refresh_gauges(self) -> None:
        """The oldest-deferred gauge, also when no job passes for a while."""
        self._metrics.oldest_deferred.set(self._deferred.oldest_age(self._clock()))

    def _log(self, job: DeliveryJob, outcome: Outcome, note: str) -> None:
        for results, event in (
            (outcome.delivered, "delivered"),
            (outcome.failed, "failed"),
            (outcome.deferred, "deferred"),
        ):
            for result in results:
                log.info(
                    event,
                    extra={
                        "event": event,
                        "queue_id": job.queue_id,
                        "route": job.route,
                        "recipient": result.recipient,
                        "status": result.status,
                        "relay": result.remote_mta,
                        "reply": describe(result),
                        "note": note,
                        "attempt": job.attempts + 1,
                    },
                )
        if outcome.suppressed_bounce:
            log.info(
                "null sender: no bounce",
                extra={"event": "bounce_suppressed", "queue_id": job.queue_id},
            )
