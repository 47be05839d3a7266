"""The router's pure decisions: aliases, local/relay split, grouping, de-duplication."""

from __future__ import annotations

from services.common.addressing import MAX_ALIAS_DEPTH, RecipientDirectory
from services.common.envelope import AcceptedMessage, DeliveryJob
from services.router.routing import MAX_HOPS, route_message

ACCEPTED_AT = 1_790_000_000.0


def accepted(*recipients: str, sender: str = "alice@example.org", hops: int = 1) -> AcceptedMessage:
    return AcceptedMessage(
        queue_id="QID123",
        sender=sender,
        recipients=list(recipients),
        accepted_at=ACCEPTED_AT,
        received_headers=hops,
    )


def directory(aliases: dict[str, list[str]] | None = None) -> RecipientDirectory:
    return RecipientDirectory(frozenset({"local.test", "other.test"}), None, aliases or {})


def by_domain(jobs: list[DeliveryJob]) -> dict[tuple[str, str], list[str]]:
    return {(job.route, job.domain): job.recipients for job in jobs}


def test_local_and_relay_recipients_are_split_and_grouped_by_domain() -> None:
    plan = route_message(
        accepted(
            "bob@local.test",
            "carol@remote.test",
            "dave@other.test",
            "erin@far.test",
            "frank@remote.test",
        ),
        directory(),
    )
    assert by_domain(plan.jobs) == {
        ("local", ""): ["bob@local.test", "dave@other.test"],
        ("relay", "remote.test"): ["carol@remote.test", "frank@remote.test"],
        ("relay", "far.test"): ["erin@far.test"],
    }
    assert plan.bounce is None
    assert plan.failed == []
    assert plan.recipient_count("local") == 2
    assert plan.recipient_count("relay") == 3


def test_jobs_carry_the_message_identity() -> None:
    plan = route_message(accepted("bob@local.test", "carol@remote.test", hops=3), directory())
    for job in plan.jobs:
        assert job.queue_id == "QID123"
        assert job.sender == "alice@example.org"
        assert job.accepted_at == ACCEPTED_AT
        assert job.received_headers == 3
        assert job.attempts == 0
        assert job.delay_warned is False
    assert [job.route for job in plan.jobs] == ["local", "relay"]


def test_jobs_carry_the_ingress_body_flag() -> None:
    for wire_ready in (True, False):
        message = accepted("bob@local.test", "carol@remote.test").model_copy(
            update={"wire_ready": wire_ready}
        )
        plan = route_message(message, directory())
        assert [job.wire_ready for job in plan.jobs] == [wire_ready, wire_ready]


def test_null_sender_is_carried_unchanged() -> None:
    plan = route_message(accepted("bob@local.test", sender=""), directory())
    assert plan.jobs[0].sender == ""


def test_domains_are_case_insensitive_and_duplicates_removed() -> None:
    plan = route_message(
        accepted(
            "Bob@LOCAL.test",
            "bob@local.TEST",
            "carol@Remote.Test",
            "CAROL@remote.test.",
            "dave@remote.test",
        ),
        directory(),
    )
    assert by_domain(plan.jobs) == {
        ("local", ""): ["Bob@LOCAL.test"],
        ("relay", "remote.test"): ["carol@Remote.Test", "dave@remote.test"],
    }


def test_aliases_expand_recursively_to_local_and_remote_targets() -> None:
    aliases = {
        "team@local.test": ["ops@local.test", "boss@remote.test"],
        "ops@local.test": ["ann@local.test", "ben@far.test"],
    }
    plan = route_message(accepted("team@local.test"), directory(aliases))
    assert by_domain(plan.jobs) == {
        ("local", ""): ["ann@local.test"],
        ("relay", "far.test"): ["ben@far.test"],
        ("relay", "remote.test"): ["boss@remote.test"],
    }
    assert plan.alias_expansions == 1
    assert plan.bounce is None


def test_alias_targets_are_deduplicated_with_direct_recipients() -> None:
    aliases = {"team@local.test": ["ann@local.test", "bob@remote.test"]}
    plan = route_message(
        accepted("ann@local.test", "team@local.test", "BOB@remote.test"), directory(aliases)
    )
    assert by_domain(plan.jobs) == {
        ("local", ""): ["ann@local.test"],
        ("relay", "remote.test"): ["bob@remote.test"],
    }


def test_alias_lookup_is_case_insensitive() -> None:
    aliases = {"team@local.test": ["ann@local.test"]}
    plan = route_message(accepted("TEAM@Local.Test"), directory(aliases))
    assert by_domain(plan.jobs) == {("local", ""): ["ann@local.test"]}
    assert plan.alias_expansions == 1


def test_alias_loop_fails_only_the_looping_recipient_with_5_4_6() -> None:
    aliases = {
        "a@local.test": ["b@local.test"],
        "b@local.test": ["a@local.test"],
    }
    plan = route_message(accepted("a@local.test", "carol@remote.test"), directory(aliases))
    assert by_domain(plan.jobs) == {("relay", "remote.test"): ["carol@remote.test"]}
    assert plan.bounce is not None
    assert plan.bounce.kind == "failure"
    assert plan.bounce.queue_id == "QID123"
    assert plan.bounce.sender == "alice@example.org"
    assert plan.bounce.accepted_at == ACCEPTED_AT
    [result] = plan.bounce.results
    assert result.recipient == "a@local.test"
    assert result.action == "failed"
    assert result.status == "5.4.6"
    assert "loop" in result.diagnostic
    assert result.remote_mta == ""
    assert plan.failed == plan.bounce.results


def test_every_looping_recipient_is_in_one_bounce() -> None:
    aliases = {"a@local.test": ["a@local.test"], "b@local.test": ["b@local.test"]}
    plan = route_message(accepted("a@local.test", "b@local.test"), directory(aliases))
    assert plan.jobs == []
    assert plan.bounce is not None
    assert [r.recipient for r in plan.bounce.results] == ["a@local.test", "b@local.test"]


def test_aliases_nested_too_deep_are_refused() -> None:
    depth = MAX_ALIAS_DEPTH + 2
    aliases = {f"l{i}@local.test": [f"l{i + 1}@local.test"] for i in range(depth)}
    plan = route_message(accepted("l0@local.test"), directory(aliases))
    assert plan.jobs == []
    assert plan.bounce is not None
    assert plan.bounce.results[0].status == "5.4.6"


def test_aliases_nested_to_the_limit_are_fine() -> None:
    aliases = {f"l{i}@local.test": [f"l{i + 1}@local.test"] for i in range(MAX_ALIAS_DEPTH)}
    plan = route_message(accepted("l0@local.test"), directory(aliases))
    assert by_domain(plan.jobs) == {("local", ""): [f"l{MAX_ALIAS_DEPTH}@local.test"]}
    assert plan.bounce is None


def test_too_many_hops_fails_every_recipient_as_a_loop() -> None:
    plan = route_message(
        accepted("bob@local.test", "carol@remote.test", hops=MAX_HOPS + 1), directory()
    )
    assert plan.jobs == []
    assert plan.bounce is not None
    assert [(r.recipient, r.status) for r in plan.bounce.results] == [
        ("bob@local.test", "5.4.6"),
        ("carol@remote.test", "5.4.6"),
    ]


def test_hops_up_to_the_limit_are_routed() -> None:
    plan = route_message(accepted("bob@local.test", hops=MAX_HOPS), directory())
    assert by_domain(plan.jobs) == {("local", ""): ["bob@local.test"]}


def test_recipient_without_domain_fails_with_5_1_3() -> None:
    plan = route_message(accepted("postmaster", "bob@local.test"), directory())
    assert by_domain(plan.jobs) == {("local", ""): ["bob@local.test"]}
    assert plan.bounce is not None
    assert [(r.recipient, r.status) for r in plan.bounce.results] == [("postmaster", "5.1.3")]


def test_no_local_domains_means_everything_is_relayed() -> None:
    plan = route_message(accepted("bob@local.test"), RecipientDirectory(frozenset(), None, {}))
    assert by_domain(plan.jobs) == {("relay", "local.test"): ["bob@local.test"]}


def test_unknown_local_alias_target_fails_with_5_1_1_once() -> None:
    known = RecipientDirectory(
        frozenset({"local.test"}),
        frozenset({"ann@local.test"}),
        {
            "team@local.test": ["ann@local.test", "ghost@local.test", "x@remote.test"],
            "crew@local.test": ["Ghost@local.test"],
        },
    )
    plan = route_message(accepted("team@local.test", "crew@local.test"), known)
    assert by_domain(plan.jobs) == {
        ("local", ""): ["ann@local.test"],
        ("relay", "remote.test"): ["x@remote.test"],
    }
    assert plan.bounce is not None
    assert [(r.recipient, r.status, r.diagnostic) for r in plan.bounce.results] == [
        ("ghost@local.test", "5.1.1", 'unknown user: "ghost"')
    ]


def test_without_a_recipients_file_every_local_user_exists() -> None:
    plan = route_message(accepted("anyone@local.test"), directory())
    assert by_domain(plan.jobs) == {("local", ""): ["anyone@local.test"]}


def test_alias_target_that_cannot_name_a_mailbox_fails_with_5_1_3() -> None:
    aliases = {"team@local.test": ["../etc@local.test", "ok@local.test", "a/b@remote.test"]}
    plan = route_message(accepted("team@local.test"), directory(aliases))
    assert by_domain(plan.jobs) == {
        ("local", ""): ["ok@local.test"],
        ("relay", "remote.test"): ["a/b@remote.test"],  # the remote side decides
    }
    assert plan.bounce is not None
    assert [(r.recipient, r.status) for r in plan.bounce.results] == [
        ("../etc@local.test", "5.1.3")
    ]
