from services.common.topology import Topology


def test_names_carry_the_prefix() -> None:
    topology = Topology("run1", (1.0, 2.0))
    names = [spec.name for spec in topology.queues()]
    assert all(name.startswith("run1.") for name in names)
    assert {"run1.incoming", "run1.delivery", "run1.bounce", "run1.parked"} <= set(names)


def test_retry_queues_follow_the_schedule_and_the_last_step_repeats() -> None:
    topology = Topology("p", (300.0, 600.0, 1200.0))
    assert topology.retry_queue(1) == "p.retry.5m"
    assert topology.retry_queue(2) == "p.retry.10m"
    assert topology.retry_queue(3) == "p.retry.20m"
    assert topology.retry_queue(9) == "p.retry.20m"


def test_retry_queues_dead_letter_back_into_delivery_after_their_ttl() -> None:
    topology = Topology("p", (5.0, 5.0, 60.0))
    retry = {spec.name: spec.arguments for spec in topology.queues() if ".retry." in spec.name}
    assert set(retry) == {"p.retry.5s", "p.retry.1m"}
    assert retry["p.retry.5s"]["x-message-ttl"] == 5000
    assert retry["p.retry.1m"]["x-dead-letter-routing-key"] == "p.delivery"
    assert all(args["x-queue-type"] == "quorum" for args in retry.values())


def test_consumed_queues_park_poison_jobs() -> None:
    topology = Topology("p", (5.0,), delivery_limit=3)
    delivery = next(spec for spec in topology.queues() if spec.name == "p.delivery")
    assert delivery.arguments["x-delivery-limit"] == 3
    assert delivery.arguments["x-dead-letter-routing-key"] == "p.parked"
