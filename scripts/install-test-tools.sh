#!/usr/bin/env bash
# Install the real tools the test suite and the benchmark drive, when missing:
# Postfix (smtp-source/smtp-sink), swaks, Prometheus (promtool), and helm.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

missing=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || missing+=(postfix)
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  # Postfix asks debconf questions; "No configuration" keeps it from touching port 25.
  if command -v debconf-set-selections >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  fi
  apt_install install-test-tools "${missing[@]}"
fi
if [ -x scripts/helm-tools.sh ]; then
  scripts/helm-tools.sh
fi
