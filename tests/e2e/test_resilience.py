"""Crash safety and horizontal scaling: no message lost, duplicates reported."""

from __future__ import annotations

import collections
import re
import threading

from tests.e2e.conftest import StackFactory
from tests.e2e.mail import send_many, subject_of
from tests.support.mx_server import MxServers
from tests.support.stack import Stack, wait_until

COUNT = 200


def _delivered_subjects(mx: MxServers, tag: str) -> collections.Counter[str]:
    return collections.Counter(
        subject for m in mx.messages if (subject := subject_of(m.data)).startswith(tag)
    )


def _report_duplicates(counts: collections.Counter[str], what: str) -> None:
    duplicates = {subject: n for subject, n in counts.items() if n > 1}
    # Duplicates are allowed after a crash (at-least-once), but reported.
    print(f"{what}: {len(counts)} unique, {sum(counts.values()) - len(counts)} duplicates")
    if duplicates:
        print(f"duplicated: {sorted(duplicates)[:10]}")


def _crash_and_recover(stack: Stack, mx: MxServers, victim: str, tag: str) -> None:
    sender_done = threading.Event()
    subjects: list[str] = []

    def sender() -> None:
        subjects.extend(
            send_many(stack.smtp_port, "load@client.test", "bulk@remote2.test", COUNT, tag)
        )
        sender_done.set()

    thread = threading.Thread(target=sender)
    thread.start()
    # Kill the victim while mail is flowing through it.
    mx[2].wait_for_messages(20, timeout=60)
    process = stack.service(victim)
    process.kill()
    thread.join(120)
    assert sender_done.is_set(), "the ingress stopped accepting while a later hop was down"
    stack.restart(process)

    # Duplicates count towards the fleet's total, so wait for every distinct subject.
    try:
        wait_until(lambda: set(subjects) <= set(_delivered_subjects(mx, tag)), 120, "all subjects")
    except AssertionError:
        missing = set(subjects) - set(_delivered_subjects(mx, tag))
        raise AssertionError(f"lost {len(missing)} messages, e.g. {sorted(missing)[:5]}") from None
    _report_duplicates(_delivered_subjects(mx, tag), f"kill -9 {victim}")


def test_kill_9_delivery_while_messages_are_in_flight_loses_nothing(
    stack: Stack, mx: MxServers
) -> None:
    _crash_and_recover(stack, mx, "delivery", "crash-delivery")


def test_kill_9_router_while_messages_are_in_flight_loses_nothing(
    stack: Stack, mx: MxServers
) -> None:
    _crash_and_recover(stack, mx, "router", "crash-router")


def test_three_delivery_processes_deliver_each_message_exactly_once(
    stack_factory: StackFactory, mx: MxServers
) -> None:
    stack = stack_factory(delivery_replicas=3)
    subjects = send_many(stack.smtp_port, "load@client.test", "bulk@remote2.test", 300, "scale")
    mx.wait_for_messages(300, timeout=120)
    counts = _delivered_subjects(mx, "scale")
    assert set(counts) == set(subjects)
    assert all(n == 1 for n in counts.values()), "a message was delivered twice"
    workers_that_delivered = 0
    for index in range(3):
        metrics = stack.service("delivery", index).metrics()
        match = re.search(
            r'staffetta_delivery_attempts_total\{result="delivered",route="relay"\} (\S+)', metrics
        )
        if match and float(match.group(1)) > 0:
            workers_that_delivered += 1
    assert workers_that_delivered >= 2, "the queue was not shared between the workers"
