"""values.schema.json refuses bad values; values.yaml documents every value."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import CHART, ROOT, run_helm, template_args

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)


def refused(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    result = run_helm(*template_args("minimal", "--values", str(path)), check=False)
    assert result.returncode != 0, f"helm accepted {values}"
    return result.stderr


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"config": {"hostnmae": "mx.example.org"}}, "hostnmae"),
        ({"smtpIngres": {"replicaCount": 2}}, "smtpIngres"),
        ({"delivery": {"keda": {"queueLenght": 5}}}, "queueLenght"),
        ({"rabbitmq": {"standalone": {"auth": {"pasword": "x"}}}}, "pasword"),
        ({"smtpIngress": {"replicaCount": "two"}}, "replicaCount"),
        ({"config": {"localDomains": "example.org"}}, "localDomains"),
        ({"config": {"maxMessageSize": 0}}, "maxMessageSize"),
        ({"config": {"retrySchedule": ["5 minutes"]}}, "retrySchedule"),
        ({"config": {"trustedNetworks": ["10.0.0.1"]}}, "trustedNetworks"),
        ({"rabbitmq": {"mode": "embedded"}}, "mode"),
        ({"smarthost": {"tls": "yes"}}, "tls"),
        ({"smtpIngress": {"service": {"type": "Ingress"}}}, "type"),
        ({"config": {"aliases": {"postmaster@example.org": "ops@example.org"}}}, "aliases"),
        ({"config": {"greetingTimeout": "2 minutes"}}, "greetingTimeout"),
        ({"smtpIngress": {"greetPause": -1}}, "greetPause"),
        ({"smtpIngress": {"proxyProtocol": {"networks": ["10.0.0.1"]}}}, "networks"),
        ({"auth": {"maxFailures": 0}}, "maxFailures"),
        ({"auth": {"senderLogins": {"map": {"example.org": ["app"]}}}}, "'example.org'"),
        ({"auth": {"senderLogins": {"map": {"@example.org": "app"}}}}, "map"),
        ({"sendingLimits": {"accountMaxPerHour": "100"}}, "accountMaxPerHour"),
        ({"sendingLimits": {"accounts": {"bulk": {"hours": 10}}}}, "hours"),
        ({"sendingLimits": {"accounts": {"bulk": {}}}}, "bulk"),
        ({"sendingLimits": {"accounts": {"10.0.0.1": {"hour": 1}}}}, "'10.0.0.1'"),
        ({"sendingLimits": {"networks": {"lan": {"hour": 1}}}}, "'lan'"),
        ({"redis": {"url": "redis.example:6379"}}, "url"),
        ({"redis": {"existingSecretKey": ""}}, "existingSecretKey"),
        ({"delivery": {"destinationRateLimit": "5 per second"}}, "destinationRateLimit"),
        ({"delivery": {"destinationConcurrency": -1}}, "destinationConcurrency"),
        ({"delivery": {"adminApi": {"tokenFile": "/x"}}}, "tokenFile"),
    ],
)
def test_schema_refuses_bad_values(tmp_path: Path, values: dict[str, Any], complaint: str) -> None:
    assert complaint in refused(tmp_path, values)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"config": {"hostname": ""}}, "config.hostname is required"),
        (
            {"delivery": {"keda": {"enabled": True}, "autoscaling": {"enabled": True}}},
            "enable one",
        ),
        ({"tls": {"enabled": True}}, "tls.existingSecret or tls.certManager.enabled"),
        ({"rabbitmq": {"mode": "external"}}, "rabbitmq.external.url"),
        ({"smarthost": {"host": "relay.example", "username": "u"}}, "smarthost.password"),
        (
            {"smtpIngress": {"proxyProtocol": {"enabled": True}}},
            "smtpIngress.proxyProtocol.networks",
        ),
    ],
)
def test_templates_refuse_incomplete_values(
    tmp_path: Path, values: dict[str, Any], complaint: str
) -> None:
    assert complaint in refused(tmp_path, values)


def test_every_object_of_the_chart_is_closed() -> None:
    def walk(node: dict[str, Any], where: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{where} is open"
            for key, child in node["properties"].items():
                walk(child, f"{where}.{key}")
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, f"{where}[]")

    walk(SCHEMA, "values")


def leaves(node: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Dotted paths of values.yaml down to the objects the schema lists properties for."""
    if isinstance(node, dict) and "properties" in schema:
        found = []
        for key, value in node.items():
            path = f"{where}.{key}" if where else key
            found += leaves(value, schema["properties"][key], path)
        return found
    return [where]


def test_every_value_is_documented_with_a_param_line() -> None:
    documented = set(re.findall(r"^\s*## @param (\S+)", VALUES_TEXT, flags=re.MULTILINE))
    paths = leaves(VALUES, SCHEMA)
    missing = [
        path
        for path in paths
        if not any(path == doc or path.startswith(f"{doc}.") for doc in documented)
    ]
    assert missing == []
    all_paths = set(paths) | {p.rsplit(".", n)[0] for p in paths for n in range(p.count(".") + 1)}
    assert documented - all_paths == set(), "@param lines for values that do not exist"


def test_every_schema_property_has_a_description() -> None:
    def walk(node: dict[str, Any], where: str) -> None:
        for key, child in node.get("properties", {}).items():
            if "properties" in child:
                walk(child, f"{where}.{key}")
            else:
                assert child.get("description"), f"{where}.{key} has no description"

    walk(SCHEMA, "values")


def test_chart_readme_parameters_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "helm-readme.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    readme = (CHART / "README.md").read_text()
    for section in re.findall(r"^\s*## @section (.+)$", VALUES_TEXT, flags=re.MULTILINE):
        assert f"### {section}" in readme
