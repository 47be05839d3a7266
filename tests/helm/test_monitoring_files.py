"""The alert rules and dashboards the chart ships name metrics the services export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.helm.chart import CHART, ROOT, render

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


SUFFIXES = re.compile(r"_(total|created|bucket|sum|count)$")


def metric_names(text: str) -> set[str]:
    """Metric families named in ``text`` (sample suffixes removed)."""
    return {SUFFIXES.sub("", name) for name in re.findall(r"\bstaffetta_[a-z_]+", text)}


def exported_families() -> set[str]:
    """The contract's families plus every ``staffetta_*`` family the services define."""
    source = "\n".join(path.read_text() for path in (ROOT / "services").rglob("*.py"))
    return metric_names(source) | metric_names(" ".join(CONTRACT_METRICS))


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


def expressions(node: Any) -> str:
    """Every PromQL ``expr`` in a rules file or a dashboard, joined."""
    if isinstance(node, dict):
        return "\n".join(
            value if key == "expr" and isinstance(value, str) else expressions(value)
            for key, value in node.items()
        )
    if isinstance(node, list):
        return "\n".join(expressions(item) for item in node)
    return ""


def test_rules_and_dashboards_use_exported_metrics_only() -> None:
    known = exported_families()
    rules = metric_names(expressions(yaml.safe_load(RULES.read_text())))
    assert "staffetta_delivery_attempts" in rules
    assert rules - known == set(), "alerts on metrics no service exports"
    assert DASHBOARDS
    for dashboard in DASHBOARDS:
        data = json.loads(dashboard.read_text())
        assert data["uid"] and data["title"] and data["panels"]
        used = metric_names(expressions(data))
        assert used, f"{dashboard.name} queries no Staffetta metric"
        assert used - known == set(), dashboard.name


def test_prometheus_rule_embeds_the_rules_file() -> None:
    rule = render("production").get("PrometheusRule", "staffetta")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
