"""The contract's own commands: `staffetta up` and `staffetta check-config`."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from tests.e2e.mail import build, send
from tests.support.amqp import AMQP_URL
from tests.support.stack import (
    ServiceProcess,
    delete_queues,
    environ_without_settings,
    free_port,
    wait_until,
)


def _free_port_run(count: int) -> int:
    """A base port with ``count`` free consecutive ports after it (``up`` numbers them so)."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise AssertionError("no run of free ports")


def _env(**extra: str) -> dict[str, str]:
    env = environ_without_settings()
    env.update(extra)
    return env


def test_up_runs_every_service_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    smtp, http = free_port(), _free_port_run(5)
    env = _env(
        STAFFETTA_AMQP_URL=AMQP_URL,
        STAFFETTA_AMQP_PREFIX=prefix,
        STAFFETTA_HOSTNAME="staffetta.test",
        STAFFETTA_SMTP_LISTEN=f"127.0.0.1:{smtp}",
        STAFFETTA_SUBMISSION_LISTEN="",
        STAFFETTA_HTTP_LISTEN=f"127.0.0.1:{http}",
        STAFFETTA_LOCAL_DOMAINS="local.test",
        STAFFETTA_MAILDIR_ROOT=str(tmp_path / "mail"),
    )
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--delivery-replicas", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # ingress, router, two delivery workers, bounce: one HTTP port each.
        children = [
            ServiceProcess("child", http + offset, env, tmp_path / "x") for offset in range(5)
        ]
        for child in children:
            wait_until(child.ready, 30, f"/readyz on {child.http_port}")
        send(
            smtp,
            "app@client.test",
            ["alice@local.test"],
            build("app@client.test", ["alice@local.test"], "up"),
        )
        inbox = tmp_path / "mail" / "local.test" / "alice" / "new"
        wait_until(lambda: inbox.is_dir() and len(list(inbox.iterdir())) == 1, 30, "the mail")
        up.send_signal(signal.SIGTERM)
        assert up.wait(40) == 0
        assert all(child.http_status("/healthz") == 0 for child in children)  # all gone
        printed = (tmp_path / "up.log").read_text()
        assert f"SMTP on 127.0.0.1:{smtp}" in printed
        assert printed.count("delivery (pid") == 2
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
        asyncio.run(delete_queues(prefix, {"STAFFETTA_AMQP_PREFIX": prefix}))


def test_check_config_prints_masked_settings_or_one_line_per_problem() -> None:
    command = [sys.executable, "-m", "services.cli", "check-config"]
    good = subprocess.run(
        command,
        env=_env(
            STAFFETTA_AMQP_URL="amqp://user:s3cret@broker:5672/", STAFFETTA_LOCAL_DOMAINS="A.test"
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "STAFFETTA_AMQP_URL=amqp://user:***@broker:5672/" in good.stdout
    assert "STAFFETTA_LOCAL_DOMAINS=a.test" in good.stdout
    assert "s3cret" not in good.stdout

    bad = subprocess.run(
        command,
        env=_env(STAFFETTA_RETRY_SCHEDULE="soon", STAFFETTA_MAX_SESSIONS="many"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 2
    assert any("STAFFETTA_RETRY_SCHEDULE" in line for line in lines)
    assert any("STAFFETTA_MAX_SESSIONS" in line for line in lines)
