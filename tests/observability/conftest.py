"""The end-to-end fixtures (a loopback DNS server, fake MX hosts, the four services
as processes) are the e2e suite's own, reused here unchanged."""

from tests.e2e.conftest import dns, mx, stack_factory

__all__ = ["dns", "mx", "stack_factory"]
