"""Settings for the router against the real RabbitMQ, under a unique queue prefix
(the prefix, connection and publisher fixtures are in ``tests/integration/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

from services.common.settings import Settings, load_settings
from tests.support.amqp import AMQP_URL


def router_settings(prefix: str, aliases: Path | None = None) -> Settings:
    env = {
        "STAFFETTA_AMQP_URL": AMQP_URL,
        "STAFFETTA_AMQP_PREFIX": prefix,
        "STAFFETTA_HOSTNAME": "mx.staffetta.test",
        "STAFFETTA_LOCAL_DOMAINS": "local.test,Other.Test",
        "STAFFETTA_RETRY_SCHEDULE": "1s,2s",
        "STAFFETTA_DNS_NAMESERVERS": "127.0.0.1:53",
        "STAFFETTA_HTTP_LISTEN": "127.0.0.1:0",
    }
    if aliases is not None:
        env["STAFFETTA_ALIASES_FILE"] = str(aliases)
    return load_settings(env)
