"""Every ``STAFFETTA_*`` setting, parsed and validated in this one module.

Services receive a :class:`Settings` value; nothing else reads the environment.
A bad value becomes a one-line :class:`SettingsError` at start-up.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from services.common.durations import format_duration, parse_duration

ENV_PREFIX = "STAFFETTA_"


class SettingsError(Exception):
    """One or more settings are invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_port(text: str, default_port: int | None = None) -> ListenAddress:
    """Parse ``host:port``, ``[v6]:port`` or (with a default port) a bare host."""
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep:
            raise ValueError(f"invalid address {text!r}")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    elif value.count(":") > 1:
        host, port_text = value, ""  # a bare IPv6 address
    else:
        host, port_text = value, ""
    if not host:
        raise ValueError(f"invalid address {text!r}: no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"invalid address {text!r}: expected host:port")
        return ListenAddress(host, default_port)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid port in {text!r}")
    return ListenAddress(host, int(port_text))


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


# Settings written as durations (`30s`, `5m`, `1h30m`): parsed to seconds, shown the same way.
DURATION_FIELDS = (
    "greet_pause",
    "smtp_idle_timeout",
    "auth_lockout",
    "auth_failure_delay",
    "dns_timeout",
    "connect_timeout",
    "command_timeout",
    "data_timeout",
    "greeting_timeout",
    "starttls_timeout",
    "connection_cache_time",
    "max_queue_lifetime",
    "delay_warning_after",
)


class Settings(BaseModel):
    """The effective configuration of one Staffetta process.

    A plain model: :func:`load_settings` picks the ``STAFFETTA_*`` values out of any
    mapping and validates them, so tests and ``check-config`` can check any environment.
    """

    # validate_default: the defaults go through the same validators as given values.
    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)

    # Broker
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    amqp_prefix: str = Field(default="staffetta", pattern=r"^[A-Za-z0-9_.\-]+$")
    amqp_prefetch: int = Field(default=32, ge=1, le=10000)
    amqp_delivery_limit: int = Field(default=5, ge=1)

    # Identity and listeners
    hostname: str = Field(default_factory=socket.getfqdn)
    smtp_listen: str = "0.0.0.0:2525"
    submission_listen: str = "0.0.0.0:2587"
    submissions_listen: str = ""
    http_listen: str = "0.0.0.0:8080"
    allow_plaintext_auth: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    max_sessions: int = Field(default=1000, ge=1)
    max_sessions_per_ip: int = Field(default=100, ge=1)
    # Ingress: wait this long before the banner; a client that talks first is
    # refused with 554 5.5.0 (postscreen-style pre-greeting check; 0 = no wait,
    # only bytes already buffered at the greeting count).
    greet_pause: float = 0.0
    # Ingress: close an SMTP session idle for this long (RFC 5321 4.5.3.2: >= 5m).
    smtp_idle_timeout: float = 300.0
    # Ingress: failed AUTH per client address: each failure is answered after
    # AUTH_FAILURE_DELAY (doubling, at most 8x); AUTH_MAX_FAILURES failures within
    # AUTH_LOCKOUT lock the address out of AUTH (454 4.7.0) for AUTH_LOCKOUT.
    auth_max_failures: int = Field(default=5, ge=1)
    auth_lockout: float = 900.0
    auth_failure_delay: float = 1.0
    # Ingress: per-account sending limits for authenticated users (0 = unlimited):
    # messages per hour and per day (450 4.7.1), and per calendar month (550 5.7.1).
    account_max_per_hour: int = Field(default=0, ge=0)
    account_max_per_day: int = Field(default=0, ge=0)
    account_monthly_quota: int = Field(default=0, ge=0)
    # Ingress: lines `account|address|network name=N ...` (hour, day, month,
    # recipients): per-account overrides of the limits above, and limits per client
    # address for the networks listed; reloaded on change.
    sending_limits_file: Path | None = None
    # Ingress: at most this many accounts get their own `account` label on the
    # per-account metrics; the others are summed under account="_other".
    account_metrics_limit: int = Field(default=100, ge=0)
    # Redis for counters shared by all ingress replicas and for the per-destination
    # limits shared by all delivery replicas (empty: per-process counters).
    redis_url: SecretStr = SecretStr("")
    # Ingress: expect a PROXY protocol v1/v2 header (from a load balancer) on every
    # connection and take the client address from it; only for PROXY_NETWORKS.
    proxy_protocol: bool = False
    proxy_networks: list[str] = ["127.0.0.0/8", "::1/128"]

    # Policy
    local_domains: list[str] = []
    local_recipients_file: Path | None = None
    aliases_file: Path | None = None
    maildir_root: Path = Path("./var/mail")
    trusted_networks: list[str] = ["127.0.0.0/8", "::1/128"]
    users_file: Path | None = None
    # Ingress: lines `sender@domain: user[, user...]` or `@domain: user[, ...]`; when
    # set, an authenticated client may use only the envelope senders mapped to its
    # account (else 553 5.7.1); the null sender stays allowed.
    sender_logins_file: Path | None = None
    max_message_size: int = Field(default=26214400, ge=1)
    max_recipients: int = Field(default=1000, ge=1)

    # Outbound
    dns_nameservers: list[str] = []
    dns_timeout: float = 5.0
    remote_smtp_port: int = Field(default=25, ge=1, le=65535)
    smarthost: str = ""
    smarthost_username: str = ""
    smarthost_password_file: Path | None = None
    smarthost_tls: Literal["starttls", "implicit", "none"] = "starttls"
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    # Delivery: per-phase SMTP client timeouts (Postfix smtp_helo_timeout and
    # smtp_starttls_timeout); COMMAND_TIMEOUT covers MAIL, RCPT, RSET and QUIT.
    greeting_timeout: float = 300.0
    starttls_timeout: float = 300.0
    # Delivery: keep a finished SMTP session open this long for the next message
    # to the same host (RSET between messages); 0 closes after every message.
    connection_cache_time: float = 2.0
    # Delivery, per process and destination (domain or smarthost): at most this
    # many simultaneous deliveries (0 = no cap) and this rate ("N/s", "N/m",
    # "N/h"; empty = no limit). Jobs over either limit wait in PREFIX.throttle.
    destination_concurrency: int = Field(default=20, ge=0)
    destination_rate_limit: str = Field(default="", pattern=r"^(\s*|\d+(\.\d+)?/[smh])$")

    # Queue lifetime
    retry_schedule: list[float] = [
        300.0,
        600.0,
        1200.0,
        2400.0,
        4800.0,
        9600.0,
        14400.0,
    ]
    max_queue_lifetime: float = 5 * 86400.0
    delay_warning_after: float = 4 * 3600.0

    # Delivery: the HTTP admin API (/admin/*, queue control) answers only requests
    # with `Authorization: Bearer <token>`, the token read from this file (trailing
    # newline ignored); unset disables the admin API (404).
    admin_token_file: Path | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("local_domains", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> Any:
        items = _split_list(value)
        if isinstance(items, list):
            return [str(item).strip().rstrip(".").lower() for item in items]
        return items

    @field_validator("trusted_networks", "proxy_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        items = _split_list(value)
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network: {item!r}") from exc
        return items

    @field_validator("dns_nameservers", mode="before")
    @classmethod
    def _nameservers(cls, value: Any) -> Any:
        items = _split_list(value)
        for item in items:
            address = parse_host_port(item, default_port=53)
            ipaddress.ip_address(address.host)
        return items

    @field_validator(*DURATION_FIELDS, mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        items = _split_list(value)
        steps = [_duration(item) for item in items]
        if not steps:
            raise ValueError("the retry schedule needs at least one step")
        if any(step <= 0 for step in steps):
            raise ValueError("retry steps must be longer than zero")
        return steps

    @field_validator("smtp_listen", "http_listen")
    @classmethod
    def _required_listen(cls, value: str) -> str:
        parse_host_port(value)
        return value

    @field_validator("submission_listen", "submissions_listen", "smarthost")
    @classmethod
    def _optional_listen(cls, value: str) -> str:
        if value.strip():
            parse_host_port(value)
        return value.strip()

    @model_validator(mode="after")
    def _files_exist(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "set both STAFFETTA_TLS_CERT_FILE and STAFFETTA_TLS_KEY_FILE or neither"
            )
        if self.submissions_listen and self.tls_cert_file is None:
            raise ValueError("STAFFETTA_SUBMISSIONS_LISTEN needs STAFFETTA_TLS_CERT_FILE")
        for name in (
            "tls_cert_file",
            "tls_key_file",
            "local_recipients_file",
            "aliases_file",
            "users_file",
            "sender_logins_file",
            "sending_limits_file",
            "smarthost_password_file",
            "admin_token_file",
        ):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: no such file {str(path)!r}")
        if self.admin_token_file is not None and not self.admin_token():
            raise ValueError(f"{ENV_PREFIX}ADMIN_TOKEN_FILE: the token file is empty")
        return self

    # Derived values, so that adapters never parse strings themselves.

    @property
    def smtp_address(self) -> ListenAddress:
        return parse_host_port(self.smtp_listen)

    @property
    def submission_address(self) -> ListenAddress | None:
        return parse_host_port(self.submission_listen) if self.submission_listen else None

    @property
    def submissions_address(self) -> ListenAddress | None:
        return parse_host_port(self.submissions_listen) if self.submissions_listen else None

    @property
    def http_address(self) -> ListenAddress:
        return parse_host_port(self.http_listen)

    @property
    def smarthost_address(self) -> ListenAddress | None:
        return parse_host_port(self.smarthost, default_port=25) if self.smarthost else None

    @property
    def nameserver_addresses(self) -> list[ListenAddress]:
        return [parse_host_port(item, default_port=53) for item in self.dns_nameservers]

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    def smarthost_password(self) -> str:
        if self.smarthost_password_file is None:
            return ""
        return self.smarthost_password_file.read_text().rstrip("\r\n")

    def admin_token(self) -> str:
        """The admin API's bearer token ("" when the admin API is disabled)."""
        if self.admin_token_file is None:
            return ""
        return self.admin_token_file.read_text().rstrip("\r\n")

    def describe(self) -> dict[str, str]:
        """The effective settings as environment-style strings, secrets masked."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = _mask_url(value.get_secret_value())
            elif name in DURATION_FIELDS:
                text = format_duration(value)
            elif name == "retry_schedule":
                text = ",".join(format_duration(step) for step in value)
            elif isinstance(value, list):
                text = ",".join(str(item) for item in value)
            elif value is None:
                text = ""
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            shown[f"{ENV_PREFIX}{name.upper()}"] = text
        return shown


def _mask_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default: the process environment).

    Raises :class:`SettingsError` with one line per invalid variable.
    """
    source = dict(os.environ if environ is None else environ)
    values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in source.items()
        if key.startswith(ENV_PREFIX)
    }
    known = set(Settings.model_fields)
    problems = [
        f"{ENV_PREFIX}{key.upper()}: unknown setting" for key in sorted(values) if key not in known
    ]
    try:
        settings = Settings.model_validate({k: v for k, v in values.items() if k in known})
    except ValidationError as exc:
        for error in exc.errors():
            location = error["loc"]
            field = f"{ENV_PREFIX}{str(location[0]).upper()}" if location else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{field}: {message}" if location else message)
        raise SettingsError(problems) from None
    if problems:
        raise SettingsError(problems)
    return settings
