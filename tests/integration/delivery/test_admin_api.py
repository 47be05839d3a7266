"""The queue-control admin API (``/admin/*``) over real HTTP, against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from services.common.http import HttpServer, build_app
from services.common.settings import ListenAddress
from services.delivery.throttle import DeliveryTopology
from tests.integration.delivery.conftest import (
    AMQP_URL,
    Delivery,
    StartDelivery,
    defer_two,
)
from tests.support.amqp import delete_queues_at, unique_prefix
from tests.support.dns_server import DnsServer
from tests.support.mx_server import MxServers
from tests.support.processes import kill_if_running
from tests.support.stack import free_port

pytestmark = pytest.mark.broker

TOKEN = "s3cret-admin-token"
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
ADMIN_CALLS = (
    ("GET", "/admin/queue"),
    ("POST", "/admin/queue/flush"),
    ("DELETE", "/admin/queue/NOSUCHID"),
    ("POST", "/admin/parked/requeue"),
)

Serve = Callable[[Delivery], Awaitable[httpx.AsyncClient]]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-token"
    path.write_text(f"{TOKEN}\n")  # the trailing newline is not part of the token
    return path


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve a started delivery service's HTTP app on a free loopback port."""
    running: list[tuple[HttpServer, httpx.AsyncClient]] = []

    async def start(delivery: Delivery) -> httpx.AsyncClient:
        service = delivery.service
        app = build_app(service.registry, service.is_ready, service.name, service.http_routes())
        server = HttpServer(app, ListenAddress("127.0.0.1", 0))
        await server.start()
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
        running.append((server, client))
        return client

    yield start
    for server, client in running:
        await client.aclose()
        await server.stop()


class TwoDeferred(NamedTuple):
    delivery: Delivery
    client: httpx.AsyncClient
    first: str  # queue ids of the two deferred messages
    second: str


@pytest.fixture
async def two_deferred(
    start_delivery: StartDelivery, serve: Serve, mx: MxServers, token_file: Path
) -> TwoDeferred:
    """Two messages deferred for an hour (see ``defer_two``), and a client of the admin API."""
    delivery = await start_delivery(RETRY_SCHEDULE="1h", ADMIN_TOKEN_FILE=str(token_file))
    client = await serve(delivery)
    first, second = await defer_two(delivery, mx)
    return TwoDeferred(delivery, client, first, second)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def listed(client: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    response = await client.get("/admin/queue", headers=bearer())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["jobs"])
    return {job["queue_id"]: job for job in body["jobs"]}


async def test_list_delete_and_flush_deferred_mail(
    two_deferred: TwoDeferred, mx: MxServers
) -> None:
    delivery, client, first, second = two_deferred

    jobs = await listed(client)
    assert set(jobs) == {first, second}
    assert jobs[second]["recipients"] == ["b@example.test", "c@example.test"]
    assert jobs[second]["queue"] == "retry.1h"
    assert jobs[second]["attempts"] == 1
    assert "451 4.7.1 greylisted" in str(jobs[second]["last_error"])
    assert set(await listed(client)) == {first, second}  # listing returned every message

    response = await client.delete(f"/admin/queue/{first}", headers=bearer())
    assert (response.status_code, response.json()) == (200, {"deleted": 1, "queue_id": first})
    response = await client.delete(f"/admin/queue/{first}", headers=bearer())
    assert response.status_code == 404
    assert set(await listed(client)) == {second}

    for server in mx.servers:
        server.clear_script()
    response = await client.post("/admin/queue/flush", headers=bearer())
    assert (response.status_code, response.json()) == (200, {"flushed": 1, "queue_id": None})
    received = await mx.messages_received(1)
    assert received[0].recipients == ["b@example.test", "c@example.test"]
    assert await listed(client) == {}
    assert delivery.bounces.empty()


async def test_flush_of_one_message_leaves_the_others_waiting(
    two_deferred: TwoDeferred, mx: MxServers
) -> None:
    _, client, first, second = two_deferred
    for server in mx.servers:
        server.clear_script()

    response = await client.post(
        "/admin/queue/flush", params={"queue_id": first.lower()}, headers=bearer()
    )
    assert response.json() == {"flushed": 1, "queue_id": first.lower()}
    received = await mx.messages_received(1)
    assert received[0].recipients == ["a@example.test"]
    assert set(await listed(client)) == {second}


async def test_parked_jobs_are_listed_and_requeued(
    start_delivery: StartDelivery, serve: Serve, mx: MxServers, token_file: Path
) -> None:
    delivery = await start_delivery(ADMIN_TOKEN_FILE=str(token_file))
    client = await serve(delivery)
    job = delivery.job(["p@example.test"])
    # Parked as a poison job would be (the delivery limit itself: test_queue_admin.py).
    await delivery.service.broker.publish(
        delivery.topology.parked, b"Subject: parked\r\n\r\nhi\r\n", job, message_id="p.test"
    )
    jobs = await listed(client)
    assert jobs[job.queue_id]["queue"] == "parked"
    assert jobs[job.queue_id]["recipients"] == ["p@example.test"]

    response = await client.post(
        "/admin/parked/requeue", params={"queue_id": "NOSUCHID"}, headers=bearer()
    )
    assert response.json() == {"requeued": 0, "queue_id": "NOSUCHID"}
    assert set(await listed(client)) == {job.queue_id}

    response = await client.post(
        "/admin/parked/requeue", params={"queue_id": job.queue_id}, headers=bearer()
    )
    assert (response.status_code, response.json()["requeued"]) == (200, 1)
    received = await mx.messages_received(1)
    assert received[0].recipients == ["p@example.test"]
    assert await listed(client) == {}


REFUSED = (
    {},
    bearer("wrong-token"),
    bearer(TOKEN[:-1]),
    bearer(TOKEN + "x"),
    {"Authorization": "Bearer"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
)


async def test_admin_calls_need_the_token(two_deferred: TwoDeferred) -> None:
    _, client, first, second = two_deferred

    for headers in REFUSED:
        for method, path in [*ADMIN_CALLS, ("DELETE", f"/admin/queue/{first}")]:
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, (headers, method, path)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "jobs" not in response.json()
    for path in OPEN_PATHS:
        assert (await client.get(path)).status_code == 200, path
    assert set(await listed(client)) == {first, second}  # nothing was flushed or deleted
    scheme_in_lower_case = {"Authorization": f"bearer {TOKEN}"}
    assert (await client.get("/admin/queue", headers=scheme_in_lower_case)).status_code == 200


async def test_admin_api_is_off_without_a_token_file(
    start_delivery: StartDelivery, serve: Serve
) -> None:
    delivery = await start_delivery()
    assert delivery.service.http_routes() is None
    client = await serve(delivery)
    for method, path in ADMIN_CALLS:
        for headers in ({}, bearer()):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 404, (method, path)
    for path in OPEN_PATHS:
        assert (await client.get(path)).status_code == 200, path


async def test_the_delivery_process_serves_the_admin_api(
    dns_server: DnsServer, token_file: Path, tmp_path: Path
) -> None:
    """``staffetta delivery`` itself (the runner) mounts /admin next to the open routes."""
    prefix = unique_prefix()
    port = free_port()
    env = {
        **os.environ,
        "STAFFETTA_AMQP_URL": AMQP_URL,
        "STAFFETTA_AMQP_PREFIX": prefix,
        "STAFFETTA_HTTP_LISTEN": f"127.0.0.1:{port}",
        "STAFFETTA_DNS_NAMESERVERS": dns_server.address,
        "STAFFETTA_RETRY_SCHEDULE": "1s",
        "STAFFETTA_MAILDIR_ROOT": str(tmp_path / "mail"),
        "STAFFETTA_ADMIN_TOKEN_FILE": str(token_file),
    }
    with (tmp_path / "delivery.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "delivery", env=env, stderr=log
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                assert process.returncode is None, (tmp_path / "delivery.log").read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "the delivery process never got ready"
                await asyncio.sleep(0.1)  # no event announces readiness
            assert (await client.get("/admin/queue")).status_code == 401
            response = await client.get("/admin/queue", headers=bearer())
            assert (response.status_code, response.json()["jobs"]) == (200, [])
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        await kill_if_running(process)
        await _delete_queues(prefix)


async def _delete_queues(prefix: str) -> None:
    await delete_queues_at(
        AMQP_URL, (spec.name for spec in DeliveryTopology(prefix, (1.0,)).queues())
    )
