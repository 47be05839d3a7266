"""One line of documentation per setting: the source of the README's table.

``python -m services.common.settings_docs`` prints the Markdown table; a test
keeps README.md and this mapping in step with :class:`Settings`.
"""

from __future__ import annotations

from pydantic import SecretStr

from services.common.settings import ENV_PREFIX, Settings, load_settings

MEANINGS: dict[str, str] = {
    "amqp_url": "the broker",
    "amqp_prefix": "every queue name starts with `PREFIX.`: two installs (or test runs) share a broker without meeting",
    "amqp_prefetch": "unacknowledged messages per consumer (the active window of each worker)",
    "amqp_delivery_limit": "redeliveries of a job (a worker crashed on it) before it is parked in `PREFIX.parked`",
    "hostname": "name in the banner, `Received:` headers, HELO and DSN `Reporting-MTA`",
    "smtp_listen": "MTA port (the Service maps 25 to it); no AUTH needed to deliver to local domains",
    "submission_listen": "submission port: AUTH required before MAIL; empty disables",
    "submissions_listen": "implicit-TLS submission (465 style); empty disables",
    "http_listen": "this service's HTTP port: `/healthz`, `/readyz`, `/metrics` (and `/admin/*` on delivery)",
    "allow_plaintext_auth": "allow AUTH without TLS (for tests and trusted links only)",
    "tls_cert_file": "certificate chain (PEM); with the key, STARTTLS is offered on both ports; reloaded on change",
    "tls_key_file": "private key (PEM) of the certificate",
    "max_sessions": "concurrent SMTP sessions per ingress process; past it `421 4.7.0`",
    "max_sessions_per_ip": "concurrent SMTP sessions per client address; past it `421 4.7.0`",
    "greet_pause": "wait before the banner; a client that talks first gets `554 5.5.0`",
    "smtp_idle_timeout": "close an idle SMTP session (`421 4.4.2`) after this long",
    "auth_max_failures": "failed AUTH attempts per client address within `AUTH_LOCKOUT` before a lockout (`454 4.7.0`)",
    "auth_lockout": "the failed-AUTH counting window and lockout length",
    "auth_failure_delay": "delay before each `535` answer, doubling per recent failure (at most 8x)",
    "account_max_per_hour": "messages per hour per authenticated account (`450 4.7.1`); 0 = unlimited",
    "account_max_per_day": "messages per day per authenticated account (`450 4.7.1`); 0 = unlimited",
    "account_monthly_quota": "messages per calendar month per account (`550 5.7.1`); 0 = unlimited",
    "sending_limits_file": "per-account overrides and per-network limits (`who hour=N day=N month=N recipients=N`); reloaded on change",
    "account_metrics_limit": "accounts that get their own `account` label on usage metrics; the rest are `_other`",
    "redis_url": "shared counters for sending limits (ingress) and destination limits (delivery); empty = per process",
    "proxy_protocol": "expect a PROXY v1/v2 header on every connection",
    "proxy_networks": "peers allowed to send a PROXY header; others get `421 4.7.0`",
    "local_domains": "domains whose mail is delivered locally",
    "local_recipients_file": "one address a line; when set, other recipients at local domains are refused at RCPT (`550 5.1.1`)",
    "aliases_file": "lines `alias@domain: target[, target...]`; targets may be local or remote; recursive, at most 10 levels",
    "maildir_root": "local mail for `user@domain` lands in `ROOT/domain/user/new/` (Maildir)",
    "trusted_networks": "clients that may relay to any domain without AUTH (MTA port)",
    "users_file": "lines `user:hash` (bcrypt, as `htpasswd -nbB` writes them): the accounts for AUTH PLAIN and LOGIN",
    "sender_logins_file": "lines `sender@domain: user, ...` or `@domain: user`; a logged-in account may use only its senders (`553 5.7.1`)",
    "max_message_size": "bytes; announced in EHLO `SIZE`",
    "max_recipients": "per message; past it `452 4.5.3`",
    "dns_nameservers": "`ip` or `ip:port` list for MX/A/AAAA look-ups",
    "dns_timeout": "time for one DNS look-up; a timeout defers the delivery",
    "remote_smtp_port": "port used on every MX host",
    "smarthost": "`host:port`: send all non-local mail there instead of looking up MX",
    "smarthost_username": "AUTH user towards the smarthost",
    "smarthost_password_file": "AUTH password towards the smarthost (trailing newline ignored)",
    "smarthost_tls": "`starttls` (required), `implicit`, or `none`",
    "connect_timeout": "TCP connect to a remote host",
    "command_timeout": "reply to MAIL, RCPT, RSET, QUIT",
    "data_timeout": "sending the message and the reply to the final dot",
    "greeting_timeout": "the remote banner and EHLO reply",
    "starttls_timeout": "STARTTLS and the TLS handshake",
    "connection_cache_time": "keep a finished session open this long for the next message to the same host; 0 = no reuse",
    "destination_concurrency": "simultaneous deliveries per destination (domain or smarthost); 0 = no cap",
    "destination_rate_limit": "`N/s`, `N/m` or `N/h` per destination; excess waits in the queue, never bounced; empty = no limit",
    "retry_schedule": "waits between attempts after a temporary failure; the last repeats",
    "max_queue_lifetime": "after this, a still-deferred recipient is bounced (`4.4.7`)",
    "delay_warning_after": 'one "delayed" DSN once a recipient has waited this long; `0` disables',
    "admin_token_file": "bearer token for the delivery service's `/admin/*` queue API; unset disables it",
    "log_level": "`DEBUG`, `INFO`, `WARNING` or `ERROR`",
}

_SPECIAL_DEFAULTS = {
    "hostname": "the host's FQDN",
    "dns_nameservers": "the system's",
    "maildir_root": "`./var/mail`",  # str(Path) would drop the ./
}


def default_text(name: str, value: str) -> str:
    if name in _SPECIAL_DEFAULTS:
        return _SPECIAL_DEFAULTS[name]
    default = Settings.model_fields[name].default
    if isinstance(default, SecretStr):  # documented defaults hold no real secrets
        value = default.get_secret_value()
    return f"`{value}`" if value else "empty"


def markdown_table() -> str:
    defaults = load_settings({}).describe()
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name in Settings.model_fields:
        variable = f"{ENV_PREFIX}{name.upper()}"
        meaning = MEANINGS.get(name, "")
        lines.append(f"| `{variable}` | {default_text(name, defaults[variable])} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
