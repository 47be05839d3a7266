"""Queue depths and consumer counts of every ``PREFIX.`` queue, as Prometheus gauges.

A collector's ``collect()`` is synchronous while the broker is asynchronous, so
a periodic task asks the broker (a passive declare per queue, through
:meth:`Broker.queue_depth`) and sets plain gauges; a scrape reads the last
values. One service exports them (the router: one process, always connected),
so a dashboard never sums the same queue twice.

    staffetta_queue_messages{queue}            ready messages ("delivery", "retry.5m", ...)
    staffetta_queue_consumers{queue}           consumers attached
    staffetta_queue_stats_timestamp_seconds    when the last full refresh succeeded

The ``queue`` label is the name without ``PREFIX.``: the topology's fixed list
(one label per retry step), so its cardinality is bounded by the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Gauge

from services.common.topology import Topology

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0

DepthReader = Callable[[str], Awaitable[tuple[int, int]]]


class QueueMetrics:
    """Gauges for every queue of ``topology``, refreshed by :meth:`run` every ``interval``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        topology: Topology,
        read_depth: DepthReader,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._topology = topology
        self._read_depth = read_depth
        self._interval = interval
        self._failing = False
        self.messages = Gauge(
            "staffetta_queue_messages",
            "Messages ready in each Staffetta queue (name without the prefix), last seen.",
            ["queue"],
            registry=registry,
        )
        self.consumers = Gauge(
            "staffetta_queue_consumers",
            "Consumers attached to each Staffetta queue (retry queues have none by design).",
            ["queue"],
            registry=registry,
        )
        self.refreshed = Gauge(
            "staffetta_queue_stats_timestamp_seconds",
            "Unix time of the last successful refresh of the queue gauges.",
            registry=registry,
        )

    def label(self, queue: str) -> str:
        """``PREFIX.retry.5m`` -> ``retry.5m``."""
        prefix = f"{self._topology.prefix}."
        return queue[len(prefix) :] if queue.startswith(prefix) else queue

    async def refresh(self) -> None:
        """Read every queue once and set its gauges.

        A queue that cannot be read keeps its last values and the others are still
        read; the first error is raised at the end, and the timestamp only moves
        when every queue was read.
        """
        errors: list[Exception] = []
        for spec in self._topology.queues():
            try:
                ready, consumers = await self._read_depth(spec.name)
            except Exception as exc:  # broker away, or a queue deleted by hand
                errors.append(exc)
                continue
            label = self.label(spec.name)
            self.messages.labels(queue=label).set(ready)
            self.consumers.labels(queue=label).set(consumers)
        if errors:
            raise errors[0]
        self.refreshed.set(time.time())

    async def run(self) -> None:
        """Refresh forever; a failed pass is logged once per outage and retried next tick."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # broker away: keep the last values, say so once
                if not self._failing:
                    log.warning(
                        "queue statistics unavailable",
                        extra={"event": "queue_stats_failed", "error": str(exc)},
                    )
                self._failing = True
            else:
                self._failing = False
            await asyncio.sleep(self._interval)


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Stop a :meth:`QueueMetrics.run` task (helper for a service's ``stop``)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
