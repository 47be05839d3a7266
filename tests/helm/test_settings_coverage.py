"""Every setting of the code can be set from the chart's values, or the chart fixes it on purpose.

A new field in :class:`services.common.settings.Settings` fails
``test_every_setting_is_settable_or_deliberately_fixed`` until it gets a value in
the chart (and a case in ``SETTABLE``) or a reason in ``FIXED``.

All cases are rendered together in one release (``ALL_VALUES``); for each, the
variable must reach its container with the expected text (Secrets resolved from
the Secrets the chart renders, files from the volumes mounted over their path),
and the services must read it as the expected value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from services.common.settings import ENV_PREFIX, Settings, load_settings
from tests.helm.chart import (
    COMPONENTS,
    SCENARIOS,
    Manifests,
    container_environment,
    parse,
    render,
    run_helm,
    template_args,
)
from tests.helm.test_settings_env import EXPANSION, FILE_SETTINGS, _mounted_file

# Settings the chart sets itself and offers no value for, and why.
FIXED = {
    "smtp_listen": "container port 2525 of the contract; the SMTP Service maps "
    "smtpIngress.service.ports.smtp onto it, and probes and policies name the port",
    "submission_listen": "container port 2587 of the contract; switched on or off by "
    "smtpIngress.ports.submission.enabled, the Service maps the public port onto it",
    "submissions_listen": "container port 2465 of the contract; on when tls.enabled and "
    "smtpIngress.ports.submissions.enabled, the Service maps the public port onto it",
    "http_listen": "container port 8080 of the contract, which the probes, the HTTP Services, "
    "ServiceMonitors and NetworkPolicies all point at",
}

USERS_LINE = "app:$2y$05$Vt0mXpR1k4tQx1i1m2b3Ue8oWcJ0n3mRrHq5Jm1Tq6cW7m8n9o0pq"


@dataclass(frozen=True)
class Case:
    """Values that set one setting, where it must arrive, and what the code must read."""

    component: str
    values: dict[str, Any]
    text: str  # the variable's value in the container (for files: the path)
    parsed: Any = None  # the Settings attribute; for files, the file's content
    also: dict[str, Any] = field(default_factory=dict)  # values it needs besides its own


def case(component: str, path: str, value: Any, text: str, parsed: Any) -> Case:
    values: dict[str, Any] = {}
    node = values
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return Case(component, values, text, parsed)


SETTABLE: dict[str, Case] = {
    # Broker
    "amqp_url": case(
        "router",
        "rabbitmq",
        {"mode": "external", "external": {"url": "amqp://u:p@broker.example:5672/mail"}},
        "amqp://u:p@broker.example:5672/mail",
        "amqp://u:p@broker.example:5672/mail",
    ),
    "amqp_prefix": case("bounce", "config.amqpPrefix", "eu-1", "eu-1", "eu-1"),
    "amqp_prefetch": case("router", "config.amqpPrefetch", 7, "7", 7),
    "amqp_delivery_limit": case("delivery", "config.amqpDeliveryLimit", 9, "9", 9),
    # Identity and listeners
    "hostname": case("bounce", "config.hostname", "mx9.example.org", "mx9.example.org", None),
    "allow_plaintext_auth": case(
        "smtp-ingress", "smtpIngress.allowPlaintextAuth", True, "true", True
    ),
    "tls_cert_file": case(
        "smtp-ingress",
        "tls",
        {"enabled": True, "existingSecret": "mx-tls"},
        "/etc/staffetta/tls/tls.crt",
        "stand-in for a Secret the chart does not own\n",
    ),
    "tls_key_file": case(
        "smtp-ingress",
        "tls",
        {"enabled": True, "existingSecret": "mx-tls"},
        "/etc/staffetta/tls/tls.key",
        "stand-in for a Secret the chart does not own\n",
    ),
    "max_sessions": case("smtp-ingress", "smtpIngress.maxSessions", 77, "77", 77),
    "max_sessions_per_ip": case("smtp-ingress", "smtpIngress.maxSessionsPerIp", 7, "7", 7),
    "greet_pause": case("smtp-ingress", "smtpIngress.greetPause", "3s", "3s", 3.0),
    "smtp_idle_timeout": case("smtp-ingress", "smtpIngress.idleTimeout", "10m", "10m", 600.0),
    "auth_max_failures": case("smtp-ingress", "auth.maxFailures", 4, "4", 4),
    "auth_lockout": case("smtp-ingress", "auth.lockout", "1h", "1h", 3600.0),
    "auth_failure_delay": case("smtp-ingress", "auth.failureDelay", 2, "2", 2.0),
    "account_max_per_hour": case(
        "smtp-ingress", "sendingLimits.accountMaxPerHour", 0, "0", 0
    ),  # 0 is a value (unlimited), not "unset"
    "account_max_per_day": case("smtp-ingress", "sendingLimits.accountMaxPerDay", 900, "900", 900),
    "account_monthly_quota": case(
        "smtp-ingress", "sendingLimits.accountMonthlyQuota", 26214400, "26214400", 26214400
    ),
    "sending_limits_file": case(
        "smtp-ingress",
        "sendingLimits",
        {
            "accounts": {"bulk": {"hour": 10, "recipients": 5}},
            "networks": {"10.0.0.0/8": {"day": 3}},
        },
        "/etc/staffetta/sending-limits/sending-limits",
        "10.0.0.0/8 day=3\nbulk: hour=10 recipients=5\n",
    ),
    "account_metrics_limit": case(
        "smtp-ingress", "sendingLimits.accountMetricsLimit", 12, "12", 12
    ),
    "redis_url": case(
        "delivery",
        "redis.url",
        "redis://:pw@redis.example:6379/2",
        "redis://:pw@redis.example:6379/2",
        "redis://:pw@redis.example:6379/2",
    ),
    "proxy_protocol": case(
        "smtp-ingress",
        "smtpIngress.proxyProtocol",
        {"enabled": True, "networks": ["192.0.2.0/28", "2001:db8::/64"]},
        "true",
        True,
    ),
    "proxy_networks": case(
        "smtp-ingress",
        "smtpIngress.proxyProtocol",
        {"enabled": True, "networks": ["192.0.2.0/28", "2001:db8::/64"]},
        "192.0.2.0/28,2001:db8::/64",
        ["192.0.2.0/28", "2001:db8::/64"],
    ),
    # Policy
    "local_domains": case(
        "router", "config.localDomains", ["example.org"], "example.org", ["example.org"]
    ),
    "local_recipients_file": case(
        "router",
        "config.localRecipients",
        ["alice@example.org"],
        "/etc/staffetta/files/local-recipients",
        "alice@example.org\n",
    ),
    "aliases_file": case(
        "router",
        "config.aliases",
        {"postmaster@example.org": ["alice@example.org"]},
        "/etc/staffetta/files/aliases",
        "postmaster@example.org: alice@example.org\n",
    ),
    "maildir_root": case(
        "delivery", "delivery.maildir.mountPath", "/srv/mail", "/srv/mail", Path("/srv/mail")
    ),
    "trusted_networks": case(
        "smtp-ingress", "config.trustedNetworks", ["10.0.0.0/8"], "10.0.0.0/8", ["10.0.0.0/8"]
    ),
    "users_file": case(
        "smtp-ingress",
        "auth.users",
        [{"username": "app", "bcryptHash": USERS_LINE.partition(":")[2]}],
        "/etc/staffetta/auth/users",
        USERS_LINE + "\n",
    ),
    "sender_logins_file": case(
        "smtp-ingress",
        "auth.senderLogins.map",
        {"@example.org": ["app", "bulk"]},
        "/etc/staffetta/sender-logins/sender-logins",
        "@example.org: app, bulk\n",
    ),
    "max_message_size": case(
        "smtp-ingress", "config.maxMessageSize", 52428800, "52428800", 52428800
    ),
    "max_recipients": case("router", "config.maxRecipients", 50, "50", 50),
    # Outbound
    "dns_nameservers": case(
        "delivery",
        "config.dnsNameservers",
        ["10.96.0.10", "10.96.0.11:5353"],
        "10.96.0.10,10.96.0.11:5353",
        ["10.96.0.10", "10.96.0.11:5353"],
    ),
    "dns_timeout": case("delivery", "config.dnsTimeout", "2s", "2s", 2.0),
    "remote_smtp_port": case("delivery", "config.remoteSmtpPort", 2525, "2525", 2525),
    "smarthost": case(
        "delivery",
        "smarthost",
        {"host": "relay.example", "port": 465, "tls": "implicit", "username": "u", "password": "p"},
        "relay.example:465",
        "relay.example:465",
    ),
    "smarthost_username": case(
        "delivery",
        "smarthost",
        {"host": "relay.example", "port": 465, "tls": "implicit", "username": "u", "password": "p"},
        "u",
        "u",
    ),
    "smarthost_password_file": case(
        "delivery",
        "smarthost",
        {"host": "relay.example", "port": 465, "tls": "implicit", "username": "u", "password": "p"},
        "/etc/staffetta/smarthost/password",
        "p",
    ),
    "smarthost_tls": case(
        "delivery",
        "smarthost",
        {"host": "relay.example", "port": 465, "tls": "implicit", "username": "u", "password": "p"},
        "implicit",
        "implicit",
    ),
    "connect_timeout": case("delivery", "config.connectTimeout", "45s", "45s", 45.0),
    "command_timeout": case("delivery", "config.commandTimeout", "4m", "4m", 240.0),
    "data_timeout": case("delivery", "config.dataTimeout", "20m", "20m", 1200.0),
    "greeting_timeout": case("delivery", "config.greetingTimeout", "90s", "90s", 90.0),
    "starttls_timeout": case("delivery", "config.starttlsTimeout", 120, "120", 120.0),
    "connection_cache_time": case(
        "delivery", "delivery.connectionCacheTime", 0, "0", 0.0
    ),  # 0 is a value (close after every message), not "unset"
    "destination_concurrency": case("delivery", "delivery.destinationConcurrency", 3, "3", 3),
    "destination_rate_limit": case(
        "delivery", "delivery.destinationRateLimit", "30/m", "30/m", "30/m"
    ),
    # Queue lifetime
    "retry_schedule": case(
        "delivery", "config.retrySchedule", ["1m", "90s"], "1m,90s", [60.0, 90.0]
    ),
    "max_queue_lifetime": case("delivery", "config.maxQueueLifetime", "2d", "2d", 172800.0),
    "delay_warning_after": case("delivery", "config.delayWarningAfter", "1h", "1h", 3600.0),
    "admin_token_file": case(
        "delivery",
        "delivery.adminApi.token",
        "t0ken",
        "/etc/staffetta/admin/token",
        "t0ken",
    ),
    "log_level": case("bounce", "config.logLevel", "DEBUG", "DEBUG", "DEBUG"),
}


def variable(name: str) -> str:
    return f"{ENV_PREFIX}{name.upper()}"


def merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            assert key not in into or into[key] == value, f"two cases set {key} differently"
            into[key] = value


def all_values() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for settable in SETTABLE.values():
        merge(values, settable.values)
    return values


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Manifests:
    """One release with every case's values."""
    path = tmp_path_factory.mktemp("all-settings") / "values.yaml"
    path.write_text(yaml.safe_dump(all_values()))
    return parse(run_helm(*template_args(None, "--values", str(path))).stdout)


def process_environment(manifests: Manifests, component: str) -> dict[str, str]:
    """The container's variables with Secrets read from the Secrets the chart renders."""
    environment: dict[str, str] = {}
    for name, value in container_environment(manifests, component).items():
        if isinstance(value, dict):
            reference = value["secretKeyRef"]
            if reference["name"] in manifests.names("Secret"):
                secret = manifests.get("Secret", reference["name"])["stringData"]
                value = secret[reference["key"]]
            else:  # the in-cluster broker's generated credentials
                value = f"stand-in-{name.lower()}"
        environment[name] = EXPANSION.sub(lambda match: environment[match.group(1)], str(value))
    return environment


def test_every_setting_is_settable_or_deliberately_fixed() -> None:
    fields = set(Settings.model_fields)
    assert SETTABLE.keys() & FIXED.keys() == set()
    assert fields - SETTABLE.keys() - FIXED.keys() == set(), (
        "settings the chart cannot set: give them a value in values.yaml (and a case in "
        "SETTABLE), or say in FIXED why the chart fixes them"
    )
    assert (SETTABLE.keys() | FIXED.keys()) - fields == set(), "cases for settings that are gone"
    for name, reason in FIXED.items():
        assert len(reason.split()) >= 8, f"{name}: give a real reason"


def test_the_cases_cover_every_component() -> None:
    assert {settable.component for settable in SETTABLE.values()} == set(COMPONENTS)


@pytest.mark.parametrize("name", sorted(SETTABLE))
def test_the_value_reaches_the_service(name: str, everything: Manifests, tmp_path: Path) -> None:
    settable = SETTABLE[name]
    environment = process_environment(everything, settable.component)
    assert environment.get(variable(name)) == settable.text
    if variable(name) in FILE_SETTINGS:
        content = _mounted_file(everything, settable.component, settable.text, variable(name))
        assert content == settable.parsed
        local = tmp_path / "file"
        local.write_text(content)
        environment[variable(name)] = str(local)
    for other in FILE_SETTINGS & environment.keys() - {variable(name)}:
        stand_in = tmp_path / other.lower()
        stand_in.write_text(
            _mounted_file(everything, settable.component, environment[other], other)
        )
        environment[other] = str(stand_in)
    settings = load_settings(environment)
    read = getattr(settings, name)
    if isinstance(read, SecretStr):
        read = read.get_secret_value()
    if variable(name) in FILE_SETTINGS:
        assert read == Path(environment[variable(name)])
    elif settable.parsed is not None:
        assert read == settable.parsed
    else:
        assert read == settable.text


@pytest.mark.parametrize("name", sorted(SETTABLE))
def test_some_ci_scenario_sets_it(name: str) -> None:
    """Each settable setting is rendered by a ci/*-values.yaml scenario, so that helm lint,
    the Kubernetes schemas, checkov and the settings tests see it too."""
    found = [
        scenario
        for scenario in SCENARIOS
        if variable(name) in container_environment(render(scenario), SETTABLE[name].component)
    ]
    assert found, f"no ci scenario sets {variable(name)}"


def test_fixed_settings_are_the_contract_ports(everything: Manifests) -> None:
    ingress = container_environment(everything, "smtp-ingress")
    assert {variable(name): ingress.get(variable(name)) for name in FIXED} == {
        "STAFFETTA_SMTP_LISTEN": "0.0.0.0:2525",
        "STAFFETTA_SUBMISSION_LISTEN": "0.0.0.0:2587",
        "STAFFETTA_SUBMISSIONS_LISTEN": "0.0.0.0:2465",
        "STAFFETTA_HTTP_LISTEN": "0.0.0.0:8080",
    }
