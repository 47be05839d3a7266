"""Connection reuse, per-destination concurrency caps, rate limits, per-phase timeouts."""

from __future__ import annotations

import pytest

from tests.integration.delivery.conftest import StartDelivery, wait_for
from tests.support.mx_server import MxServers

pytestmark = pytest.mark.broker


async def test_cached_session_is_reused_with_rset(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    delivery = await start_delivery(CONNECTION_CACHE_TIME="30s")
    await delivery.submit(delivery.job(["a@example.test"]))
    await mx[0].messages_received(1)
    await delivery.submit(delivery.job(["b@example.test"], sender="t@src.test"))
    received = await mx[0].messages_received(2)
    assert [(m.sender, m.recipients) for m in received] == [
        ("s@src.test", ["a@example.test"]),
        ("t@src.test", ["b@example.test"]),
    ]
    assert mx[0].connections == 1
    assert mx[0].resets == 1
    await delivery.wait_metric(
        "staffetta_delivery_connections_total", 1, 5, "the reuse counted", result="reused"
    )


async def test_a_cached_session_closed_by_the_server_is_replaced(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    with MxServers(count=1, idle_timeout=0.3) as fleet:
        delivery = await start_delivery(
            CONNECTION_CACHE_TIME="30s", REMOTE_SMTP_PORT=str(fleet.port)
        )
        await delivery.submit(delivery.job(["a@example.test"]))
        await fleet[0].messages_received(1)
        pool = delivery.service.pool
        await wait_for(lambda: pool.idle_count() == 1, 5, "the session to be cached")
        [cached] = pool.idle()
        await wait_for(lambda: not cached.client.is_connected, 5, "the server to hang up")
        await delivery.submit(delivery.job(["b@example.test"]))
        received = await fleet[0].messages_received(2)
        assert received[1].recipients == ["b@example.test"]
        assert fleet[0].connections == 2
        assert delivery.bounces.empty()


async def test_without_the_cache_every_message_connects(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    delivery = await start_delivery(CONNECTION_CACHE_TIME="0")
    for recipient in ("a@example.test", "b@example.test"):
        await delivery.submit(delivery.job([recipient]))
        await mx[0].messages_received(1 if recipient.startswith("a") else 2)
    assert mx[0].connections == 2
    assert mx[0].resets == 0


async def test_concurrency_cap_holds_jobs_back_without_failing_them(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    mx[0].slow_data(0.5)
    delivery = await start_delivery(DESTINATION_CONCURRENCY="1")
    for index in range(3):
        await delivery.submit(delivery.job([f"r{index}@example.test"]))
    received = await mx[0].messages_received(3, within=20)
    assert sorted(r for m in received for r in m.recipients) == [
        "r0@example.test",
        "r1@example.test",
        "r2@example.test",
    ]
    assert mx[0].max_parallel_data == 1
    assert delivery.metric("staffetta_delivery_throttled_jobs_total", reason="concurrency") >= 1
    assert (
        delivery.metric("staffetta_delivery_attempts_total", route="relay", result="deferred") == 0
    )
    assert delivery.bounces.empty()


async def test_rate_limit_spreads_messages_over_time(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    delivery = await start_delivery(DESTINATION_RATE_LIMIT="1/s")
    for index in range(3):
        await delivery.submit(delivery.job([f"r{index}@example.test"]))
    received = await mx[0].messages_received(3, within=20)
    times = sorted(message.received_at for message in received)
    assert times[2] - times[0] >= 1.5  # one per second, not three at once
    assert delivery.metric("staffetta_delivery_throttled_jobs_total", reason="rate") >= 2
    assert delivery.bounces.empty()


async def test_greeting_timeout_moves_on_to_the_backup_mx(
    start_delivery: StartDelivery, mx: MxServers
) -> None:
    mx[0].silent()
    delivery = await start_delivery(GREETING_TIMEOUT="0.5s", COMMAND_TIMEOUT="30s")
    await delivery.submit(delivery.job(["a@example.test"]))
    received = await mx[1].messages_received(1, within=10)
    assert received[0].recipients == ["a@example.test"]
    assert mx[0].connections == 1
    assert mx[0].messages == []
