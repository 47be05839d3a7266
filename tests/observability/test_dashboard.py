"""The shipped dashboard is what the generator makes, and queries what the services export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deploy.observability import dashboard
from tests.observability.catalog import (
    DASHBOARD,
    ROOT,
    exported_series_names,
    load_dashboard,
    panel_queries,
    series_names,
)

ROWS = {"Traffic in", "Delivery outcomes", "Latency", "Queues and retries", "Bounces", "Errors"}


def test_committed_json_is_the_generator_output() -> None:
    assert dashboard.OUTPUT == DASHBOARD
    assert DASHBOARD.read_text() == dashboard.render(), (
        "deploy/helm/staffetta/files/dashboards/staffetta.json is out of date: "
        "run .venv/bin/python -m deploy.observability.dashboard"
    )


def test_check_mode_of_the_command(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "deploy.observability.dashboard", "--check"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    stale = tmp_path / "never-written.json"
    result = subprocess.run(
        [*command, "--output", str(stale)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "out of date" in result.stderr


def test_rows_and_panels() -> None:
    data = load_dashboard()
    assert data["uid"] == "staffetta"
    rows = [panel["title"] for panel in data["panels"] if panel["type"] == "row"]
    assert set(rows) == ROWS
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert 0 <= panel["gridPos"]["x"] < 24


def test_latency_row_has_p50_p95_p99() -> None:
    legends = {
        target["legendFormat"].split()[0]
        for panel in load_dashboard()["panels"]
        for target in panel.get("targets") or []
        if "histogram_quantile" in target["expr"]
    }
    assert legends == {"p50", "p95", "p99"}


def test_variables_work_without_the_labels() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for name in ("namespace", "instance"):
        variable = variables[name]
        assert variable["includeAll"] and variable["allValue"] == ".*"
        assert variable["current"]["value"] == "$__all"
        assert variable["query"].startswith("label_values(")


def test_every_query_filters_by_namespace_and_instance() -> None:
    for title, expr in panel_queries(load_dashboard()):
        for selector in series_names(expr):
            for occurrence in expr.split(selector)[1:]:
                assert occurrence.startswith('{namespace=~"$namespace", instance=~"$instance"'), (
                    title,
                    expr,
                )


def test_panels_read_only_metrics_the_services_export() -> None:
    exported = exported_series_names()
    used: set[str] = set()
    for title, expr in panel_queries(load_dashboard()):
        names = series_names(expr)
        assert names, (title, expr)
        assert not names - exported, (title, names - exported)
        used |= names
    # The contract's families are all on the dashboard.
    for family in (
        "staffetta_ingress_messages_total",
        "staffetta_ingress_sessions_total",
        "staffetta_router_recipients_total",
        "staffetta_delivery_attempts_total",
        "staffetta_delivery_duration_seconds_bucket",
        "staffetta_bounces_total",
        "staffetta_queue_messages",
        "staffetta_queue_consumers",
    ):
        assert family in used, family
