"""The four services as real processes (`staffetta <service>`), for end-to-end tests.

Each process gets its own HTTP port; SMTP listens on a free loopback port; the
AMQP prefix is unique per stack so test runs never meet on the shared broker.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.common.settings import load_settings
from services.delivery.throttle import DeliveryTopology

# Re-exported: the benchmark imports the broker's address from here with the stack.
from tests.support.amqp import AMQP_URL as AMQP_URL
from tests.support.amqp import delete_queues_at


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


LOWEST_PORT = 10000
_EPHEMERAL_FLOOR = _ephemeral_floor()
_ports = random.SystemRandom()
_handed_out: set[int] = set()  # by free_port, in this process


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a service we are about to start, below the ephemeral range.

    Between this probe and the service's bind the port is free for anyone. A port the
    kernel hands out (bind to port 0) comes from the ephemeral range, where every
    outgoing connection also takes its local port: smtp-source's thousands of sessions
    in the benchmark took one that way and a service failed to start. Below that range
    only explicit binds compete, and a random pick makes two runs meeting unlikely.
    Within this process a port is never handed out twice: two picks for one stack
    could otherwise both find the same port free before either service binds it.
    """
    for _ in range(500):
        port = _ports.randrange(LOWEST_PORT, _EPHEMERAL_FLOOR)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise OSError(f"no free port on {host} in {LOWEST_PORT}-{_EPHEMERAL_FLOOR - 1}")


def environ_without_settings() -> dict[str, str]:
    """This process's environment minus every ``STAFFETTA_*`` variable, for a child service."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STAFFETTA_")}


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll a condition that another process makes true, with a hard deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class ServiceProcess:
    name: str
    http_port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """How the service is started (the benchmark starts some differently)."""
        return [sys.executable, "-m", "services.cli", self.name]

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def http_status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return 0

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def ready(self) -> bool:
        return self.http_status("/readyz") == 200

    def terminate(self, timeout: float = 35.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    """Ingress, router, N delivery workers and bounce, sharing one unique AMQP prefix."""

    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    delivery_replicas: int = 1
    prefix: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:8]}")
    smtp_port: int = field(default_factory=free_port)
    processes: list[ServiceProcess] = field(default_factory=list)

    @property
    def maildir_root(self) -> Path:
        return self.workdir / "mail"

    def base_env(self) -> dict[str, str]:
        env = environ_without_settings()
        env.update(
            {
                "STAFFETTA_AMQP_URL": AMQP_URL,
                "STAFFETTA_AMQP_PREFIX": self.prefix,
                "STAFFETTA_HOSTNAME": "staffetta.test",
                "STAFFETTA_SMTP_LISTEN": f"127.0.0.1:{self.smtp_port}",
                "STAFFETTA_SUBMISSION_LISTEN": "",
                "STAFFETTA_MAILDIR_ROOT": str(self.maildir_root),
                "STAFFETTA_RETRY_SCHEDULE": "1s",
                "STAFFETTA_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _make(self, name: str, index: int) -> ServiceProcess:
        port = free_port()
        env = {**self.base_env(), "STAFFETTA_HTTP_LISTEN": f"127.0.0.1:{port}"}
        return ServiceProcess(name, port, env, self.workdir / f"{name}-{index}.log")

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        plan = ["ingress", "router", *["delivery"] * self.delivery_replicas, "bounce"]
        counts: dict[str, int] = {}
        for name in plan:
            counts[name] = counts.get(name, 0) + 1
            self.processes.append(self._make(name, counts[name]))
        for process in self.processes:
            process.start()
        for process in self.processes:
            self.wait_ready(process, timeout)

    def wait_ready(self, process: ServiceProcess, timeout: float = 30.0) -> None:
        try:
            wait_until(process.ready, timeout, f"{process.name} /readyz")
        except AssertionError as error:
            raise AssertionError(
                f"{error}\n--- {process.name} log ---\n{process.log_tail()}"
            ) from None

    def service(self, name: str, index: int = 0) -> ServiceProcess:
        return [p for p in self.processes if p.name == name][index]

    def restart(self, process: ServiceProcess) -> None:
        process.start()
        self.wait_ready(process)

    def start_again(self) -> None:
        """Start every (stopped) service again: same prefix, same ports."""
        for process in self.processes:
            process.start()
        for process in self.processes:
            self.wait_ready(process)

    def stop(self) -> dict[str, int]:
        codes = {}
        for process in self.processes:
            if process.process is not None and process.process.poll() is None:
                codes[f"{process.name}:{process.http_port}"] = process.terminate()
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in self.processes)

    def maildir_files(self, address: str) -> list[Path]:
        local, _, domain = address.lower().rpartition("@")
        folder = self.maildir_root / domain / local / "new"
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def wait_for_mail(self, address: str, count: int = 1, timeout: float = 30.0) -> list[Path]:
        try:
            wait_until(
                lambda: len(self.maildir_files(address)) >= count, timeout, f"mail for {address}"
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs()}") from None
        return self.maildir_files(address)

    def delete_queues(self) -> None:
        asyncio.run(delete_queues(self.prefix, self.base_env()))


async def delete_queues(prefix: str, env: dict[str, str] | None = None) -> None:
    settings = load_settings({**(env or {}), "STAFFETTA_AMQP_PREFIX": prefix})
    # The delivery topology is the widest: the shared queues plus its throttle queue.
    topology = DeliveryTopology.from_settings(settings)
    await delete_queues_at(AMQP_URL, (spec.name for spec in topology.queues()))
