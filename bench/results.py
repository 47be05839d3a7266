"""From raw measurements to per-run numbers, then to medians and a printed table. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.procstat import Usage
from bench.source import SourceRun
from bench.stats import Spread, latency_summary, rate, ratio

TOOLS = ("source", "sink")
BROKER = "rabbitmq"


def summarise_run(
    system: str,
    size: int,
    run: SourceRun,
    delivered: Mapping[int, float],
    usage: Usage,
    system_groups: Sequence[str],
) -> dict[str, Any]:
    """One run: rates from smtp-source's start, latencies by sequence number."""
    accepted = run.accepted
    last = max(delivered.values()) if delivered else None
    accept_seconds = run.finished - run.started
    e2e_seconds = (last - run.started) if last is not None else None
    latencies = [
        at - run.accepted_at[number - 1]
        for number, at in delivered.items()
        if 1 <= number <= accepted
    ]
    per_1000 = {
        group: seconds * 1000.0 / accepted if accepted else None
        for group, seconds in usage.cpu_seconds.items()
    }
    system_cpu = [per_1000.get(group) for group in system_groups]
    return {
        "system": system,
        "size": size,
        "accepted": accepted,
        "delivered": len(delivered),
        "complete": accepted > 0 and len(delivered) >= accepted,
        "source_exit": run.exit_code,
        "source_errors": run.stderr if run.exit_code else "",
        "accept_seconds": accept_seconds,
        "e2e_seconds": e2e_seconds,
        "accept_rate": rate(accepted, accept_seconds),
        "e2e_rate": rate(len(delivered), e2e_seconds) if e2e_seconds else None,
        "latency": latency_summary(latencies),
        "cpu_seconds": usage.cpu_seconds,
        "cpu_per_1000": per_1000,
        "system_groups": list(system_groups),
        "system_cpu_per_1000": (
            sum(v for v in system_cpu if v is not None) if system_groups else None
        ),
        "peak_rss_mb": usage.peak_rss_mb,
        "peak_total_pss_mb": usage.peak_total_pss_mb,
        # The broker is shared and long-lived: its whole footprint is shown on its own.
        "system_peak_pss_mb": (
            sum(usage.peak_total_pss_mb.get(g, 0.0) for g in system_groups if g != BROKER)
            if system_groups
            else None
        ),
        "broker_peak_pss_mb": usage.peak_total_pss_mb.get(BROKER)
        if BROKER in system_groups
        else None,
    }


METRICS: dict[str, Any] = {
    "accept_rate": lambda r: r["accept_rate"],
    "e2e_rate": lambda r: r["e2e_rate"],
    "p50_ms": lambda r: r["latency"]["p50_ms"],
    "p95_ms": lambda r: r["latency"]["p95_ms"],
    "p99_ms": lambda r: r["latency"]["p99_ms"],
    "cpu_per_1000": lambda r: r["system_cpu_per_1000"],
    "tools_cpu_per_1000": lambda r: sum(r["cpu_per_1000"].get(t) or 0.0 for t in TOOLS),
    "rabbitmq_cpu_per_1000": lambda r: r["cpu_per_1000"].get("rabbitmq"),
    "peak_pss_mb": lambda r: r["system_peak_pss_mb"],
    "broker_pss_mb": lambda r: r.get("broker_peak_pss_mb"),
}


def aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Median and min-max per (size, system), in the order first seen."""
    runs = [run for run in runs if not run.get("profiled")]
    keys: list[tuple[int, str]] = []
    for run in runs:
        if "error" not in run and (run["size"], run["system"]) not in keys:
            keys.append((run["size"], run["system"]))
    rows = []
    for size, system in keys:
        mine = [r for r in runs if r["size"] == size and r["system"] == system and "error" not in r]
        row: dict[str, Any] = {"size": size, "system": system, "runs": len(mine)}
        row["complete"] = all(r["complete"] for r in mine)
        for name, pick in METRICS.items():
            spread = Spread.of([pick(r) for r in mine])
            row[name] = spread.as_dict() if spread else None
        row["groups_cpu_per_1000"] = _group_medians(mine)
        row["peak_rss_by_process_mb"] = _peak_by_label(mine)
        rows.append(row)
    return rows


def _group_medians(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    groups = {g for r in runs for g in r["cpu_per_1000"]}
    found = {}
    for group in sorted(groups):
        spread = Spread.of([r["cpu_per_1000"].get(group) for r in runs])
        if spread is not None:
            found[group] = spread.median
    return found


def _peak_by_label(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for run in runs:
        for group in run["system_groups"]:
            for label, mb in run["peak_rss_mb"].get(group, {}).items():
                peaks[label] = max(peaks.get(label, 0.0), mb)
    return dict(sorted(peaks.items()))


def ratios(
    rows: Sequence[Mapping[str, Any]], a: str = "staffetta", b: str = "postfix"
) -> list[dict[str, Any]]:
    """Staffetta/Postfix per size, on medians."""
    found = []
    for size in sorted({row["size"] for row in rows}):
        by = {row["system"]: row for row in rows if row["size"] == size}
        if a not in by or b not in by:
            continue
        entry: dict[str, Any] = {"size": size}
        for name in ("accept_rate", "e2e_rate", "p50_ms", "p95_ms", "cpu_per_1000", "peak_pss_mb"):
            x, y = by[a][name], by[b][name]
            entry[name] = ratio(x and x["median"], y and y["median"])
        found.append(entry)
    return found


def _cell(spread: Mapping[str, float] | None, digits: int = 0) -> str:
    if spread is None:
        return "-"
    return f"{spread['median']:.{digits}f} [{spread['min']:.{digits}f}-{spread['max']:.{digits}f}]"


def _mb(spread: Mapping[str, float] | None) -> str:
    return f"{spread['median']:.0f}" if spread else "-"


def size_label(size: int) -> str:
    return f"{size // 1024} KB" if size % 1024 == 0 else f"{size} B"


def table(rows: Sequence[Mapping[str, Any]], ratio_rows: Sequence[Mapping[str, Any]]) -> str:
    head = (
        f"{'size':>6} {'system':<17} {'accept msg/s':>20} {'end-to-end msg/s':>20} "
        f"{'p50 ms':>18} {'p95 ms':>18} {'p99 ms':>18} {'CPU s/1k msg':>18} {'PSS MB':>8} "
        f"{'+broker':>8}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        rss = row["peak_pss_mb"]
        lines.append(
            f"{size_label(row['size']):>6} {row['system']:<17} {_cell(row['accept_rate']):>20} "
            f"{_cell(row['e2e_rate']):>20} {_cell(row['p50_ms']):>18} {_cell(row['p95_ms']):>18} "
            f"{_cell(row['p99_ms']):>18} {_cell(row['cpu_per_1000'], 2):>18} "
            f"{_mb(rss):>8} {_mb(row['broker_pss_mb']):>8}"
            + ("" if row["complete"] else "  (INCOMPLETE: not all delivered)")
        )
    lines.append("")
    lines.append(
        "CPU: the system's processes (Staffetta: its services + RabbitMQ). PSS: peak summed "
        "proportional set size of the system's processes; +broker: RabbitMQ's whole (shared) "
        "footprint. Latency: smtp-source accept -> in the sink; at full load it is mostly "
        "backlog (see --sweep)."
    )
    lines.append("CPU s per 1,000 messages by process group (median):")
    for row in rows:
        groups = ", ".join(f"{g} {v:.2f}" for g, v in row["groups_cpu_per_1000"].items())
        lines.append(f"  {size_label(row['size']):>6} {row['system']:<17} {groups}")
    lines.append("Peak RSS (VmHWM) per process, MB:")
    for row in rows:
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in row["peak_rss_by_process_mb"].items())
        if peaks:
            lines.append(f"  {size_label(row['size']):>6} {row['system']:<17} {peaks}")
    if ratio_rows:
        lines.append("Staffetta / Postfix (medians):")
        for entry in ratio_rows:
            parts = [
                f"{name} x{value:.2f}"
                for name, value in entry.items()
                if name != "size" and value is not None
            ]
            lines.append(f"  {size_label(entry['size']):>6} " + ", ".join(parts))
    return "\n".join(lines)
