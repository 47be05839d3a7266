#!/usr/bin/env bash
# Install the real tools the test suite and the benchmark drive, when missing:
# Postfix (smtp-source/smtp-sink), swaks, Prometheus (promtool), and helm.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || missing+=(postfix)
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: please install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-test-tools: installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq
  # Postfix asks debconf questions; "No configuration" keeps it from touching port 25.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -x scripts/helm-tools.sh ]; then
  scripts/helm-tools.sh
fi
