#!/usr/bin/env bash
# Make sure a RabbitMQ answers at STAFFETTA_AMQP_URL (default 127.0.0.1:5672).
# Starts the local rabbitmq-server when one is installed and none answers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
url="${STAFFETTA_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%:*}"; port="${hostport##*:}"
[ "$host" = "$hostport" ] && port=5672

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; }

if answers; then exit 0; fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  apt_install ensure-rabbitmq rabbitmq-server || {
    echo "No RabbitMQ answers at $host:$port and rabbitmq-server is not installed." >&2
    echo "Install it (Debian/Ubuntu: apt-get install rabbitmq-server; macOS: brew install rabbitmq)" >&2
    echo "or point STAFFETTA_AMQP_URL at a running broker." >&2
    exit 1
  }
fi
case "$host" in
  127.*|localhost|::1) ;;
  *) echo "No RabbitMQ answers at $host:$port (not a local address, so not starting one)." >&2; exit 1;;
esac
echo "ensure-rabbitmq: starting the local rabbitmq-server" >&2
rabbitmq-server -detached >/dev/null 2>&1 || true
for _ in $(seq 1 120); do
  if answers; then
    # The port opens a moment before the node accepts AMQP logins.
    rabbitmqctl await_startup >/dev/null 2>&1 || true
    exit 0
  fi
  sleep 1
done
echo "ensure-rabbitmq: rabbitmq-server did not come up within 120 s" >&2
exit 1
