"""The chart configures Staffetta only through real settings, and the services accept them.

For every scenario and service the container's environment is rebuilt the way
the kubelet would (ConfigMap, Secrets, ``$(VAR)`` expansion), every file a
setting names is looked up in the volumes mounted at that path, and the result
goes through :func:`services.common.settings.load_settings`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.common.addressing import RecipientDirectory
from services.common.settings import ENV_PREFIX, Settings, load_settings
from services.ingress.quota import SendingLimits, parse_limits
from services.ingress.senders import load_sender_logins
from tests.helm.chart import (
    COMPONENTS,
    ROOT,
    SCENARIOS,
    Manifests,
    container_environment,
    render,
)

KNOWN = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
REQUIRED = {"STAFFETTA_AMQP_URL", "STAFFETTA_AMQP_PREFIX", "STAFFETTA_HOSTNAME"}
FILE_SETTINGS = {
    "STAFFETTA_TLS_CERT_FILE",
    "STAFFETTA_TLS_KEY_FILE",
    "STAFFETTA_USERS_FILE",
    "STAFFETTA_LOCAL_RECIPIENTS_FILE",
    "STAFFETTA_ALIASES_FILE",
    "STAFFETTA_SMARTHOST_PASSWORD_FILE",
    "STAFFETTA_SENDER_LOGINS_FILE",
    "STAFFETTA_SENDING_LIMITS_FILE",
    "STAFFETTA_ADMIN_TOKEN_FILE",
}
SECRET_STAND_INS = {
    "STAFFETTA_AMQP_URL": "amqp://user:pass@broker.example:5672/",
    "STAFFETTA_REDIS_URL": "redis://:pass@redis.example:6379/0",
    "RABBITMQ_USERNAME": "staffetta",
    "RABBITMQ_PASSWORD": "s3cret-Pass_word",
}
# What an existing Secret or ConfigMap (not rendered by the chart) holds, in the
# format of the setting that names it.
STAND_IN_FILES = {
    "STAFFETTA_SENDER_LOGINS_FILE": "@example.org: app\n",
    "STAFFETTA_SENDING_LIMITS_FILE": "app hour=10\n",
}
EXPANSION = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def test_file_settings_are_settings() -> None:
    assert FILE_SETTINGS <= KNOWN
    assert REQUIRED <= KNOWN
    assert STAND_IN_FILES.keys() <= FILE_SETTINGS


def test_every_path_setting_is_a_file_setting() -> None:
    """Every optional file the code reads is checked to be mounted (Maildir: a volume)."""
    paths = {
        f"{ENV_PREFIX}{name.upper()}"
        for name, field in Settings.model_fields.items()
        if field.annotation == Path | None
    }
    assert paths == FILE_SETTINGS


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_staffetta_variable_is_a_real_setting(scenario: str, component: str) -> None:
    environment = container_environment(render(scenario), component)
    staffetta = {name for name in environment if name.startswith(ENV_PREFIX)}
    assert staffetta - KNOWN == set(), "the chart sets variables Staffetta does not know"
    assert staffetta >= REQUIRED


def _mounted_file(manifests: Manifests, component: str, path: str, setting: str = "") -> str:
    """The content the kubelet would put at ``path``, from the volume mounted over it."""
    stand_in = STAND_IN_FILES.get(setting, "stand-in for a Secret the chart does not own\n")
    pod = manifests.deployment(component)["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in manifests.container(component)["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        key = path[len(prefix) :]
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            if name not in manifests.names("ConfigMap"):  # an existingConfigMap
                return stand_in
            data = manifests.get("ConfigMap", name)["data"]
            assert key in data, f"{path}: ConfigMap has no key {key!r}"
            return str(data[key])
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            rendered = [s for s in manifests.of_kind("Secret") if s["metadata"]["name"] == name]
            if not rendered:  # an existingSecret or a cert-manager Secret
                return stand_in
            data = rendered[0]["stringData"]
            assert key in data, f"{path}: Secret {name} has no key {key!r}"
            return str(data[key])
        raise AssertionError(f"{path} is on volume {mount['name']}, neither ConfigMap nor Secret")
    raise AssertionError(f"{component}: nothing is mounted at {path}")


def kubelet_environment(
    manifests: Manifests, component: str, files: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """The process environment of the container, file settings pointed into ``files``."""
    environment: dict[str, str] = {}
    contents: dict[str, str] = {}
    for name, value in container_environment(manifests, component).items():
        if isinstance(value, dict):
            assert "secretKeyRef" in value, f"{name}: only Secrets may feed variables"
            value = SECRET_STAND_INS[name]
        value = EXPANSION.sub(lambda match: environment[match.group(1)], str(value))
        environment[name] = value
    for name in FILE_SETTINGS & environment.keys():
        content = _mounted_file(manifests, component, environment[name], name)
        files.mkdir(parents=True, exist_ok=True)
        local = files / name.lower()
        local.write_text(content)
        contents[name] = content
        environment[name] = str(local)
    return environment, contents


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_services_accept_the_rendered_environment(
    scenario: str, component: str, tmp_path: Path
) -> None:
    manifests = render(scenario)
    environment, _ = kubelet_environment(manifests, component, tmp_path)
    settings = load_settings(environment)
    config_map = manifests.get("ConfigMap", f"staffetta-{component}")["data"]
    assert settings.hostname == config_map["STAFFETTA_HOSTNAME"]
    assert settings.amqp_prefix == config_map["STAFFETTA_AMQP_PREFIX"]
    assert settings.amqp_url.get_secret_value().startswith("amqp")


def test_in_cluster_broker_url_is_assembled_from_the_credentials() -> None:
    manifests = render("minimal")
    environment, _ = kubelet_environment(manifests, "router", Path("/nonexistent"))
    assert environment["STAFFETTA_AMQP_URL"] == (
        "amqp://staffetta:s3cret-Pass_word@staffetta-rabbitmq.mail.svc:5672/"
    )
    password = container_environment(manifests, "router")["RABBITMQ_PASSWORD"]
    assert password["secretKeyRef"] == {"name": "staffetta-rabbitmq", "key": "password"}


def test_external_broker_url_comes_from_the_existing_secret() -> None:
    environment = container_environment(render("external-broker"), "delivery")
    assert environment["STAFFETTA_AMQP_URL"] == {
        "secretKeyRef": {"name": "broker-credentials", "key": "amqp-url"}
    }
    assert "RABBITMQ_PASSWORD" not in environment


def test_recipients_and_aliases_files_parse(tmp_path: Path) -> None:
    manifests = render("production")
    environment, _ = kubelet_environment(manifests, "router", tmp_path)
    settings = load_settings(environment)
    directory = RecipientDirectory.load(
        settings.local_domains, settings.local_recipients_file, settings.aliases_file
    )
    assert directory.local_recipient_exists("alice@example.org")
    assert not directory.local_recipient_exists("mallory@example.org")
    assert directory.expand("abuse@example.org") == ["alice@example.org", "ops@example.com"]


def test_users_and_smarthost_password_files(tmp_path: Path) -> None:
    manifests = render("smarthost")
    ingress, ingress_files = kubelet_environment(manifests, "smtp-ingress", tmp_path / "i")
    delivery, delivery_files = kubelet_environment(manifests, "delivery", tmp_path / "d")
    assert ingress_files["STAFFETTA_USERS_FILE"].splitlines()[0].startswith("app:$2y$05$")
    settings = load_settings(delivery)
    assert settings.smarthost_password() == "not-a-real-password"
    assert str(settings.smarthost_address) == "smtp.provider.example:587"
    assert settings.smarthost_username == "staffetta"
    # Secrets go only where they are used.
    assert "STAFFETTA_SMARTHOST_PASSWORD_FILE" not in ingress
    assert "STAFFETTA_USERS_FILE" not in delivery
    assert delivery_files.keys() == {
        "STAFFETTA_SMARTHOST_PASSWORD_FILE",
        "STAFFETTA_ADMIN_TOKEN_FILE",
    }
    assert ingress_files.keys() == {"STAFFETTA_USERS_FILE", "STAFFETTA_SENDER_LOGINS_FILE"}


def test_sender_logins_and_sending_limits_files_parse(tmp_path: Path) -> None:
    manifests = render("production")
    environment, _ = kubelet_environment(manifests, "smtp-ingress", tmp_path)
    settings = load_settings(environment)
    assert settings.sender_logins_file is not None
    assert settings.sending_limits_file is not None
    logins = load_sender_logins(settings.sender_logins_file)
    assert logins.may_use("app", "billing@example.org")
    assert logins.may_use("alice", "ceo@example.org")
    assert not logins.may_use("app", "ceo@example.org")  # the address line wins
    assert logins.owners_of("noreply@example.net") == {"app", "newsletter"}
    table = parse_limits(settings.sending_limits_file.read_text().splitlines())
    defaults = SendingLimits(per_hour=200, per_day=2000, per_month=30000)
    assert (
        SendingLimits(
            settings.account_max_per_hour,
            settings.account_max_per_day,
            settings.account_monthly_quota,
        )
        == defaults
    )
    assert table.for_account("newsletter", defaults) == SendingLimits(5000, 50000, 0, 100)
    assert table.for_account("alice", defaults) == defaults
    covered = table.for_address("10.20.3.4")
    assert covered is not None
    assert covered[1] == SendingLimits(per_hour=500)
    assert table.for_address("10.21.0.1") is None
    seven = table.for_address("192.0.2.7")
    assert seven is not None
    assert seven[1] == SendingLimits(per_day=100)


def test_policy_files_from_existing_config_maps() -> None:
    for scenario, setting, volume, (config_map, key) in (
        ("smarthost", "STAFFETTA_SENDER_LOGINS_FILE", "sender-logins", ("relay-senders", "logins")),
        (
            "external-broker",
            "STAFFETTA_SENDING_LIMITS_FILE",
            "sending-limits",
            ("mx-sending-limits", "sending-limits"),
        ),
    ):
        manifests = render(scenario)
        environment = container_environment(manifests, "smtp-ingress")
        assert environment[setting] == f"/etc/staffetta/{volume}/{key}"
        pod = manifests.deployment("smtp-ingress")["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[volume]["configMap"] == {"name": config_map, "defaultMode": 0o440}
        assert config_map not in manifests.names("ConfigMap")
        for component in ("router", "delivery", "bounce"):
            assert setting not in container_environment(manifests, component)


def test_redis_url_reaches_ingress_and_delivery_only() -> None:
    production = render("production")
    for component in COMPONENTS:
        environment = container_environment(production, component)
        if component in ("smtp-ingress", "delivery"):
            assert environment["STAFFETTA_REDIS_URL"] == {
                "secretKeyRef": {"name": "staffetta-redis", "key": "redis-url"}
            }
        else:
            assert "STAFFETTA_REDIS_URL" not in environment
    smarthost = render("smarthost")
    secret = smarthost.get("Secret", "staffetta-redis")
    assert secret["stringData"] == {"url": "redis://:not-a-real-password@redis.mail.svc:6379/0"}
    environment = container_environment(smarthost, "delivery")
    assert environment["STAFFETTA_REDIS_URL"] == {
        "secretKeyRef": {"name": "staffetta-redis", "key": "url"}
    }
    for component in COMPONENTS:
        config_map = smarthost.get("ConfigMap", f"staffetta-{component}")["data"]
        assert "STAFFETTA_REDIS_URL" not in config_map, "a secret in a ConfigMap"
    assert "STAFFETTA_REDIS_URL" not in container_environment(render("minimal"), "delivery")


def test_admin_token_file_only_in_delivery(tmp_path: Path) -> None:
    smarthost = render("smarthost")
    delivery, _ = kubelet_environment(smarthost, "delivery", tmp_path)
    assert load_settings(delivery).admin_token() == "not-a-real-token"
    production = render("production")
    environment = container_environment(production, "delivery")
    assert environment["STAFFETTA_ADMIN_TOKEN_FILE"] == "/etc/staffetta/admin/token"
    pod = production.deployment("delivery")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["admin-token"]["secret"] == {
        "secretName": "staffetta-admin",
        "defaultMode": 0o440,
    }
    for manifests in (smarthost, production):
        for component in ("smtp-ingress", "router", "bounce"):
            assert "STAFFETTA_ADMIN_TOKEN_FILE" not in container_environment(manifests, component)
    assert "STAFFETTA_ADMIN_TOKEN_FILE" not in container_environment(render("minimal"), "delivery")


def test_unset_values_leave_the_code_defaults() -> None:
    """The minimal scenario sets none of the optional settings: the code's defaults apply."""
    optional = {
        "STAFFETTA_GREET_PAUSE",
        "STAFFETTA_SMTP_IDLE_TIMEOUT",
        "STAFFETTA_PROXY_PROTOCOL",
        "STAFFETTA_PROXY_NETWORKS",
        "STAFFETTA_AUTH_MAX_FAILURES",
        "STAFFETTA_AUTH_LOCKOUT",
        "STAFFETTA_AUTH_FAILURE_DELAY",
        "STAFFETTA_ACCOUNT_MAX_PER_HOUR",
        "STAFFETTA_ACCOUNT_MAX_PER_DAY",
        "STAFFETTA_ACCOUNT_MONTHLY_QUOTA",
        "STAFFETTA_ACCOUNT_METRICS_LIMIT",
        "STAFFETTA_SENDER_LOGINS_FILE",
        "STAFFETTA_SENDING_LIMITS_FILE",
        "STAFFETTA_REDIS_URL",
        "STAFFETTA_GREETING_TIMEOUT",
        "STAFFETTA_STARTTLS_TIMEOUT",
        "STAFFETTA_CONNECTION_CACHE_TIME",
        "STAFFETTA_DESTINATION_CONCURRENCY",
        "STAFFETTA_DESTINATION_RATE_LIMIT",
        "STAFFETTA_ADMIN_TOKEN_FILE",
    }
    assert optional <= KNOWN
    manifests = render("minimal")
    for component in COMPONENTS:
        assert optional.isdisjoint(container_environment(manifests, component))


def _listen_port(environment: dict[str, Any], name: str) -> int:
    return int(str(environment[name]).rpartition(":")[2])


def test_tls_files_and_submissions_only_on_the_ingress(tmp_path: Path) -> None:
    manifests = render("production")
    ingress, _ = kubelet_environment(manifests, "smtp-ingress", tmp_path / "i")
    settings = load_settings(ingress)
    assert settings.tls_enabled
    assert settings.submissions_address is not None
    for component in ("router", "delivery", "bounce"):
        environment = container_environment(manifests, component)
        assert "STAFFETTA_TLS_CERT_FILE" not in environment
        assert "STAFFETTA_SUBMISSIONS_LISTEN" not in environment


@pytest.mark.parametrize("component", ["smtp-ingress", "delivery"])
def test_check_config_accepts_the_production_environment(component: str, tmp_path: Path) -> None:
    environment, _ = kubelet_environment(render("production"), component, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), **environment},
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shown = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert shown["STAFFETTA_HOSTNAME"] == "mx1.example.org"
    assert shown["STAFFETTA_AMQP_URL"] == ("amqp://staffetta:***@staffetta-rabbitmq.mail.svc:5672/")
    assert "s3cret" not in result.stdout
