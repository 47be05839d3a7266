"""The shared wiring: topology and broker from settings, the admin token setting, the HTTP app."""

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client import CollectorRegistry, Counter

from services.common.amqp import Broker
from services.common.consumer import cancel_all
from services.common.http import build_app
from services.common.settings import SettingsError, load_settings
from services.common.topology import Topology
from services.delivery.throttle import DeliveryTopology

ENV = {
    "STAFFETTA_AMQP_URL": "amqp://u:p@127.0.0.1:5999/",
    "STAFFETTA_AMQP_PREFIX": "wired",
    "STAFFETTA_RETRY_SCHEDULE": "1m,5m",
    "STAFFETTA_AMQP_DELIVERY_LIMIT": "7",
    "STAFFETTA_AMQP_PREFETCH": "3",
}


def test_topology_from_settings_takes_prefix_schedule_and_limit() -> None:
    topology = Topology.from_settings(load_settings(ENV))
    assert topology == Topology("wired", (60.0, 300.0), delivery_limit=7)
    assert topology.retry_queue(5) == "wired.retry.5m"


def test_a_topology_subclass_builds_itself_from_settings() -> None:
    topology = DeliveryTopology.from_settings(load_settings(ENV))
    assert isinstance(topology, DeliveryTopology)
    assert topology.delivery_limit == 7
    assert topology.throttle == "wired.throttle.1s"


def test_broker_from_settings_uses_the_shared_topology_unless_given_one() -> None:
    settings = load_settings(ENV)
    assert Broker.from_settings(settings).topology == Topology.from_settings(settings)
    own = DeliveryTopology.from_settings(settings)
    broker = Broker.from_settings(settings, own)
    assert broker.topology is own
    assert not broker.ready  # constructing never connects


def test_the_admin_api_is_off_by_default() -> None:
    settings = load_settings({})
    assert settings.admin_token_file is None
    assert settings.admin_token() == ""
    assert settings.describe()["STAFFETTA_ADMIN_TOKEN_FILE"] == ""


def test_the_admin_token_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("abc-123\r\n")
    settings = load_settings({"STAFFETTA_ADMIN_TOKEN_FILE": str(path)})
    assert settings.admin_token() == "abc-123"
    assert settings.describe()["STAFFETTA_ADMIN_TOKEN_FILE"] == str(path)


@pytest.mark.parametrize(("content", "problem"), [(None, "no such file"), ("\n", "is empty")])
def test_a_missing_or_empty_token_file_is_refused(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError) as error:
        load_settings({"STAFFETTA_ADMIN_TOKEN_FILE": str(path)})
    [line] = error.value.problems
    assert "STAFFETTA_ADMIN_TOKEN_FILE" in line and problem in line


def _app(ready: bool, extra: APIRouter | None = None) -> httpx.AsyncClient:
    registry = CollectorRegistry()
    Counter("wired_things", "Things.", registry=registry).inc()
    app = build_app(registry, lambda: ready, "wired", extra)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wired")


async def test_the_app_serves_health_readiness_and_metrics() -> None:
    async with _app(ready=False) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok", "service": "wired"}
        assert (await client.get("/readyz")).status_code == 503
        assert "wired_things_total 1.0" in (await client.get("/metrics")).text
        assert (await client.get("/admin/ping")).status_code == 404
    async with _app(ready=True) as client:
        assert (await client.get("/readyz")).status_code == 200


async def test_extra_routes_are_served_beside_the_open_ones() -> None:
    extra = APIRouter(prefix="/admin")

    @extra.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    async with _app(ready=True, extra=extra) as client:
        assert (await client.get("/admin/ping")).json() == {"pong": "yes"}
        assert (await client.get("/healthz")).status_code == 200
        assert "wired_things_total 1.0" in (await client.get("/metrics")).text


async def test_cancel_all_cancels_again_a_task_that_swallowed_its_cancellation() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # as aio-pika may, inside a channel open or close
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)  # let it start waiting
    await asyncio.wait_for(cancel_all([task], retry=0.05), 5)
    assert swallowed.is_set()
    assert task.cancelled()
