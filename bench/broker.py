"""The broker's share of the machine during a bench: its online Erlang schedulers.

The chart runs RabbitMQ with one scheduler (``rabbitmq.standalone.schedulers``). On
this 2-core machine, shared with ingress, router, delivery, smtp-source and
smtp-sink, a broker with one scheduler online spent about 10 % less CPU per 50 KB
message than with two (0.84-0.87 against 0.92-0.99 ms, three alternated runs each;
no difference at 1 KB). The bench gives the machine's broker the chart's setting for
its duration, through ``erlang:system_flag(schedulers_online, N)``, which needs no
restart, and puts the old value back afterwards.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# The chart's default (deploy/helm/staffetta/values.yaml: rabbitmq.standalone.schedulers).
CHART_SCHEDULERS = 1


def _eval(expression: str) -> str | None:
    """``rabbitmqctl eval`` of one Erlang expression on the local node; None if it failed."""
    if shutil.which("rabbitmqctl") is None:
        return None
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", "eval", expression],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def parse_count(answer: str | None) -> int | None:
    """The integer rabbitmqctl printed (``2``), else None."""
    if answer is None or not re.fullmatch(r"\d+", answer):
        return None
    return int(answer)


def schedulers_online() -> int | None:
    return parse_count(_eval("erlang:system_info(schedulers_online)."))


def set_schedulers_online(count: int) -> int | None:
    """Set the local broker's online schedulers; the previous count, or None if refused."""
    return parse_count(_eval(f"erlang:system_flag(schedulers_online, {int(count)})."))


@contextmanager
def broker_schedulers(count: int) -> Iterator[int | None]:
    """The local broker with ``count`` schedulers online for the block (0: unchanged).

    Yields the count in force (None when rabbitmqctl could not tell). Whatever the
    block does, the old count is put back.
    """
    if count <= 0:
        yield schedulers_online()
        return
    previous = set_schedulers_online(count)
    if previous is None:
        log.warning("could not set RabbitMQ's schedulers (rabbitmqctl eval); left as they are")
        yield schedulers_online()
        return
    try:
        yield count
    finally:
        if set_schedulers_online(previous) is None:
            log.warning("could not put RabbitMQ's schedulers back to %d", previous)
