"""What the services export and what the shipped dashboard and alerts query.

The metric families come from the services' own metrics classes, registered on
a fresh registry each, so a renamed metric breaks these tests, not a dashboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from services.bounce.metrics import BounceMetrics
from services.common.queue_metrics import QueueMetrics
from services.common.topology import Topology
from services.delivery.metrics import DeliveryMetrics
from services.ingress.metrics import IngressMetrics
from services.router.metrics import RouterMetrics

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "deploy" / "helm" / "staffetta" / "files"
RULES = FILES / "prometheus-rules.yaml"
DASHBOARD = FILES / "dashboards" / "staffetta.json"
RULES_TEST = ROOT / "deploy" / "observability" / "rules-test.yaml"

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


async def _no_reader(queue: str) -> tuple[int, int]:
    raise AssertionError(f"not read in this test: {queue}")


def exported_series_names() -> set[str]:
    """Every ``staffetta_*`` series name the four services can export."""
    registries = {name: CollectorRegistry() for name in ("ingress", "router", "delivery", "bounce")}
    IngressMetrics(registries["ingress"])
    RouterMetrics.create(registries["router"])
    QueueMetrics(registries["router"], Topology("x", (60.0,)), _no_reader)
    DeliveryMetrics.create(registries["delivery"])
    BounceMetrics.create(registries["bounce"])
    names: set[str] = set()
    for registry in registries.values():
        for family in registry.collect():
            for suffix in _SUFFIXES[family.type]:
                names.add(family.name + suffix)
    return names


def series_names(promql: str) -> set[str]:
    """The ``staffetta_*`` series a PromQL expression reads (not recording-rule names)."""
    return set(re.findall(r"(?<![:\w])staffetta_[a-z_]+", promql))


def load_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "alert" in rule]


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title + refId, expr) for every target of every panel."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets") or []:
            found.append((f"{panel['title']} [{target['refId']}]", target["expr"]))
    return found
