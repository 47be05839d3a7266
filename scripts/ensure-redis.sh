#!/usr/bin/env bash
# The tests of shared sending limits need a Redis on 127.0.0.1:6379 (Redis is
# optional for Staffetta itself). Start the local one when none answers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/6379" 2>/dev/null; }
answers && exit 0
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install ensure-redis redis-server || {
    echo "ensure-redis: no Redis on 127.0.0.1:6379 and redis-server is not installed" >&2
    exit 1
  }
fi
echo "ensure-redis: starting a local redis-server (nothing kept on disk)" >&2
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
for _ in $(seq 1 50); do answers && exit 0; sleep 0.2; done
echo "ensure-redis: redis-server did not come up" >&2
exit 1
