"""The delivery service's Prometheus metrics, on the service's own registry.

Contract names: ``staffetta_delivery_attempts_total{route,result}`` counts
recipients per attempt by result; ``staffetta_delivery_duration_seconds{route}``
times one attempt of one job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

MetricT = TypeVar("MetricT", Counter, Gauge, Histogram)


@dataclass(frozen=True)
class DeliveryMetrics:
    attempts: Counter
    duration: Histogram
    latency: Histogram
    connections: Counter
    tls: Counter
    in_flight: Gauge
    retries: Counter
    expired: Counter
    bounce_jobs: Counter
    jobs: Counter
    parked: Gauge
    throttled: Counter
    oldest_deferred: Gauge
    _children: dict[tuple[object, tuple[str, ...]], object] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def child(self, metric: MetricT, *values: str) -> MetricT:
        """``metric.labels(*values)``, values in the order of the metric's label names.

        Each child is looked up once: labels() checks, orders and locks on every call
        (about 1 us, and a message takes six). Created on first use, as labels() would:
        a series appears only once something was counted in it.
        """
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found  # type: ignore[return-value]

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DeliveryMetrics:
        return cls(
            attempts=Counter(
                "staffetta_delivery_attempts",
                "Recipients handled per delivery attempt, by route and result.",
                ["route", "result"],
                registry=registry,
            ),
            duration=Histogram(
                "staffetta_delivery_duration_seconds",
                "Time spent on one delivery attempt of one job, by route.",
                ["route"],
                buckets=_DURATION_BUCKETS,
                registry=registry,
            ),
            latency=Histogram(
                "staffetta_delivery_end_to_end_seconds",
                "From acceptance at the ingress to delivery, per delivered recipient.",
                ["route"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            connections=Counter(
                "staffetta_delivery_connections",
                "Outbound SMTP sessions by result (ok, reused: a cached session after RSET, "
                "refused, failed, greeting_<code>).",
                ["result"],
                registry=registry,
            ),
            tls=Counter(
                "staffetta_delivery_tls_sessions",
                "Outbound SMTP transactions by transport security (tls, plaintext; fallback "
                "counts failed STARTTLS handshakes retried in plaintext).",
                ["mode"],
                registry=registry,
            ),
            in_flight=Gauge(
                "staffetta_delivery_in_flight_jobs",
                "Jobs being delivered right now by this process.",
                registry=registry,
            ),
            retries=Counter(
                "staffetta_delivery_retries",
                "Jobs sent to a retry queue, by the attempt that failed (capped at 10).",
                ["attempt"],
                registry=registry,
            ),
            expired=Counter(
                "staffetta_delivery_expired_recipients",
                "Deferred recipients failed because the queue lifetime ran out.",
                registry=registry,
            ),
            bounce_jobs=Counter(
                "staffetta_delivery_bounce_jobs",
                "Bounce jobs published to the bounce service, by kind.",
                ["kind"],
                registry=registry,
            ),
            jobs=Counter(
                "staffetta_delivery_jobs",
                "Jobs consumed, by result (done, retried, requeued: broker trouble, "
                "rejected: unreadable envelope, parked).",
                ["result"],
                registry=registry,
            ),
            parked=Gauge(
                "staffetta_delivery_parked_jobs",
                "Jobs in the parked queue (crashed a worker too often), last seen.",
                registry=registry,
            ),
            throttled=Counter(
                "staffetta_delivery_throttled_jobs",
                "Jobs held back for a moment (PREFIX.throttle) because their destination was "
                "at its concurrency cap or rate limit in this process.",
                ["reason"],
                registry=registry,
            ),
            oldest_deferred=Gauge(
                "staffetta_delivery_oldest_deferred_age_seconds",
                "Age since acceptance of the oldest deferred job this process is waiting on "
                "(take the max over replicas).",
                registry=registry,
            ),
        )
