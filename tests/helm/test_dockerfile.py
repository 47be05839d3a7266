"""hadolint and the properties the chart relies on, for the Dockerfile."""

from __future__ import annotations

import re
import subprocess

from tests.helm.chart import ROOT, venv_tool

DOCKERFILE = ROOT / "Dockerfile"
TEXT = DOCKERFILE.read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", TEXT)
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [venv_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_build_installs_the_lock_file() -> None:
    steps = instructions()
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS builder")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in TEXT
    assert "uv sync --frozen --no-dev" in TEXT
    assert "COPY pyproject.toml uv.lock" in TEXT
    final = final_stage()
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=builder /opt/staffetta /opt/staffetta"]
    # No compilers or uv in the runtime stage.
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    assert not re.search(r"apt-get|gcc|build-essential|pip install|uv ", runs)


def test_runtime_contract() -> None:
    final = dict(final_stage())
    assert re.fullmatch(r"\d+:\d+", final["USER"]), "numeric UID so runAsNonRoot can verify it"
    assert int(final["USER"].split(":")[0]) >= 10000
    assert final["STOPSIGNAL"] == "SIGTERM"
    assert set(final["EXPOSE"].split()) == {"2525", "2587", "2465", "8080"}
    assert final["ENTRYPOINT"] == '["staffetta"]'
    assert "HEALTHCHECK" not in dict(instructions())


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*"
    assert {"!pyproject.toml", "!uv.lock", "!README.md", "!services/"} <= set(lines)
