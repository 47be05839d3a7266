"""The AMQP topology: every queue of the pipeline, named ``PREFIX.<name>``.

All publishing goes through the default exchange, straight to a queue by name,
so the topology is just this list of durable quorum queues:

    PREFIX.incoming      ingress and bounce -> router      (accepted messages)
    PREFIX.delivery      router -> delivery workers        (one job per destination)
    PREFIX.retry.<ttl>   delivery -> (TTL) -> delivery     (one per retry step)
    PREFIX.bounce        delivery -> bounce                (failures and delays)
    PREFIX.parked        jobs that crashed a worker too often (delivery limit)

A retry queue has no consumer: its fixed message TTL expires each job, and
dead-lettering (at-least-once) returns it to ``PREFIX.delivery``. That is our
"deferred queue": no consumer ever sleeps on an unacknowledged job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from services.common.durations import format_duration

if TYPE_CHECKING:
    from services.common.settings import Settings

QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Topology:
    prefix: str
    retry_schedule: tuple[float, ...]
    delivery_limit: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The topology every process of one install agrees on (prefix, schedule, limit)."""
        return cls(
            settings.amqp_prefix,
            tuple(settings.retry_schedule),
            delivery_limit=settings.amqp_delivery_limit,
        )

    def _name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    @property
    def incoming(self) -> str:
        return self._name("incoming")

    @property
    def delivery(self) -> str:
        return self._name("delivery")

    @property
    def bounce(self) -> str:
        return self._name("bounce")

    @property
    def parked(self) -> str:
        return self._name("parked")

    def retry_queue(self, attempt: int) -> str:
        """The delay queue to wait in after the ``attempt``-th failed attempt (1-based).

        The last step of the schedule repeats, as the contract says.
        """
        index = min(max(attempt, 1), len(self.retry_schedule)) - 1
        return self._retry_name(self.retry_schedule[index])

    def _retry_name(self, delay: float) -> str:
        # The TTL is part of the name: changing the schedule declares new queues
        # instead of clashing with the arguments of existing ones.
        return self._name(f"retry.{format_duration(delay)}")

    def _consumed(self, dead_letter_to: str | None = None) -> dict[str, Any]:
        # A job redelivered more than `delivery_limit` times (a worker crashed on
        # it each time) is dead-lettered to the parked queue instead of looping.
        arguments = {
            **QUORUM,
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_to or self.parked,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        return arguments

    def queues(self) -> list[QueueSpec]:
        specs = [
            QueueSpec(self.incoming, self._consumed()),
            QueueSpec(self.delivery, self._consumed()),
            QueueSpec(self.bounce, self._consumed()),
            QueueSpec(self.parked, dict(QUORUM)),
        ]
        for delay in sorted(set(self.retry_schedule)):
            specs.append(
                QueueSpec(
                    self._retry_name(delay),
                    {
                        **QUORUM,
                        "x-message-ttl": int(delay * 1000),
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": self.delivery,
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                )
            )
        return specs
