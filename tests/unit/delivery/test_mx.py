import random

from services.delivery.mx import (
    HostAddresses,
    Identity,
    LookupFailed,
    MxHosts,
    MxRecord,
    NoRecords,
    NoSuchName,
    Records,
    Undeliverable,
    address_literal,
    addresses_of,
    is_ip,
    order_mx,
    plan_mx,
    points_to_self,
    unresolvable,
)


def _records(*pairs: tuple[int, str]) -> Records:
    return Records(mx=tuple(MxRecord(pref, host) for pref, host in pairs))


def test_hosts_in_preference_order() -> None:
    plan = plan_mx("d.test", _records((30, "c.d.test."), (10, "A.d.test."), (20, "b.d.test")))
    assert plan == MxHosts(("a.d.test", "b.d.test", "c.d.test"))


def test_equal_preferences_are_shuffled_but_kept_after_better_ones() -> None:
    records = [MxRecord(5, "first.test"), *(MxRecord(10, f"h{i}.test") for i in range(4))]
    seen = set()
    for seed in range(40):
        ordered = order_mx(records, random.Random(seed))
        assert ordered[0] == "first.test"
        assert sorted(ordered[1:]) == [f"h{i}.test" for i in range(4)]
        seen.add(tuple(ordered))
    assert len(seen) > 5


def test_duplicate_exchanges_appear_once() -> None:
    assert order_mx([MxRecord(10, "a.test"), MxRecord(20, "a.test.")]) == ["a.test"]


def test_null_mx_fails_with_5_1_10() -> None:
    plan = plan_mx("nomail.test", _records((0, ".")))
    assert isinstance(plan, Undeliverable)
    assert plan.status == "5.1.10"
    assert plan.permanent


def test_root_exchange_among_others_is_ignored() -> None:
    assert plan_mx("d.test", _records((0, "."), (10, "mx.d.test"))) == MxHosts(("mx.d.test",))


def test_no_mx_means_the_domain_itself() -> None:
    assert plan_mx("D.test.", NoRecords()) == MxHosts(("d.test",), implicit=True)


def test_nxdomain_is_permanent_5_1_2() -> None:
    plan = plan_mx("gone.test", NoSuchName())
    assert isinstance(plan, Undeliverable)
    assert (plan.status, plan.permanent) == ("5.1.2", True)


def test_servfail_or_timeout_is_temporary() -> None:
    plan = plan_mx("broken.test", LookupFailed("timed out"))
    assert isinstance(plan, Undeliverable)
    assert plan.status == "4.4.3"
    assert not plan.permanent


def test_addresses_merge_a_and_aaaa() -> None:
    host = HostAddresses("mx.test", (Records(values=("127.0.0.2",)), Records(values=("::1",))))
    assert addresses_of(host) == ["127.0.0.2", "::1"]
    assert addresses_of(HostAddresses("mx.test", (NoRecords(), NoSuchName()))) == []


def test_unresolvable_hosts() -> None:
    missing = [HostAddresses("mx.test", (NoSuchName(), NoSuchName()))]
    assert unresolvable("d.test", missing, implicit=False).status == "5.4.4"
    assert unresolvable("d.test", missing, implicit=True).status == "5.1.2"
    flaky = [*missing, HostAddresses("mx2.test", (LookupFailed("timeout"), NoRecords()))]
    assert unresolvable("d.test", flaky, implicit=False).status == "4.4.3"


def test_points_to_self_by_name_or_address() -> None:
    me = Identity("relay.example.test", frozenset({"10.0.0.5"}))
    assert points_to_self("RELAY.example.test.", [], me)
    assert points_to_self("other.test", ["10.0.0.5"], me)
    assert not points_to_self("other.test", ["127.0.0.2"], me)


def test_address_literals() -> None:
    assert address_literal("[192.0.2.1]") == "192.0.2.1"
    assert address_literal("[IPv6:2001:db8::1]") == "2001:db8::1"
    assert address_literal("[not-an-ip]") is None
    assert address_literal("example.test") is None


def test_is_ip_from_its_cache_answers_as_ipaddress_does() -> None:
    names = ["192.0.2.1", "192.0.2.1.", "2001:db8::1", "2001:DB8::1", "fe80::1%eth0", "::", "[::1]"]
    names += [
        "mx1.example.test",
        "example",
        "",
        " ",
        "1",
        "256.0.0.1",
        "01.2.3.4",
        "::ffff:1.2.3.4",
    ]
    chooser = random.Random(4)
    names += ["".join(chooser.choice("0123456789abcdef.:%x") for _ in range(9)) for _ in range(500)]
    uncached = is_ip.__wrapped__
    for _ in range(2):  # the second round is answered from the cache
        for name in names:
            assert is_ip(name) == uncached(name), name
    assert is_ip.cache_info().hits >= len(set(names))
