#!/usr/bin/env bash
# Print the interpreter `make bench` runs Staffetta on.
#
# The image runs on python:3.11-slim, whose CPython is built with PGO and LTO
# (--enable-optimizations --with-lto). A pyenv or source build without those flags
# ran pure-Python code 25-35 % slower here and cost our services 6-10 % more CPU per
# message, so benchmarking on it would measure an interpreter nobody deploys. Debian's python3.11 is built with PGO and LTO too
# (see its changelog), so it stands in for the image's interpreter here.
#
# BENCH_PYTHON=/path/to/python overrides the choice (use it for A/B runs).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ -n "${BENCH_PYTHON:-}" ]; then
  echo "$BENCH_PYTHON"
  exit 0
fi
debian_python=/usr/bin/python3.11
if [ ! -x "$debian_python" ] && [ -r /etc/debian_version ]; then
  apt_install bench-python python3.11 || true
fi
if [ -x "$debian_python" ]; then
  echo "$debian_python"
  exit 0
fi
echo "bench-python: no PGO/LTO-built python3.11 found; benchmarking on the development" \
  "interpreter, which may be slower than the image's (set BENCH_PYTHON to choose)" >&2
echo "$(pwd)/.venv/bin/python"
