"""The alert rules and dashboards the chart ships use the contract's metric names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.helm.chart import CHART, render

CONTRACT_METRICS = {
    "staffetta_ingress_messages_total",
    "staffetta_ingress_sessions_total",
    "staffetta_router_recipients_total",
    "staffetta_delivery_attempts_total",
    "staffetta_delivery_duration_seconds",
    "staffetta_bounces_total",
}
RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))


def metric_names(text: str) -> set[str]:
    names = set(re.findall(r"\bstaffetta_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run scripts/install-test-tools.sh (make test-tools)")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_and_dashboards_use_contract_metrics_only() -> None:
    rules = metric_names(RULES.read_text())
    assert "staffetta_delivery_attempts_total" in rules
    assert rules <= CONTRACT_METRICS
    assert DASHBOARDS
    for dashboard in DASHBOARDS:
        data = json.loads(dashboard.read_text())
        assert data["uid"] and data["title"] and data["panels"]
        assert metric_names(dashboard.read_text()) <= CONTRACT_METRICS


def test_prometheus_rule_embeds_the_rules_file() -> None:
    rule = render("production").get("PrometheusRule", "staffetta")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
