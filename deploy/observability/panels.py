"""What the Staffetta dashboard shows: rows of panels, each a list of PromQL queries.

Plain data, no Grafana types: ``dashboard.py`` turns it into the dashboard JSON,
and the tests read the queries back from that JSON to run them on a real Prometheus.
Each panel answers one operator question; its description says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEL = 'namespace=~"$namespace", instance=~"$instance"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    unit: str
    queries: list[Query]
    width: int = 8


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: list[PanelSpec] = field(default_factory=list)


def rate(metric: str, by: str = "", match: str = "") -> str:
    """``sum by (by) (rate(metric{SEL, match}[$__rate_interval]))``."""
    grouping = f" by ({by})" if by else ""
    matchers = f"{SEL}, {match}" if match else SEL
    return f"sum{grouping} (rate({metric}{{{matchers}}}[{RATE}]))"


def ratio(metric: str, match: str) -> str:
    """The share of ``metric``'s rate that matches ``match``."""
    return f"{rate(metric, match=match)} / {rate(metric)}"


def quantiles(histogram: str, by: str = "") -> list[Query]:
    """p50, p95 and p99 of a histogram over the rate interval."""
    extra = f", {by}" if by else ""
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        Query(
            f"histogram_quantile({q}, sum by (le{extra}) "
            f"(rate({histogram}_bucket{{{SEL}}}[{RATE}])))",
            f"p{int(q * 100)}{suffix}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def by_label(metric: str, by: str) -> list[Query]:
    """The rate of ``metric``, one series per value of the ``by`` labels, named by them."""
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
    return [Query(rate(metric, by), legend)]


def rows() -> list[RowSpec]:
    return [
        RowSpec(
            "Traffic in",
            [
                PanelSpec(
                    "SMTP transactions by result",
                    "Transactions that reached MAIL: accepted (250, queued durably) or rejected. "
                    "Is mail coming in, and is it being turned away?",
                    "ops",
                    by_label("staffetta_ingress_messages_total", "result"),
                ),
                PanelSpec(
                    "SMTP sessions by port",
                    "New SMTP sessions per second on the MTA and submission ports.",
                    "ops",
                    by_label("staffetta_ingress_sessions_total", "port"),
                ),
                PanelSpec(
                    "Open SMTP sessions",
                    "Sessions open right now, all ingress processes.",
                    "short",
                    [Query(f"sum(staffetta_ingress_active_sessions{{{SEL}}})", "open")],
                ),
                PanelSpec(
                    "Accepted bytes",
                    "Message bytes accepted and queued per second.",
                    "Bps",
                    [Query(rate("staffetta_ingress_received_bytes_total"), "bytes")],
                    width=6,
                ),
                PanelSpec(
                    "Recipients routed",
                    "Final recipients per second after alias expansion: local or relay.",
                    "ops",
                    by_label("staffetta_router_recipients_total", "route"),
                    width=6,
                ),
                PanelSpec(
                    "Top sending accounts",
                    "Messages per second from authenticated accounts (submission), the ten "
                    "busiest; past the ingress's account limit the rest add up as _other.",
                    "ops",
                    [
                        Query(
                            "topk(10, "
                            + rate("staffetta_ingress_account_messages_total", "account")
                            + ")",
                            "{{account}}",
                        )
                    ],
                    width=6,
                ),
                PanelSpec(
                    "Router outcomes",
                    "Accepted messages handled by the router: routed, requeued (broker trouble), "
                    "rejected (unreadable envelope).",
                    "ops",
                    by_label("staffetta_router_messages_total", "result"),
                    width=6,
                ),
            ],
        ),
        RowSpec(
            "Delivery outcomes",
            [
                PanelSpec(
                    "Delivery attempts by result",
                    "Recipients per attempt: delivered, deferred (temporary failure, retried "
                    "later) or failed (bounced).",
                    "ops",
                    by_label("staffetta_delivery_attempts_total", "route, result"),
                    width=12,
                ),
                PanelSpec(
                    "Delivery failure and deferral ratio",
                    "Share of recipient attempts that failed permanently or were deferred.",
                    "percentunit",
                    [
                        Query(ratio("staffetta_delivery_attempts_total", f'result="{r}"'), r)
                        for r in ("failed", "deferred")
                    ],
                    width=12,
                ),
                PanelSpec(
                    "Outbound SMTP connections",
                    "Sessions to remote MX hosts / the smarthost by result (ok, reused, refused, "
                    "failed, greeting_<code>).",
                    "ops",
                    by_label("staffetta_delivery_connections_total", "result"),
                    width=12,
                ),
                PanelSpec(
                    "Outbound transport security",
                    "Outbound transactions with TLS, in plaintext, or after a failed STARTTLS.",
                    "ops",
                    by_label("staffetta_delivery_tls_sessions_total", "mode"),
                    width=12,
                ),
            ],
        ),
        RowSpec(
            "Latency",
            [
                PanelSpec(
                    "Accepted to delivered",
                    "End-to-end latency per delivered recipient, from the ingress's 250 on.",
                    "s",
                    quantiles("staffetta_delivery_end_to_end_seconds"),
                ),
                PanelSpec(
                    "One delivery attempt",
                    "Time spent on one attempt of one job, by route.",
                    "s",
                    quantiles("staffetta_delivery_duration_seconds", "route"),
                ),
                PanelSpec(
                    "Broker confirm at the ingress",
                    "From publishing an accepted message to the broker's confirm (the 250 waits "
                    "for it).",
                    "s",
                    quantiles("staffetta_ingress_publish_confirm_seconds"),
                ),
            ],
        ),
        RowSpec(
            "Queues and retries",
            [
                PanelSpec(
                    "Messages ready per queue",
                    "Depth of each queue (retry.<ttl> queues hold deferred jobs until their TTL).",
                    "short",
                    [
                        Query(
                            f"max by (queue) (staffetta_queue_messages{{{SEL}}})",
                            "{{queue}}",
                        )
                    ],
                ),
                PanelSpec(
                    "Consumers per queue",
                    "Consumers attached; incoming, delivery and bounce need at least one. "
                    "Retry queues have none by design.",
                    "short",
                    [
                        Query(
                            f"max by (queue) (staffetta_queue_consumers{{{SEL}}})",
                            "{{queue}}",
                        )
                    ],
                ),
                PanelSpec(
                    "Retries by failed attempt",
                    "Jobs sent to a retry queue per second, by the attempt number that failed.",
                    "ops",
                    [
                        Query(
                            rate("staffetta_delivery_retries_total", "attempt"),
                            "attempt {{attempt}}",
                        )
                    ],
                ),
                PanelSpec(
                    "Oldest deferred message",
                    "Age since acceptance of the oldest deferred job still waiting (max over the "
                    "delivery processes).",
                    "s",
                    [
                        Query(
                            f"max(staffetta_delivery_oldest_deferred_age_seconds{{{SEL}}})",
                            "oldest",
                        )
                    ],
                ),
                PanelSpec(
                    "Parked jobs and jobs in flight",
                    "Parked: jobs that crashed a worker too often (staffetta requeue-parked). "
                    "In flight: jobs being delivered now.",
                    "short",
                    [
                        Query(f"max(staffetta_delivery_parked_jobs{{{SEL}}})", "parked"),
                        Query(f"sum(staffetta_delivery_in_flight_jobs{{{SEL}}})", "in flight"),
                    ],
                ),
                PanelSpec(
                    "Delivery jobs by result",
                    "Jobs consumed: done, retried, requeued (broker trouble), rejected, parked.",
                    "ops",
                    by_label("staffetta_delivery_jobs_total", "result"),
                ),
            ],
        ),
        RowSpec(
            "Bounces",
            [
                PanelSpec(
                    "DSNs sent by kind",
                    "Delivery status notifications to original senders: failure or delay.",
                    "ops",
                    by_label("staffetta_bounces_total", "kind"),
                ),
                PanelSpec(
                    "Recipients reported in DSNs",
                    "Recipients per second named in DSNs, by kind.",
                    "ops",
                    by_label("staffetta_bounce_recipients_total", "kind"),
                ),
                PanelSpec(
                    "Bounces not sent and expired recipients",
                    "Dropped: no DSN (null sender or nothing to report). Expired: deferred "
                    "recipients failed because the queue lifetime ran out.",
                    "ops",
                    [
                        Query(rate("staffetta_bounces_dropped_total"), "dropped"),
                        Query(rate("staffetta_delivery_expired_recipients_total"), "expired"),
                    ],
                ),
            ],
        ),
        RowSpec(
            "Errors",
            [
                PanelSpec(
                    "Ingress negative replies",
                    "Negative replies by stage and enhanced status (4.3.0 = broker unavailable).",
                    "ops",
                    by_label("staffetta_ingress_rejections_total", "stage, status"),
                    width=12,
                ),
                PanelSpec(
                    "Sessions refused at the greeting",
                    "421/554 at connect, by reason (broker_unavailable, too_many_sessions, ...).",
                    "ops",
                    by_label("staffetta_ingress_refused_sessions_total", "reason"),
                    width=12,
                ),
                PanelSpec(
                    "Bounce jobs by result",
                    "Bounce jobs handled: sent, dropped, requeued (broker trouble), rejected.",
                    "ops",
                    by_label("staffetta_bounce_jobs_total", "result"),
                    width=12,
                ),
                PanelSpec(
                    "Age of the queue statistics",
                    "Seconds since the router last read the queue depths (grows while it cannot "
                    "reach the broker).",
                    "s",
                    [
                        Query(
                            f"time() - max(staffetta_queue_stats_timestamp_seconds{{{SEL}}})",
                            "age",
                        )
                    ],
                    width=12,
                ),
            ],
        ),
    ]
