"""The systems under test: a common face for the ceiling, Postfix and Staffetta."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Protocol

from tests.support.amqp import delete_queues_at
from tests.support.dns_server import DnsServer
from tests.support.stack import AMQP_URL, ServiceProcess, Stack

SERVICES = ("ingress", "router", "delivery", "bounce")


class System(Protocol):
    name: str
    host: str  # where smtp-source connects
    port: int

    def start(self, sink_host: str, sink_port: int) -> None: ...

    def groups(self) -> dict[str, list[int]]: ...

    def failure(self) -> str | None:
        """Why the system can no longer deliver (a process of it exited), else None."""
        ...

    def stop(self) -> None: ...


class Ceiling:
    """smtp-source straight into smtp-sink: what the machine and the tools can do."""

    name = "ceiling"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0

    def start(self, sink_host: str, sink_port: int) -> None:
        self.host = sink_host
        self.port = sink_port

    def groups(self) -> dict[str, list[int]]:
        return {}

    def failure(self) -> str | None:
        return None  # smtp-sink's own exit shows in the sink's count

    def stop(self) -> None:
        return None


class LoopServiceProcess(ServiceProcess):
    """A service started through ``bench.loop_cli`` on the event loop named ``loop``."""

    loop: str = "asyncio"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.loop_cli", self.loop, self.name]


class LoopStack(Stack):
    """The harness's stack, each service on an explicitly chosen event loop."""

    loop: str = "asyncio"

    def _make(self, name: str, index: int) -> ServiceProcess:
        made = super()._make(name, index)
        process = LoopServiceProcess(made.name, made.http_port, made.env, made.log_path)
        process.loop = self.loop
        return process


class Staffetta:
    """The four services as processes on a unique AMQP prefix, relaying to the sink.

    ``route="mx"``: MX look-ups against a loopback DNS server (``bench.test`` -> the
    sink's address), ``STAFFETTA_REMOTE_SMTP_PORT`` = the sink's port.
    ``route="smarthost"``: ``STAFFETTA_SMARTHOST`` = the sink, TLS none.
    """

    name = "staffetta"

    def __init__(
        self,
        base: Path | None = None,
        delivery_replicas: int = 1,
        route: str = "mx",
        log_level: str = "INFO",
        loop: str | None = None,
    ) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="staffetta-bench-stack-", dir=base))
        self.delivery_replicas = delivery_replicas
        self.route = route
        self.log_level = log_level
        self.loop = loop  # None: whatever the runner picks; "uvloop"/"asyncio": forced
        if loop is not None:
            self.name = f"staffetta-{loop}"
        self.dns: DnsServer | None = None
        self.stack: Stack | None = None
        self.host = "127.0.0.1"
        self.port = 0

    def _env(self, sink_host: str, sink_port: int) -> dict[str, str]:
        env = {"STAFFETTA_LOG_LEVEL": self.log_level}
        if self.route == "smarthost":
            env["STAFFETTA_SMARTHOST"] = f"{sink_host}:{sink_port}"
            env["STAFFETTA_SMARTHOST_TLS"] = "none"
            return env
        self.dns = DnsServer()
        self.dns.add_mx("bench.test", [(10, "mx.bench.test")])
        self.dns.add_a("mx.bench.test", sink_host)
        self.dns.start()
        env["STAFFETTA_DNS_NAMESERVERS"] = self.dns.address
        env["STAFFETTA_REMOTE_SMTP_PORT"] = str(sink_port)
        return env

    def _new_stack(self, kind: type[Stack], extra_env: dict[str, str]) -> Stack:
        return kind(
            self.folder,
            extra_env=extra_env,
            delivery_replicas=self.delivery_replicas,
            prefix=f"bench-{uuid.uuid4().hex[:8]}",
        )

    def make_stack(self, extra_env: dict[str, str]) -> Stack:
        """The stack this system runs (a subclass may start its services differently)."""
        if self.loop is None:
            return self._new_stack(Stack, extra_env)
        stack = self._new_stack(LoopStack, extra_env)
        assert isinstance(stack, LoopStack)
        stack.loop = self.loop
        return stack

    def start(self, sink_host: str, sink_port: int) -> None:
        self.stack = self.make_stack(self._env(sink_host, sink_port))
        self.port = self.stack.smtp_port
        self.stack.start(timeout=60)

    def groups(self) -> dict[str, list[int]]:
        assert self.stack is not None
        found: dict[str, list[int]] = {}
        for process in self.stack.processes:
            if process.process is not None:
                found.setdefault(process.name, []).append(process.process.pid)
        return found

    def pids(self) -> dict[str, int]:
        """One pid per process, named ``delivery-2`` when there are several."""
        named: dict[str, int] = {}
        for service, pids in self.groups().items():
            for index, pid in enumerate(pids, 1):
                named[service if len(pids) == 1 else f"{service}-{index}"] = pid
        return named

    def logs(self) -> str:
        return self.stack.logs() if self.stack is not None else ""

    def failure(self) -> str | None:
        for process in self.stack.processes if self.stack is not None else ():
            code = process.process.poll() if process.process is not None else None
            if code is not None:
                return f"{process.name} exited with {code}:\n{process.log_tail(15)}"
        return None

    def stop(self) -> None:
        if self.stack is not None:
            with contextlib.suppress(Exception):
                self.stack.stop()
            with contextlib.suppress(Exception):
                self.stack.delete_queues()
            with contextlib.suppress(Exception):
                asyncio.run(delete_queues_at(AMQP_URL, queues_with_prefix(self.stack.prefix)))
        if self.dns is not None:
            self.dns.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def queues_with_prefix(prefix: str) -> list[str]:
    """Queues a service declared beyond the shared topology list (``rabbitmqctl``)."""
    if shutil.which("rabbitmqctl") is None:
        return []
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return [name for name in listed.stdout.split() if name.startswith(f"{prefix}.")]
