"""The ingress's Prometheus metrics, on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import export_at_zero
from services.ingress.replies import Reply

OTHER_ACCOUNTS = "_other"


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry, account_limit: int = 100) -> None:
        # Per-account series: only authenticated accounts (so only names from the
        # users file), and at most ``account_limit`` of them; the rest are summed
        # under account="_other". Label cardinality stays bounded by configuration.
        self._account_limit = account_limit
        self._accounts: set[str] = set()
        self.account_messages = Counter(
            "staffetta_ingress_account_messages_total",
            "Messages accepted from authenticated clients, by account",
            ["account"],
            registry=registry,
        )
        self.account_recipients = Counter(
            "staffetta_ingress_account_recipients_total",
            "Recipients of messages accepted from authenticated clients, by account",
            ["account"],
            registry=registry,
        )
        self.messages = Counter(
            "staffetta_ingress_messages_total",
            "SMTP transactions that reached MAIL, by outcome (accepted = 250 for the message)",
            ["result"],
            registry=registry,
        )
        self.sessions = Counter(
            "staffetta_ingress_sessions_total",
            "SMTP sessions opened, by listening port",
            ["port"],
            registry=registry,
        )
        self.rejections = Counter(
            "staffetta_ingress_rejections_total",
            "Negative replies to MAIL, RCPT, DATA and AUTH, by reason (enhanced status code)",
            ["stage", "status"],
            registry=registry,
        )
        self.received_bytes = Counter(
            "staffetta_ingress_received_bytes_total",
            "Message bytes accepted and queued (after our Received: header)",
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "staffetta_ingress_publish_confirm_seconds",
            "Time from publishing an accepted message until the broker confirmed it",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
            registry=registry,
        )
        self.active_sessions = Gauge(
            "staffetta_ingress_active_sessions",
            "SMTP sessions open right now",
            registry=registry,
        )
        self.refused_sessions = Counter(
            "staffetta_ingress_refused_sessions_total",
            "Connections answered with 421 or 554 at the greeting, by reason",
            ["reason"],
            registry=registry,
        )
        export_at_zero(self.messages, "result", ("accepted", "rejected"))
        export_at_zero(self.sessions, "port", ("smtp", "submission", "submissions"))

    def rejected(self, stage: str, reply: Reply) -> None:
        """Count ``reply`` under ``stage`` when it is a refusal."""
        if not reply.ok:
            self.rejections.labels(stage=stage, status=reply.enhanced).inc()

    def account_label(self, user: str) -> str:
        """``user`` itself while fewer than the limit have been seen, else ``_other``."""
        if user in self._accounts:
            return user
        if len(self._accounts) < self._account_limit and user != OTHER_ACCOUNTS:
            self._accounts.add(user)
            return user
        return OTHER_ACCOUNTS

    def account_accepted(self, user: str, recipients: int) -> None:
        label = self.account_label(user)
        self.account_messages.labels(account=label).inc()
        self.account_recipients.labels(account=label).inc(recipients)
