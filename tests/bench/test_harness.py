"""The benchmark harness's own logic: parsing, pairing, summaries, config. No timings."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import postfix, profiling, results, sink, source, stats, sweep
from bench.procstat import ProcSampler, ProcStat, Usage, parse_stat, parse_status_kb, tree


def test_percentiles_interpolate_and_spread_keeps_extremes() -> None:
    assert stats.percentile([], 50) is None
    assert stats.percentile([3.0], 99) == 3.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert stats.percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    spread = stats.Spread.of([5.0, None, 1.0, 3.0])
    assert spread == stats.Spread(3.0, 1.0, 5.0)
    assert stats.Spread.of([None]) is None
    assert stats.ratio(2.0, 0.0) is None


def test_proc_stat_line_with_spaces_and_parentheses_in_the_name() -> None:
    line = "42 (python (x) y) S 7 1 1 0 -1 0 0 0 0 0 100 50 3 2 20 0 1 0 5 0 0"
    parsed = parse_stat(line)
    assert parsed == ProcStat(pid=42, comm="python (x) y", ppid=7, ticks=155)
    assert parse_status_kb("Name:\tx\nVmHWM:\t  2048 kB\n", "VmHWM") == 2048
    assert parse_status_kb("Name:\tx\n", "VmHWM") == 0


def test_tree_follows_descendants_only() -> None:
    table = {
        1: ProcStat(1, "master", 0, 1),
        2: ProcStat(2, "smtpd", 1, 2),
        3: ProcStat(3, "cleanup", 2, 4),
        9: ProcStat(9, "other", 0, 8),
    }
    assert sorted(stat.pid for stat in tree(table, [1])) == [1, 2, 3]
    assert tree(table, [5]) == []


def test_sampler_sees_a_busy_child_and_its_memory() -> None:
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", busy])
    sampler = ProcSampler({"child": [child.pid], "me": [os.getpid()]}, interval=0.05)
    sampler.begin()
    # The child is ours: measure it while it lives, then let it go.
    child.wait(30)
    usage = sampler.end()
    assert set(usage.cpu_seconds) == {"child", "me"}
    assert usage.peak_rss_mb["me"]["me"] > 0
    assert usage.peak_total_pss_mb["me"] > 0
    assert all(seconds >= 0 for seconds in usage.cpu_seconds.values())


def test_counter_parsing_keeps_the_unfinished_token() -> None:
    numbers, rest = source.parse_counter(b"1\r2\r3\r1")
    assert numbers == [1, 2, 3]
    assert rest == b"1"
    numbers, rest = source.parse_counter(rest + b"0\r\n")
    assert numbers == [10]


def test_source_command_numbers_recipients_and_counts() -> None:
    plan = source.SourcePlan("127.0.0.1", 2525, 10, 1024, 20, tag="warm")
    command = plan.command()
    assert command[0] == "smtp-source"
    assert {"-c", "-N"} <= set(command)
    assert command[command.index("-m") + 1] == "10"
    assert command[command.index("-t") + 1] == "warm@bench.test"
    assert command[-1] == "127.0.0.1:2525"
    assert "-d" in source.SourcePlan("h", 1, 1, 1, reuse_connections=True).command()


def test_dump_header_gives_tag_and_sequence() -> None:
    smtp_source = b"X-Mail-Args: <a@b>\nX-Rcpt-Args: <17user@bench.test>\nReceived: x\n"
    postfix_relay = b"X-Rcpt-Args: <5warm@bench.test> ORCPT=rfc822;5warm@bench.test\n"
    assert sink.parse_dump(smtp_source) == ("user", 17)
    assert sink.parse_dump(postfix_relay) == ("warm", 5)
    assert sink.parse_dump(b"X-Rcpt-Args: <nobody@bench.test>\n") is None


def test_run_summary_pairs_accepts_and_deliveries_by_number() -> None:
    run = source.SourceRun(started=100.0, finished=102.0, accepted_at=[100.5, 101.0, 101.5, 102.0])
    delivered = {1: 100.6, 2: 101.2, 3: 101.8, 4: 102.4}
    usage = Usage(
        cpu_seconds={"ingress": 0.2, "rabbitmq": 0.2, "sink": 0.1},
        peak_rss_mb={"ingress": {"ingress": 70.0}},
        peak_total_pss_mb={"ingress": 60.0, "rabbitmq": 300.0},
    )
    summary = results.summarise_run(
        "staffetta", 1024, run, delivered, usage, ["ingress", "rabbitmq"]
    )
    assert summary["accepted"] == summary["delivered"] == 4
    assert summary["complete"]
    assert summary["accept_rate"] == pytest.approx(2.0)
    assert summary["e2e_rate"] == pytest.approx(4 / 2.4)
    assert summary["latency"]["p50_ms"] == pytest.approx(250.0)
    assert summary["latency"]["max_ms"] == pytest.approx(400.0)
    assert summary["system_cpu_per_1000"] == pytest.approx(100.0)
    assert summary["system_peak_pss_mb"] == pytest.approx(60.0)
    assert summary["broker_peak_pss_mb"] == pytest.approx(300.0)


def test_aggregate_ratios_and_table() -> None:
    def fake(system: str, e2e: float, cpu: float) -> dict[str, object]:
        run = source.SourceRun(0.0, 1.0, accepted_at=[0.5] * 10)
        usage = Usage(cpu_seconds={system: cpu}, peak_total_pss_mb={system: 10.0})
        summary = results.summarise_run(system, 1024, run, {1: e2e}, usage, [system])
        return summary

    runs = [fake("postfix", 0.6, 0.01), fake("postfix", 0.7, 0.03), fake("staffetta", 0.9, 0.04)]
    runs.append({"system": "staffetta", "size": 1024, "error": "boom"})
    rows = results.aggregate(runs)
    assert [(row["system"], row["runs"]) for row in rows] == [("postfix", 2), ("staffetta", 1)]
    assert rows[0]["cpu_per_1000"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    ratio_rows = results.ratios(rows)
    assert ratio_rows[0]["cpu_per_1000"] == pytest.approx(2.0)
    text = results.table(rows, ratio_rows)
    assert "postfix" in text and "staffetta" in text and "Staffetta / Postfix" in text
    assert "INCOMPLETE" in text  # one delivery out of ten accepted


@pytest.mark.skipif(shutil.which("postconf") is None, reason="Postfix is not installed")
def test_postfix_config_is_accepted_by_postconf(tmp_path: Path) -> None:
    postfix.write_config(tmp_path, 2600, ("127.0.0.2", 2601))
    done = subprocess.run(
        ["postconf", "-c", str(tmp_path), "-n", "relayhost", "inet_interfaces"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "relayhost = [127.0.0.2]:2601" in done.stdout
    master = subprocess.run(
        ["postconf", "-c", str(tmp_path), "-M", "127.0.0.1:2600/inet"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "smtpd" in master.stdout


def test_profile_summary_counts_leaves_and_our_functions() -> None:
    lines = [
        "process 1;run (asyncio/base_events.py:600);"
        "handle (/work/main/services/ingress/handler.py:10);dumps (json/encoder.py:20) 30",
        "process 1;run (asyncio/base_events.py:600);select (selectors.py:5) 70",
    ]
    spots = profiling.summarise(profiling.parse_collapsed(lines))
    assert spots.samples == 100
    assert spots.self_time[0] == ("select (selectors.py)", 0.7)
    assert spots.own_inclusive == [("handle (services/ingress/handler.py)", 0.3)]
    assert spots.loop_share == pytest.approx(0.7)


def test_sweep_message_knee_and_step_summary() -> None:
    body = sweep.message_bytes(1024, 1)
    assert body.endswith(b"\r\n") and b"\r\n\r\n" in body
    assert 1024 <= len(body) < 1400
    step = {"offered_rate": 10.0, "delivered_rate": 10.0, "total": {"p95_ms": 20.0}}
    slow = {"offered_rate": 20.0, "delivered_rate": 20.0, "total": {"p95_ms": 500.0}}
    behind = {"offered_rate": 40.0, "delivered_rate": 20.0, "total": {"p95_ms": 30.0}}
    assert sweep.find_knee([step]) is None
    assert sweep.find_knee([step, slow]) == 20.0
    assert sweep.find_knee([step, behind]) == 40.0
    recovered = {"offered_rate": 80.0, "delivered_rate": 80.0, "total": {"p95_ms": 25.0}}
    assert sweep.find_knee([step, behind, recovered]) is None
    assert sweep.find_knee([step, slow, behind]) == 20.0
    record = sweep.StepRecord(10.0, "s", due={1: 0.0, 2: 0.1}, accepted={1: 0.01, 2: 0.11})
    summary = sweep.summarise_step(record, {1: 0.05, 2: 0.2}, {"ingress": 0.002}, ["ingress"])
    assert summary["delivered"] == 2
    assert summary["total"]["max_ms"] == pytest.approx(100.0)
    assert summary["cpu_per_1000"] == pytest.approx(1.0)


def _has_postfix_user() -> bool:
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return False
    return True


needs_tools = pytest.mark.skipif(
    shutil.which("smtp-source") is None or os.geteuid() != 0 or not _has_postfix_user(),
    reason="needs Postfix's smtp-source/smtp-sink, run as root (the sink drops to 'postfix')",
)


@needs_tools
def test_ceiling_run_counts_every_message_through_the_real_tools() -> None:
    from bench.compare import ComparePlan, run_one

    plan = ComparePlan(count=25, sizes=(512,), sessions=3, runs=1, warmup=5, timeout=60)
    result = run_one("ceiling", 512, plan)
    assert "error" not in result, result.get("error")
    assert result["accepted"] == result["delivered"] == 25
    assert result["latency"]["p50_ms"] is not None
    assert {"sink", "source"} <= set(result["cpu_seconds"])


@needs_tools
def test_waiting_for_the_sink_ends_when_the_system_fails() -> None:
    receiver = sink.Sink()
    receiver.start()
    try:
        with pytest.raises(sink.SystemFailed, match="router exited with -9"):
            receiver.wait_for("user", 1, 5.0, lambda: "router exited with -9")
        assert receiver.wait_for("user", 0, 5.0, lambda: "not asked: nothing to wait for")
    finally:
        receiver.stop()


def test_staffetta_names_the_service_that_exited() -> None:
    from bench.systems import Staffetta

    def service(name: str, exit_code: int | None) -> SimpleNamespace:
        return SimpleNamespace(
            name=name,
            process=SimpleNamespace(poll=lambda: exit_code),
            log_tail=lambda lines: f"last lines of {name}",
        )

    system = Staffetta()
    try:
        assert system.failure() is None  # not started
        system.stack = SimpleNamespace(processes=[service("ingress", None)])  # type: ignore[assignment]
        assert system.failure() is None
        system.stack.processes.append(service("router", -9))
        assert system.failure() == "router exited with -9:\nlast lines of router"
    finally:
        system.stack = None
        system.stop()


def test_sizes_take_k_and_m() -> None:
    from bench.cli import parse_size

    assert parse_size("50k") == 51_200
    assert parse_size("25m") == 25 * 2**20
    assert parse_size("1000") == 1000


def test_big_message_report_shows_growth_per_message_size() -> None:
    from bench import big_message

    body = big_message.message_of(10 * 2**20)
    assert abs(len(body) - 10 * 2**20) < 100 and body.endswith(b"\r\n")
    assert big_message.peak_rss_mb(os.getpid()) > 1
    shown = big_message.report(
        {
            "message_bytes": 2**20 * 10,
            "delivered": True,
            "seconds": 1.0,
            "peak_rss_mb": {"router": {"before": 50.0, "after": 70.0}},
        }
    )
    assert "router" in shown and "(+20, 2.0x the message)" in shown


def test_cpu_profile_summary_counts_per_message(tmp_path: Path) -> None:
    import cProfile
    import time

    from bench import cpu_profile

    def busy() -> int:
        return sum(range(20_000))

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(10):
        busy()
    profiler.disable()
    path = tmp_path / "router-1.prof"
    profiler.dump_stats(str(path))

    found = cpu_profile.summarise(path, messages=5)
    assert found["cpu_seconds"] > 0
    busy_rows = [row for row in found["own"] if row["function"].startswith("busy ")]
    assert busy_rows and busy_rows[0]["calls_per_message"] == 2.0
    shown = cpu_profile.report(
        {"size": 1024, "messages": 5, "folder": str(tmp_path), "services": {"router-1": found}}
    )
    assert "router-1:" in shown and "busy (" in shown


def test_free_port_never_hands_out_a_port_twice_in_one_process() -> None:
    from tests.support import stack

    ports = [stack.free_port() for _ in range(2_000)]
    assert len(set(ports)) == len(ports)
    assert all(stack.LOWEST_PORT <= port < stack._EPHEMERAL_FLOOR for port in ports)


def test_broker_scheduler_answers_are_parsed_strictly() -> None:
    from bench.broker import parse_count

    assert parse_count("2") == 2
    assert parse_count(None) is None
    assert parse_count("{badrpc,nodedown}") is None
    assert parse_count("") is None


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs the local RabbitMQ")
def test_broker_schedulers_are_set_for_the_block_and_put_back() -> None:
    from bench.broker import broker_schedulers, schedulers_online

    before = schedulers_online()
    if before is None:
        pytest.skip("rabbitmqctl cannot reach the local node")
    with broker_schedulers(1) as online:
        assert online == 1
        assert schedulers_online() == 1
    assert schedulers_online() == before
    with broker_schedulers(0) as online:  # 0: left as it is
        assert online == before
    assert schedulers_online() == before
