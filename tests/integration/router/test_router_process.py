"""``staffetta router`` and ``staffetta bounce`` as real processes: HTTP, metrics, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from services.common.amqp import Broker
from services.common.envelope import AcceptedMessage, DeliveryJob, decode
from tests.support.amqp import AMQP_URL, collect
from tests.support.processes import kill_if_running
from tests.support.stack import environ_without_settings, free_port


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), ""
    except OSError:
        return 0, ""


async def wait_http_ready(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.returncode is None, "the service exited during start-up"
        status, _ = await asyncio.to_thread(http_get, port, "/readyz")
        if status == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the service never became ready")


@pytest.mark.parametrize(
    ("service", "series"),
    [
        ("router", 'staffetta_router_recipients_total{route="relay"}'),
        ("bounce", 'staffetta_bounces_total{kind="failure"}'),
    ],
)
async def test_service_process_serves_http_and_exits_0_on_sigterm(
    service: str,
    series: str,
    prefix: str,
    amqp: AbstractRobustConnection,
    publisher: Broker,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = environ_without_settings()
    env.update(
        {
            "STAFFETTA_AMQP_URL": AMQP_URL,
            "STAFFETTA_AMQP_PREFIX": prefix,
            "STAFFETTA_HTTP_LISTEN": f"127.0.0.1:{port}",
            "STAFFETTA_HOSTNAME": "mx.staffetta.test",
            "STAFFETTA_RETRY_SCHEDULE": "1s,2s",
            "STAFFETTA_DNS_NAMESERVERS": "127.0.0.1:53",
        }
    )
    log = (tmp_path / f"{service}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", service, env=env, stdout=log, stderr=log
    )
    try:
        await wait_http_ready(port, process)
        assert (await asyncio.to_thread(http_get, port, "/healthz"))[0] == 200
        status, metrics = await asyncio.to_thread(http_get, port, "/metrics")
        assert status == 200
        assert f"{series} 0.0" in metrics

        if service == "router":
            delivery = await collect(amqp, publisher.topology.delivery)
            message = AcceptedMessage(
                queue_id="QIDPROC1",
                sender="alice@example.org",
                recipients=["bob@remote.test"],
                accepted_at=time.time(),
            )
            await publisher.publish(
                publisher.topology.incoming, b"Subject: x\r\n\r\nx\r\n", message, message_id="Q"
            )
            job = decode(DeliveryJob, (await delivery.next()).headers)
            assert (job.route, job.domain) == ("relay", "remote.test")

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        await kill_if_running(process)
        log.close()
    lines = (tmp_path / f"{service}.log").read_text().splitlines()
    assert any('"event": "consuming"' in line for line in lines)
    assert any('"event": "stopped"' in line for line in lines)
