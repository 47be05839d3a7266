"""The ingress's Prometheus metrics, on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
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
        for result in ("accepted", "rejected"):
            self.messages.labels(result=result)
        for port in ("smtp", "submission", "submissions"):
            self.sessions.labels(port=port)
