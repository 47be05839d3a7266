"""The bounce service's Prometheus metrics, registered on the service's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.metrics import export_at_zero

KINDS = ("failure", "delay")


@dataclass(frozen=True)
class BounceMetrics:
    bounces: Counter
    recipients: Counter
    dropped: Counter
    messages: Counter
    processing: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> BounceMetrics:
        metrics = cls._build(registry)
        export_at_zero(metrics.bounces, "kind", KINDS)
        export_at_zero(metrics.recipients, "kind", KINDS)
        export_at_zero(metrics.messages, "result", ("sent", "dropped", "requeued", "rejected"))
        return metrics

    @classmethod
    def _build(cls, registry: CollectorRegistry) -> BounceMetrics:
        return cls(
            bounces=Counter(
                "staffetta_bounces",
                "DSNs sent to original senders, by kind.",
                ["kind"],
                registry=registry,
            ),
            recipients=Counter(
                "staffetta_bounce_recipients",
                "Recipients reported in DSNs, by kind.",
                ["kind"],
                registry=registry,
            ),
            dropped=Counter(
                "staffetta_bounces_dropped",
                "Bounce jobs for which no DSN is sent: null sender (a DSN is never bounced) "
                "or nothing to report. The reason is in the log line.",
                registry=registry,
            ),
            messages=Counter(
                "staffetta_bounce_jobs",
                "Bounce jobs handled: sent, dropped, requeued (broker trouble) or rejected "
                "(unreadable envelope, parked).",
                ["result"],
                registry=registry,
            ),
            processing=Histogram(
                "staffetta_bounce_processing_seconds",
                "Time from receiving a bounce job to acknowledging it.",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                registry=registry,
            ),
        )
