"""After an attempt: who is done, who bounces, who waits, and for how long.

Pure: a job, its per-recipient results and the clock in; an :class:`Outcome`
out. The worker publishes what the outcome holds, then acknowledges the job.

- delivered recipients are done;
- failed recipients go into one ``BounceJob(kind="failure")``;
- deferred recipients past ``max_queue_lifetime`` (counted from acceptance at
  the ingress) fail with ``4.4.7``; the others are republished to the retry
  queue of the next attempt, with ``attempts + 1``;
- once a recipient has waited ``delay_warning_after`` (> 0), one
  ``BounceJob(kind="delay")`` is sent and the job remembers it;
- a message from the null sender ``<>`` is never bounced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.envelope import BounceJob, DeliveryJob, RecipientResult

EXPIRED = "4.4.7"
MAIL_LOOP = "5.4.6"
MAX_RECEIVED_HEADERS = 50


@dataclass(frozen=True)
class RetryPolicy:
    max_queue_lifetime: float
    delay_warning_after: float  # 0 disables delay warnings


@dataclass(frozen=True)
class Outcome:
    delivered: list[RecipientResult] = field(default_factory=list)
    failed: list[RecipientResult] = field(default_factory=list)  # expired ones included
    deferred: list[RecipientResult] = field(default_factory=list)
    expired: list[RecipientResult] = field(default_factory=list)
    bounce: BounceJob | None = None
    delay_notice: BounceJob | None = None
    retry: DeliveryJob | None = None  # publish to topology.retry_queue(retry.attempts)

    @property
    def suppressed_bounce(self) -> bool:
        """Failures of a null-sender message: dropped, as RFC 3461 asks."""
        return bool(self.failed) and self.bounce is None


def is_mail_loop(job: DeliveryJob) -> bool:
    return job.received_headers > MAX_RECEIVED_HEADERS


def decide(
    job: DeliveryJob,
    results: Sequence[RecipientResult],
    *,
    now: float,
    attempt_started: float,
    policy: RetryPolicy,
) -> Outcome:
    delivered = [r for r in results if r.action == "delivered"]
    failed = [r for r in results if r.action == "failed"]
    deferred = [r for r in results if r.action in ("deferred", "delayed")]

    waited = now - job.accepted_at
    expired: list[RecipientResult] = []
    if deferred and waited >= policy.max_queue_lifetime:
        expired = [r.model_copy(update={"action": "failed", "status": EXPIRED}) for r in deferred]
        failed = [*failed, *expired]
        deferred = []

    bounces_allowed = job.sender != ""
    bounce = None
    if failed and bounces_allowed:
        bounce = BounceJob(
            queue_id=job.queue_id,
            sender=job.sender,
            accepted_at=job.accepted_at,
            kind="failure",
            results=failed,
        )

    retry = None
    delay_notice = None
    if deferred:
        warn = (
            bounces_allowed
            and policy.delay_warning_after > 0
            and waited >= policy.delay_warning_after
            and not job.delay_warned
        )
        if warn:
            delay_notice = BounceJob(
                queue_id=job.queue_id,
                sender=job.sender,
                accepted_at=job.accepted_at,
                kind="delay",
                results=[r.model_copy(update={"action": "delayed"}) for r in deferred],
            )
        retry = job.model_copy(
            update={
                "recipients": [r.recipient for r in deferred],
                "attempts": job.attempts + 1,
                "first_attempt_at": job.first_attempt_at or attempt_started,
                "last_error": describe(deferred[0]),
                "delay_warned": job.delay_warned or warn,
            }
        )
    return Outcome(
        delivered=delivered,
        failed=failed,
        deferred=deferred,
        expired=expired,
        bounce=bounce,
        delay_notice=delay_notice,
        retry=retry,
    )


def describe(result: RecipientResult) -> str:
    """One line for ``last_error`` and the logs."""
    where = f" from {result.remote_mta}" if result.remote_mta else ""
    if result.diagnostic:
        return f"{result.status}{where}: {result.diagnostic}"
    return f"{result.status}{where}"


def next_retry_delay(schedule: Sequence[float], attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt (the last step repeats)."""
    index = min(max(attempts, 1), len(schedule)) - 1
    return schedule[index]
