import pytest

from services.delivery.shared_limits import rate_window
from services.delivery.throttle import DeliveryTopology, DestinationLimiter, parse_rate


def test_parse_rate() -> None:
    assert parse_rate("") == 0
    assert parse_rate("60/m") == 1.0
    assert parse_rate("7200/h") == 2.0
    assert parse_rate("0.5/s") == 0.5
    with pytest.raises(ValueError):
        parse_rate("fast")


def test_concurrency_cap_per_destination() -> None:
    limiter = DestinationLimiter(concurrency=2)
    assert limiter.acquire("a.test", 0) is None
    assert limiter.acquire("a.test", 0) is None
    assert limiter.acquire("a.test", 0) == "concurrency"
    assert limiter.acquire("b.test", 0) is None  # other destinations are not affected
    limiter.release("a.test")
    assert limiter.acquire("a.test", 0) is None
    for _ in range(2):
        limiter.release("a.test")
    limiter.release("b.test")
    assert limiter.active == {}


def test_rate_refills_over_time_with_one_second_of_burst() -> None:
    limiter = DestinationLimiter(rate=2.0)
    assert [limiter.acquire("a.test", 10.0) for _ in range(3)] == [None, None, "rate"]
    limiter.release("a.test")
    limiter.release("a.test")
    assert limiter.acquire("a.test", 10.4) == "rate"
    assert limiter.acquire("a.test", 10.5) is None  # 1.0 token after 0.5 s at 2/s
    limiter.release("a.test")
    assert limiter.acquire("a.test", 100.0) is None
    assert limiter.acquire("a.test", 100.0) is None
    assert limiter.acquire("a.test", 100.0) == "rate"  # the burst never exceeds 2


def test_slow_rates_allow_one_message_at_a_time() -> None:
    limiter = DestinationLimiter(rate=1 / 60)
    assert limiter.acquire("a.test", 0) is None
    limiter.release("a.test")
    assert limiter.acquire("a.test", 30) == "rate"
    assert limiter.acquire("a.test", 60) is None


def test_no_limits() -> None:
    limiter = DestinationLimiter()
    assert all(limiter.acquire("a.test", 0) is None for _ in range(1000))


def test_throttle_queue_dead_letters_back_to_delivery() -> None:
    topology = DeliveryTopology("p", (60.0,), throttle_delay=1.0)
    spec = next(q for q in topology.queues() if q.name == topology.throttle)
    assert topology.throttle == "p.throttle.1s"
    assert spec.arguments["x-message-ttl"] == 1000
    assert spec.arguments["x-dead-letter-routing-key"] == "p.delivery"
    assert spec.arguments["x-queue-type"] == "quorum"
    assert {q.name for q in topology.queues()} >= {"p.delivery", "p.retry.1m", "p.parked"}


def test_shared_rate_windows() -> None:
    assert rate_window(1.0) == (1.0, 1)
    assert rate_window(10.0) == (1.0, 10)
    assert rate_window(1 / 60) == (60.0, 1)
    assert rate_window(1.5) == (1.0, 1)
