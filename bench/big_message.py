"""``--big-message SIZE``: how much one big message raises each service's peak RSS.

Issue 7 asks that a 25 MiB message not be multiplied in memory per copy. The
stack relays one message of SIZE (smtplib, then the sink), and the change in
each process's VmHWM (peak resident set) before and after is reported: about
one SIZE means the service held the message once, two means once plus one
wire buffer.
"""

from __future__ import annotations

import argparse
import smtplib
import time
from pathlib import Path
from typing import Any

from bench.compare import ComparePlan, make_system, serving
from bench.procstat import parse_status_kb

_LINE = b"La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4.\r\n"


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process, in MB (2**20 bytes)."""
    return parse_status_kb(Path(f"/proc/{pid}/status").read_text(), "VmHWM") / 1024


def message_of(size: int) -> bytes:
    """A message of about ``size`` bytes with ordinary 76-octet lines."""
    return b"Subject: big\r\n\r\n" + _LINE * max(1, size // len(_LINE))


def measure(plan: ComparePlan, size: int) -> dict[str, Any]:
    body = message_of(size)
    timeout = plan.timeout
    system = make_system("staffetta", plan)
    with serving(system) as sink:
        pids = {name: pids[0] for name, pids in system.groups().items()}
        with smtplib.SMTP(system.host, system.port, timeout=timeout) as client:
            client.sendmail("a@source.test", ["1warm@bench.test"], b"Subject: w\r\n\r\nx\r\n")
        sink.wait_for("warm", 1, timeout, system.failure)
        before = {name: peak_rss_mb(pid) for name, pid in pids.items()}
        started = time.monotonic()
        with smtplib.SMTP(system.host, system.port, timeout=timeout) as client:
            client.sendmail("a@source.test", ["1user@bench.test"], body)
        delivered = sink.wait_for("user", 1, timeout, system.failure)
        seconds = time.monotonic() - started
        after = {name: peak_rss_mb(pid) for name, pid in pids.items()}
    return {
        "message_bytes": len(body),
        "delivered": delivered,
        "seconds": seconds,
        "peak_rss_mb": {name: {"before": before[name], "after": after[name]} for name in pids},
    }


def report(result: dict[str, Any]) -> str:
    size_mb = result["message_bytes"] / 2**20
    lines = [
        f"one {size_mb:.1f} MiB message, delivered={result['delivered']} "
        f"in {result['seconds']:.1f} s; peak RSS per service, MB:"
    ]
    for name, peak in result["peak_rss_mb"].items():
        grown = peak["after"] - peak["before"]
        lines.append(
            f"  {name:9s} {peak['before']:6.0f} -> {peak['after']:6.0f}"
            f"  (+{grown:.0f}, {grown / size_mb:.1f}x the message)"
        )
    return "\n".join(lines)


def run_big_message_command(args: argparse.Namespace, plan: ComparePlan, stamp: str) -> int:
    from bench.cli import environment, parse_size, write_json

    result = measure(plan, parse_size(args.big_message))
    print(report(result))
    document = {"mode": "big-message", "env": environment(), "result": result}
    print(f"JSON: {write_json(args.output, f'big-message-{stamp}.json', document)}")
    return 0 if result["delivered"] else 1
