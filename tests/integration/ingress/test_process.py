"""``staffetta ingress`` as a process: it serves, and SIGTERM exits 0 promptly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

import httpx

from tests.integration.ingress.conftest import Incoming
from tests.integration.ingress.rawsmtp import RawSMTP, transaction
from tests.support.amqp import AMQP_URL
from tests.support.processes import kill_if_running
from tests.support.stack import free_port


async def test_sigterm_finishes_and_exits_zero(
    prefix: str, incoming: Incoming, delete_queues: None
) -> None:
    smtp_port, http_port = free_port(), free_port()
    environ = {
        **os.environ,
        "STAFFETTA_AMQP_URL": AMQP_URL,
        "STAFFETTA_AMQP_PREFIX": prefix,
        "STAFFETTA_HOSTNAME": "mx.staffetta.test",
        "STAFFETTA_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
        "STAFFETTA_SUBMISSION_LISTEN": "",
        "STAFFETTA_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "STAFFETTA_LOCAL_DOMAINS": "local.test",
        "STAFFETTA_DNS_NAMESERVERS": "127.0.0.1:1",
        "STAFFETTA_RETRY_SCHEDULE": "1s,2s",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "ingress",
        env=environ, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            deadline = time.monotonic() + 30
            ready = False
            while not ready and time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):  # not listening yet
                    ready = (await http.get("/readyz")).status_code == 200
                if not ready:  # a 503 too: no back-to-back requests while it connects
                    await asyncio.sleep(0.1)
            assert ready, "the ingress never became ready"
            client = await RawSMTP.greeted(smtp_port, ehlo="c.test")
            answers = await transaction(client, "a@s.test", ["b@local.test"], b"S: p\r\n\r\n")
            assert answers[-1].startswith("250 2.0.0 ")
            metrics = (await http.get("/metrics")).text
            assert 'staffetta_ingress_messages_total{result="accepted"} 1.0' in metrics
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert (await client.reply()).startswith("421 4.3.2 ")
        await client.close()
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert time.monotonic() - started < 30
        assert (await incoming.get()).envelope.recipients == ["b@local.test"]
    finally:
        await kill_if_running(process)
