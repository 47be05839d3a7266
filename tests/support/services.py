"""A service object under test: started until ready, and its metrics read as numbers."""

from __future__ import annotations

from typing import TypeVar

from services.common.runner import Service
from tests.support.amqp import wait_for

ServiceT = TypeVar("ServiceT", bound=Service)


async def running(service: ServiceT, what: str) -> ServiceT:
    """``service`` started and ready (connected and consuming), within 15 s."""
    await service.start()
    await wait_for(service.is_ready, 15, what)
    return service


def sample(service: Service, name: str, **labels: str) -> float:
    """One sample of ``service``'s metrics; 0 for a series not exported yet."""
    value = service.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
