"""``--sweep``: offered load in steps, latency per step, to find the knee.

Our own rate-limited client (aiosmtplib, a pool of persistent sessions): message i of
a step is due at ``start + i / rate`` whatever happened to the ones before (open
loop), so a slow server shows up as queueing delay rather than a politely slower
client -- until every session is busy, when the offered rate can no longer be kept
(reported as the achieved rate). Each step is drained before the next begins.

Three latencies per message: ``smtp`` = due -> 250 reply, ``pipeline`` = 250 reply
-> in the sink (as in the comparison), ``total`` = due -> in the sink.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from bench.compare import ComparePlan, make_system, serving
from bench.procstat import ProcSampler, find_pids
from bench.sink import Sink
from bench.stats import latency_summary, rate
from bench.systems import System

SENDER = "bench@source.test"


def message_bytes(size: int, sequence: int) -> bytes:
    headers = (
        f"From: <{SENDER}>\r\nTo: <user@bench.test>\r\nSubject: sweep {sequence}\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: {make_msgid(domain='source.test')}\r\n\r\n"
    )
    line = b"X" * 76 + b"\r\n"
    lines, rest = divmod(size, len(line))
    tail = b"X" * max(rest - 2, 1) + b"\r\n"
    return headers.encode() + line * lines + tail


@dataclass
class StepRecord:
    rate: float
    tag: str
    due: dict[int, float] = field(default_factory=dict)
    accepted: dict[int, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class ClientPool:
    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self.idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            self.idle.put_nowait(await self._connect())

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, start_tls=False, local_hostname="source.test"
        )
        await client.connect()
        return client

    async def send(self, number: int, record: StepRecord, body: bytes) -> None:
        client = await self.idle.get()
        try:
            await client.sendmail(SENDER, [f"{number}{record.tag}@bench.test"], body)
            record.accepted[number] = time.time()
        except (aiosmtplib.SMTPException, OSError) as error:
            record.errors.append(str(error)[:200])
            with contextlib.suppress(Exception):
                client.close()
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                client = await self._connect()
        finally:
            self.idle.put_nowait(client)

    async def close(self) -> None:
        while not self.idle.empty():
            client = self.idle.get_nowait()
            with contextlib.suppress(Exception):
                await client.quit()


async def offer(pool: ClientPool, record: StepRecord, seconds: float, size: int) -> None:
    loop = asyncio.get_running_loop()
    count = max(1, int(record.rate * seconds))
    start = loop.time()
    wall = time.time()
    tasks = []
    for index in range(count):
        delay = start + index / record.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        number = index + 1
        record.due[number] = wall + index / record.rate
        body = message_bytes(size, number)
        tasks.append(asyncio.create_task(pool.send(number, record, body)))
    await asyncio.gather(*tasks)


def summarise_step(
    record: StepRecord, delivered: dict[int, float], cpu: dict[str, float], groups: Sequence[str]
) -> dict[str, Any]:
    first = min(record.due.values())
    smtp = [record.accepted[n] - record.due[n] for n in record.accepted]
    pipeline = [at - record.accepted[n] for n, at in delivered.items() if n in record.accepted]
    total = [at - record.due[n] for n, at in delivered.items() if n in record.due]
    last_accept = max(record.accepted.values(), default=first)
    last_delivery = max(delivered.values(), default=first)
    accepted = len(record.accepted)
    system_cpu = sum(cpu.get(g, 0.0) for g in groups)
    return {
        "offered_rate": record.rate,
        "sent": len(record.due),
        "accepted": accepted,
        "delivered": len(delivered),
        "errors": len(record.errors),
        "first_error": record.errors[0] if record.errors else "",
        "accept_rate": rate(accepted, last_accept - first),
        "delivered_rate": rate(len(delivered), last_delivery - first),
        "smtp": latency_summary(smtp),
        "pipeline": latency_summary(pipeline),
        "total": latency_summary(total),
        "cpu_per_1000": system_cpu * 1000.0 / accepted if accepted else None,
    }


def find_knee(steps: Sequence[dict[str, Any]]) -> float | None:
    """The lowest offered rate from which every step is overloaded: delivered < 90 % of
    the offer, or total p95 > 5x the best p95 of the lower steps. A lone bad step
    followed by good ones is noise (another process took the CPUs), not the knee.
    None when the last step still kept up."""
    best: float | None = None
    knee: float | None = None
    for step in steps:
        p95 = step["total"]["p95_ms"]
        kept = (step["delivered_rate"] or 0.0) >= 0.9 * step["offered_rate"]
        slow = p95 is not None and best is not None and p95 > 5 * max(best, 1.0)
        overloaded = not kept or slow
        if not overloaded:
            knee = None
        elif knee is None:
            knee = float(step["offered_rate"])
        if p95 is not None:
            best = p95 if best is None else min(best, p95)
    return knee


async def sweep_system(
    system: System, sink: Sink, rates: Sequence[float], seconds: float, connections: int, size: int
) -> list[dict[str, Any]]:
    own = system.groups()
    groups = [*own, "rabbitmq"] if system.name.startswith("staffetta") else list(own)
    pool = ClientPool(system.host, system.port, connections)
    await pool.open()
    steps = []
    try:
        warm = StepRecord(50.0, tag="warmx")  # spawn Postfix's daemons, fill caches
        await offer(pool, warm, 1.0, size)
        await asyncio.to_thread(sink.wait_for, warm.tag, len(warm.accepted), 60.0, system.failure)
        for index, offered in enumerate(rates, 1):
            record = StepRecord(offered, tag=f"step{index}x")
            sampler = ProcSampler({**own, "rabbitmq": find_pids("beam.smp")})
            sampler.begin()
            await offer(pool, record, seconds, size)
            timeout = max(30.0, 3 * seconds)
            await asyncio.to_thread(
                sink.wait_for, record.tag, len(record.accepted), timeout, system.failure
            )
            usage = sampler.end()
            step = summarise_step(record, sink.times(record.tag), usage.cpu_seconds, groups)
            steps.append(step)
            print(step_line(system.name, step), flush=True)
    finally:
        await pool.close()
    return steps


def step_line(name: str, step: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    return (
        f"  {name:<10} offered {step['offered_rate']:>6.0f}/s  accepted "
        f"{step['accept_rate'] or 0:>6.0f}/s  delivered {step['delivered_rate'] or 0:>6.0f}/s  "
        f"smtp p50/p95 {ms(step['smtp']['p50_ms'])}/{ms(step['smtp']['p95_ms'])} ms  "
        f"total p50/p95/p99 {ms(step['total']['p50_ms'])}/{ms(step['total']['p95_ms'])}/"
        f"{ms(step['total']['p99_ms'])} ms  errors {step['errors']}"
    )


def run_sweep(
    name: str,
    plan: ComparePlan,
    rates: Sequence[float],
    seconds: float,
    connections: int,
    size: int,
) -> dict[str, Any]:
    system = make_system(name, plan)
    try:
        with serving(system) as sink:
            steps = asyncio.run(sweep_system(system, sink, rates, seconds, connections, size))
        return {"system": name, "size": size, "steps": steps, "knee": find_knee(steps)}
    except Exception as error:  # reported, never fatal
        return {"system": name, "size": size, "error": repr(error)}


def run_sweep_command(args: argparse.Namespace, stamp: str) -> int:
    from bench.cli import compare_plan, environment, parse_list, parse_size, write_json

    plan = compare_plan(args, stamp)
    rates = [float(r) for r in parse_list(args.rates)]
    systems = parse_list(args.systems) if args.systems else ["staffetta"]
    size = parse_size(args.size)
    results = []
    for name in systems:
        print(f"sweep {name}: {size} bytes, {args.step_seconds:.0f} s per step", flush=True)
        result = run_sweep(name, plan, rates, args.step_seconds, args.connections, size)
        if "error" in result:
            print(f"  failed: {result['error']}")
        else:
            knee = result["knee"]
            print(f"  knee: {'not reached' if knee is None else f'{knee:.0f} msg/s'}")
        results.append(result)
    document = {"mode": "sweep", "env": environment(), "rates": rates, "results": results}
    print(f"JSON: {write_json(args.output, f'sweep-{stamp}.json', document)}")
    return 0
