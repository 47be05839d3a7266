"""Every dashboard and alert query, evaluated by a real Prometheus scraping the four services.

The stack gets one burst of mail covering every path (see ``traffic.py``); a
Prometheus on loopback scrapes each service every second and loads the shipped
rules. Then each panel query (template variables substituted as Grafana would
with "All") must return data, each alert and recording rule must evaluate
without error, and the dashboard's variable queries must find the services.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.catalog import RULES, load_dashboard, load_rules, panel_queries
from tests.observability.traffic import send_traffic, traffic_env
from tests.support.mx_server import MxServers
from tests.support.processes import terminate_popen
from tests.support.stack import Stack, free_port, wait_until

pytestmark = pytest.mark.broker

RATE_INTERVAL = "15s"
TEMPLATE = {
    "$__rate_interval": RATE_INTERVAL,
    "$namespace": ".*",
    "$instance": ".*",
}


def substitute(expr: str) -> str:
    for variable, value in TEMPLATE.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


class Prometheus:
    """A real Prometheus on loopback, configured in a temporary folder."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "staffetta",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is missing: apt-get install prometheus")
        log = (self.workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._ready, 30, "Prometheus /-/ready", interval=0.1)

    def stop(self) -> None:
        terminate_popen(self.process, 30)

    def _ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, (self.workdir / "prometheus.log").read_text()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read())
        return body

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises with Prometheus' error when it does not parse/evaluate."""
        body = self.api("query", query=expr)
        if body["status"] != "success":
            raise AssertionError(f"{expr}\n  -> {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets_up(self) -> bool:
        active = self.api("targets")["data"]["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)

    def rules(self) -> list[dict[str, Any]]:
        groups = self.api("rules")["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]


@pytest.fixture
def prometheus() -> Iterator[list[Prometheus]]:
    """Stops every Prometheus the test started, pass or fail."""
    started: list[Prometheus] = []
    yield started
    for server in started:
        server.stop()


def test_every_dashboard_and_alert_query_on_a_real_prometheus(
    stack_factory: Any, mx: MxServers, prometheus: list[Prometheus], tmp_path: Path
) -> None:
    stack: Stack = stack_factory(**traffic_env(tmp_path / "settings"))
    targets = [f"127.0.0.1:{process.http_port}" for process in stack.processes]
    server = Prometheus(tmp_path / "prometheus", targets)
    prometheus.append(server)
    server.start()  # scraping while the mail flows

    send_traffic(stack, mx)
    wait_until(server.targets_up, 20, "every service scraped", interval=0.2)

    panels = panel_queries(load_dashboard())
    assert len(panels) >= 25

    def empty_panels() -> list[str]:
        return [title for title, expr in panels if not server.query(substitute(expr))]

    # Rates need two scrapes after the last counter appeared: poll, bounded.
    deadline = time.monotonic() + 20
    missing = empty_panels()
    while missing and time.monotonic() < deadline:
        time.sleep(0.5)
        missing = empty_panels()
    assert not missing, f"panels without data: {missing}\n{stack.logs()}"

    # The contract's metrics carry what the burst did.
    delivered = server.query(
        'sum by (route) (staffetta_delivery_attempts_total{result="delivered"})'
    )
    assert {sample["metric"]["route"] for sample in delivered} == {"local", "relay"}
    failed = server.query('sum(staffetta_delivery_attempts_total{result="failed"})')
    assert float(failed[0]["value"][1]) >= 1
    dsns = server.query('sum(staffetta_bounces_total{kind="failure"})')
    assert float(dsns[0]["value"][1]) >= 1
    consumers = server.query('staffetta_queue_consumers{queue="delivery"}')
    assert float(consumers[0]["value"][1]) >= 1


def test_variables_and_rules_evaluate(
    stack_factory: Any, prometheus: list[Prometheus], tmp_path: Path
) -> None:
    stack: Stack = stack_factory()
    targets = [f"127.0.0.1:{process.http_port}" for process in stack.processes]
    server = Prometheus(tmp_path / "prometheus", targets)
    prometheus.append(server)
    server.start()
    wait_until(server.targets_up, 20, "every service scraped", interval=0.2)

    # Every rule expression parses and evaluates as an instant query ...
    for rule in load_rules():
        server.query(rule["expr"])

    # ... and Prometheus itself evaluates every loaded rule without error.
    expected = {rule.get("alert") or rule.get("record") for rule in load_rules()}

    def all_evaluated() -> bool:
        rules = server.rules()
        return {rule["name"] for rule in rules} == expected and all(
            rule["health"] != "unknown" for rule in rules
        )

    wait_until(all_evaluated, 20, "every rule evaluated", interval=0.2)
    broken = [(r["name"], r.get("lastError")) for r in server.rules() if r["health"] != "ok"]
    assert not broken, broken

    # The variables' label_values() find the services; a missing label means "All".
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    instances = set()
    for name in ("namespace", "instance"):
        query = variables[name]["query"].replace("$namespace", ".*")
        selector, label = query.removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
        series = server.api("series", **{"match[]": selector})
        assert series["status"] == "success", series
        assert series["data"], (name, selector)
        if label.strip() == "instance":
            instances = {entry["instance"] for entry in series["data"]}
    assert instances == set(targets)
