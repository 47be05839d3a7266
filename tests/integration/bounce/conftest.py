"""Settings for the bounce service against the real RabbitMQ, under a unique queue prefix
(the prefix, connection and publisher fixtures are in ``tests/integration/conftest.py``)."""

from __future__ import annotations

from services.common.settings import Settings, load_settings
from tests.support.amqp import AMQP_URL


def service_settings(prefix: str, lifetime: str = "5d", local_domains: str = "") -> Settings:
    env = {
        "STAFFETTA_AMQP_URL": AMQP_URL,
        "STAFFETTA_AMQP_PREFIX": prefix,
        "STAFFETTA_HOSTNAME": "mx.staffetta.test",
        "STAFFETTA_RETRY_SCHEDULE": "1s,2s",
        "STAFFETTA_DNS_NAMESERVERS": "127.0.0.1:53",
        "STAFFETTA_HTTP_LISTEN": "127.0.0.1:0",
        "STAFFETTA_MAX_QUEUE_LIFETIME": lifetime,
        "STAFFETTA_LOCAL_DOMAINS": local_domains,
    }
    return load_settings(env)
