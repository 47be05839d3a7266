"""Render the Helm chart with the real ``helm`` binary and look at the result.

``scripts/helm-tools.sh`` (run by ``make test-tools``) installs helm into
``.tools/bin/helm`` and checkov into ``.tools/checkov``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "staffetta"
SCENARIOS = sorted(path.name.removesuffix("-values.yaml") for path in (CHART / "ci").glob("*.yaml"))
RELEASE = "staffetta"
NAMESPACE = "mail"
COMPONENTS = ("smtp-ingress", "router", "delivery", "bounce")
# The contract's commands for each component.
COMMANDS = {
    "smtp-ingress": "ingress",
    "router": "router",
    "delivery": "delivery",
    "bounce": "bounce",
}


def tool(relative: str) -> Path:
    path = ROOT / ".tools" / relative
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/helm-tools.sh (make test-tools) first")
    return path


def helm() -> Path:
    return tool("bin/helm")


def venv_tool(name: str) -> str:
    found = shutil.which(name, path=str(ROOT / ".venv" / "bin")) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run `uv sync` (it is a dev dependency)")
    return found


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def values_file(scenario: str) -> Path:
    return CHART / "ci" / f"{scenario}-values.yaml"


def template_args(scenario: str | None, *extra: str) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if scenario is not None:
        args += ["--values", str(values_file(scenario))]
    return [*args, *extra]


@functools.cache
def render_text(scenario: str, *extra: str) -> str:
    return run_helm(*template_args(scenario, *extra)).stdout


@dataclass(frozen=True)
class Manifests:
    documents: tuple[dict[str, Any], ...]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.documents)

    def kinds(self) -> set[str]:
        return {doc["kind"] for doc in self.documents}

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def names(self, kind: str) -> set[str]:
        return {doc["metadata"]["name"] for doc in self.of_kind(kind)}

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"no {kind} {name}; have {sorted(self.names(kind))}")

    def deployment(self, component: str) -> dict[str, Any]:
        return self.get("Deployment", f"{RELEASE}-{component}")

    def container(self, component: str) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.deployment(component)["spec"]["template"]["spec"][
            "containers"
        ]
        assert len(containers) == 1
        return containers[0]


def parse(text: str) -> Manifests:
    return Manifests(tuple(doc for doc in yaml.safe_load_all(text) if doc))


@functools.cache
def render(scenario: str, *extra: str) -> Manifests:
    return parse(render_text(scenario, *extra))


def container_environment(manifests: Manifests, component: str) -> dict[str, Any]:
    """Every variable of the component's container: ConfigMap (envFrom) first, then env.

    Values are strings, or the ``valueFrom`` mapping for variables from Secrets.
    """
    container = manifests.container(component)
    environment: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        config_map = manifests.get("ConfigMap", source["configMapRef"]["name"])
        environment.update(config_map["data"])
    for entry in container.get("env", []):
        environment[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return environment
