"""End-to-end fixtures: the four services as processes, a loopback DNS server,
and three fake remote MX hosts (127.0.0.2-4) sharing one port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.dns_server import DnsServer
from tests.support.mx_server import MxServers
from tests.support.stack import Stack

LOCAL_DOMAIN = "local.test"


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
def mx(dns: DnsServer) -> Iterator[MxServers]:
    with MxServers(count=3) as fleet:
        for server in fleet.servers:
            dns.add_a(server.hostname, server.host)
        # remote1.test: primary 127.0.0.2, backup 127.0.0.3; remote2.test: 127.0.0.4 only.
        dns.add_mx("remote1.test", [(10, fleet[0].hostname), (20, fleet[1].hostname)])
        dns.add_mx("remote2.test", [(10, fleet[2].hostname)])
        dns.add_mx("single.test", [(10, fleet[0].hostname)])
        yield fleet


StackFactory = Callable[..., Stack]


@pytest.fixture
def stack_factory(tmp_path: Path, dns: DnsServer, mx: MxServers) -> Iterator[StackFactory]:
    stacks: list[Stack] = []

    def make(delivery_replicas: int = 1, **env: str) -> Stack:
        base = {
            "STAFFETTA_LOCAL_DOMAINS": LOCAL_DOMAIN,
            "STAFFETTA_DNS_NAMESERVERS": dns.address,
            "STAFFETTA_REMOTE_SMTP_PORT": str(mx.port),
            "STAFFETTA_RETRY_SCHEDULE": "1s",
            "STAFFETTA_CONNECT_TIMEOUT": "3s",
            "STAFFETTA_DNS_TIMEOUT": "2s",
        }
        base.update(env)
        stack = Stack(tmp_path / f"stack{len(stacks)}", base, delivery_replicas)
        stacks.append(stack)
        stack.start()
        return stack

    yield make
    for stack in stacks:
        stack.stop()
        stack.delete_queues()


@pytest.fixture
def stack(stack_factory: StackFactory) -> Stack:
    return stack_factory()
