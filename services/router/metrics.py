"""The router's Prometheus metrics, registered on the service's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.metrics import export_at_zero

ROUTES = ("local", "relay")


@dataclass(frozen=True)
class RouterMetrics:
    recipients: Counter
    alias_expansions: Counter
    jobs_published: Counter
    failed_recipients: Counter
    messages: Counter
    processing: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RouterMetrics:
        metrics = cls._build(registry)
        export_at_zero(metrics.recipients, "route", ROUTES)
        export_at_zero(metrics.jobs_published, "route", ROUTES)
        export_at_zero(metrics.messages, "result", ("routed", "requeued", "rejected"))
        return metrics

    @classmethod
    def _build(cls, registry: CollectorRegistry) -> RouterMetrics:
        return cls(
            recipients=Counter(
                "staffetta_router_recipients",
                "Final recipients routed, by route.",
                ["route"],
                registry=registry,
            ),
            alias_expansions=Counter(
                "staffetta_router_alias_expansions",
                "Recipients that were aliases and were expanded.",
                registry=registry,
            ),
            jobs_published=Counter(
                "staffetta_router_jobs_published",
                "Delivery jobs published (and confirmed), by route.",
                ["route"],
                registry=registry,
            ),
            failed_recipients=Counter(
                "staffetta_router_failed_recipients",
                "Recipients failed by the router (alias loops, hop limit), by status.",
                ["status"],
                registry=registry,
            ),
            messages=Counter(
                "staffetta_router_messages",
                "Accepted messages handled: routed, requeued (broker trouble) or rejected "
                "(unreadable envelope, parked).",
                ["result"],
                registry=registry,
            ),
            processing=Histogram(
                "staffetta_router_processing_seconds",
                "Time from receiving an accepted message to acknowledging it.",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                registry=registry,
            ),
        )
