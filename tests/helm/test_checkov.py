"""checkov over the rendered manifests of every scenario: no finding outside the skip list."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.helm.chart import ROOT, SCENARIOS, render_text, tool

SKIPS_FILE = ROOT / "deploy" / "helm" / "checkov-skips.yaml"


def load_skips() -> dict[str, str]:
    entries = yaml.safe_load(SKIPS_FILE.read_text())["skips"]
    return {entry["id"]: entry["reason"] for entry in entries}


def run_checkov(directory: Path) -> list[dict[str, Any]]:
    environment = {
        **os.environ,
        # Never talk to the vendor's platform or look for updates: offline, loopback only.
        "BC_SKIP_MAPPING": "TRUE",
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",
    }
    result = subprocess.run(
        [
            str(tool("checkov/bin/checkov")),
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert reports and all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert sum(r["summary"]["passed"] for r in reports) > 100
    return [check for r in reports for check in r["results"]["failed_checks"]]


def test_skips_are_justified() -> None:
    skips = load_skips()
    assert skips
    for check_id, reason in skips.items():
        assert len(reason.split()) >= 8, f"{check_id}: give a real reason"


def test_checkov_finds_nothing_beyond_the_justified_skips(tmp_path: Path) -> None:
    for scenario in SCENARIOS:
        (tmp_path / f"{scenario}.yaml").write_text(render_text(scenario))
    failed = run_checkov(tmp_path)
    skips = load_skips()
    unexpected = sorted(
        f"{check['check_id']} {check['resource']} ({Path(check['file_path']).name})"
        for check in failed
        if check["check_id"] not in skips
    )
    assert unexpected == []
    stale = set(skips) - {check["check_id"] for check in failed}
    assert stale == set(), f"skips that no longer fire, remove them: {sorted(stale)}"
