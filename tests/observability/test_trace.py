"""`staffetta trace QUEUEID` on the logs of a real stack run (the four services as processes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.observability.traffic import (
    DEFERRED,
    LOCAL,
    REFUSED,
    RELAYED,
    SENDER,
    send_traffic,
    traffic_env,
)
from tests.support.mx_server import MxServers
from tests.support.stack import Stack

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


def trace(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "trace", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubectl_prefixed(workdir: Path) -> str:
    """The stack's logs as `kubectl logs --prefix` shows them, one pod after another."""
    lines = []
    for log in sorted(workdir.glob("*.log")):
        service = log.stem.rsplit("-", 1)[0]
        pod = f"[pod/staffetta-{service}-7d9f8b6c5-x2x4q/{service}]"
        lines += [f"{pod} {line}" for line in log.read_text().splitlines()]
    return "\n".join(lines) + "\n"


def index(lines: list[str], *words: str) -> int:
    """The position of the first line containing every word."""
    for position, line in enumerate(lines):
        if all(word in line for word in words):
            return position
    raise AssertionError(f"no line with {words}:\n" + "\n".join(lines))


def test_trace_follows_a_message_and_its_dsn(
    stack_factory: Any, mx: MxServers, tmp_path: Path
) -> None:
    stack: Stack = stack_factory(**traffic_env(tmp_path / "settings"))
    queue_id = send_traffic(stack, mx).queue_id
    codes = stack.stop()  # SIGTERM: every service finishes and flushes its log
    assert set(codes.values()) == {0}, stack.logs()

    dsn_lines = [
        json.loads(line)
        for line in (stack.workdir / "bounce-1.log").read_text().splitlines()
        if '"dsn_queued"' in line
    ]
    assert [line["queue_id"] for line in dsn_lines] == [queue_id]
    dsn_id = dsn_lines[0]["dsn_queue_id"]

    result = trace(queue_id, "--logs", str(stack.workdir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{queue_id}  linked: {dsn_id} (DSN)"

    # Time order, and the journey in it.
    times = [line.split()[0] for line in lines[1:] if re.match(r"\d{4}-\d\d-\d\dT", line)]
    assert times == sorted(times) and len(times) >= 10
    accepted = index(lines, "ingress", "accepted from <sender@local.test> for 4 recipient(s)")
    routed = index(lines, "router", "routed: 1 local and 3 relay recipient(s) in 3 job(s)")
    stored = index(lines, "delivery", f"delivered {LOCAL} (local, attempt 1)")
    relayed = index(lines, "delivery", f"delivered {RELAYED} (relay, attempt 1)", "250")
    deferred = index(lines, "delivery", f"deferred {DEFERRED} (relay, attempt 1)", "451 4.7.1")
    retried = index(lines, "delivery", f"delivered {DEFERRED} (relay, attempt 2)", "250")
    failed = index(lines, "delivery", f"failed {REFUSED} (relay, attempt 1)", "550 5.1.1")
    bounced = index(lines, "bounce", f"failure DSN {dsn_id} queued to the sender for {REFUSED}")
    dsn_routed = index(lines, "router", f"[{dsn_id}] routed: 1 local")
    dsn_stored = index(lines, "delivery", f"[{dsn_id}] delivered {SENDER} (local")
    # A hop logs its outcome after its outputs are confirmed, so the next hop's
    # line may come first under load; what is fixed is that nothing precedes the
    # acceptance, the retry follows the deferral, and the DSN follows the bounce.
    assert accepted < min(routed, stored, relayed, deferred, failed)
    assert deferred < retried
    assert bounced < min(dsn_routed, dsn_stored)

    summary = lines[index(lines, "recipients:") + 1 :]
    states = {line.split()[0]: line for line in summary}
    assert set(states) == {LOCAL, RELAYED, DEFERRED, REFUSED, SENDER}
    for recipient in (LOCAL, RELAYED, DEFERRED):
        assert " delivered: " in states[recipient]
    assert " failed: 5.1.1 " in states[REFUSED] and "no such user" in states[REFUSED]
    assert f"[{dsn_id}]" in states[SENDER] and " delivered: " in states[SENDER]

    # kubectl logs --prefix on standard input gives the same journey.
    piped = trace(queue_id, stdin=kubectl_prefixed(stack.workdir))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == result.stdout

    # From the DSN's id, the original message is linked the other way round.
    from_dsn = trace(dsn_id, "--logs", *map(str, sorted(stack.workdir.glob("*.log"))))
    assert from_dsn.returncode == 0, from_dsn.stderr
    assert from_dsn.stdout.splitlines()[0] == f"{dsn_id}  linked: {queue_id} (original message)"

    # --json: the raw log lines of the journey, in the same order.
    raw = trace(queue_id, "--json", "--logs", str(stack.workdir))
    events = [json.loads(line) for line in raw.stdout.splitlines()]
    assert events[0]["event"] == "accepted" and events[0]["queue_id"] == queue_id
    assert {event["service"] for event in events} == {"ingress", "router", "delivery", "bounce"}
    assert len(events) == len(times)

    unknown = trace("NOSUCHQUEUEID", "--logs", str(stack.workdir))
    assert unknown.returncode == 1
    assert "no log line mentions NOSUCHQUEUEID" in unknown.stderr
    assert unknown.stdout == ""
