"""DeliveryMetrics.child keeps each labelled child; the series it writes are
those labels() writes, and a series appears only once something is counted."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.delivery.metrics import DeliveryMetrics

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def samples(registry: CollectorRegistry) -> list[Sample]:
    """Every sample but the creation times (they differ between two registries)."""
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    )


def counters(metrics: DeliveryMetrics) -> list[Counter]:
    return [
        metrics.attempts,
        metrics.connections,
        metrics.tls,
        metrics.retries,
        metrics.bounce_jobs,
        metrics.jobs,
        metrics.throttled,
    ]


def histograms(metrics: DeliveryMetrics) -> list[Histogram]:
    return [metrics.duration, metrics.latency]


def test_child_writes_what_labels_writes() -> None:
    fast_registry, slow_registry = CollectorRegistry(), CollectorRegistry()
    fast, slow = DeliveryMetrics.create(fast_registry), DeliveryMetrics.create(slow_registry)
    values = ["relay", "local", "delivered", "failed", "ok", "greeting_421", "1", "10", ""]
    chooser = random.Random(2)
    for step in range(3000):
        amount = chooser.choice([0.0, 0.003, 1.0, 2.0, 700.0])
        index = chooser.randrange(9)
        if index < 7:
            counter, same = counters(fast)[index], counters(slow)[index]
            chosen = tuple(chooser.choice(values) for _ in same._labelnames)
            named = dict(zip(same._labelnames, chosen, strict=True))
            assert fast.child(counter, *chosen) is counter.labels(**named)
            fast.child(counter, *chosen).inc(amount)
            same.labels(**named).inc(amount)
        else:
            histogram, twin = histograms(fast)[index - 7], histograms(slow)[index - 7]
            chosen = tuple(chooser.choice(values) for _ in twin._labelnames)
            named = dict(zip(twin._labelnames, chosen, strict=True))
            assert fast.child(histogram, *chosen) is histogram.labels(**named)
            fast.child(histogram, *chosen).observe(amount)
            twin.labels(**named).observe(amount)
        if step % 500 == 0:
            assert samples(fast_registry) == samples(slow_registry)
    assert samples(fast_registry) == samples(slow_registry)


def test_a_series_appears_on_first_use_only() -> None:
    registry = CollectorRegistry()
    metrics = DeliveryMetrics.create(registry)
    assert not any(labels for _, labels, _ in samples(registry))  # only unlabelled metrics
    metrics.child(metrics.jobs, "done")
    assert {labels for _, labels, _ in samples(registry) if labels} == {(("result", "done"),)}
