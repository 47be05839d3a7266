"""``staffetta delivery``: wire settings, broker, DNS, SMTP client, Maildir, metrics
and the queue-control admin API."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from services.common.amqp import Broker
from services.common.consumer import ConsumerService, QueueConsumer
from services.common.settings import Settings
from services.delivery.admin_api import admin_router
from services.delivery.connections import ConnectionPool
from services.delivery.dns_lookup import DnsResolver
from services.delivery.maildir import Maildir
from services.delivery.metrics import DeliveryMetrics
from services.delivery.mx import Identity
from services.delivery.outcome import RetryPolicy
from services.delivery.queue_admin import QueueAdmin
from services.delivery.relay import Relay, RelayConfig
from services.delivery.shared_limits import Limiter, LocalLimiter, RedisLimiter
from services.delivery.smtp_client import ClientConfig, Timeouts, TlsMode
from services.delivery.throttle import DeliveryTopology, DestinationLimiter, parse_rate
from services.delivery.worker import DeliveryWorker, Throttle

PARKED_POLL_INTERVAL = 15.0


def identity_of(settings: Settings) -> Identity:
    """Our name and the specific (non-wildcard) addresses we listen on."""
    addresses = set()
    for address in (settings.smtp_address, settings.submission_address):
        if address is None:
            continue
        try:
            ip = ipaddress.ip_address(address.host)
        except ValueError:
            continue
        if not ip.is_unspecified:
            addresses.add(str(ip))
    return Identity(settings.hostname, frozenset(addresses))


def client_config(settings: Settings) -> ClientConfig:
    timeouts = Timeouts(
        connect=settings.connect_timeout,
        command=settings.command_timeout,
        data=settings.data_timeout,
        greeting=settings.greeting_timeout,
        starttls=settings.starttls_timeout,
    )
    if not settings.smarthost:
        return ClientConfig(helo=settings.hostname, timeouts=timeouts)
    tls: TlsMode = settings.smarthost_tls
    return ClientConfig(
        helo=settings.hostname,
        timeouts=timeouts,
        tls=tls,
        username=settings.smarthost_username,
        password=settings.smarthost_password() if settings.smarthost_username else "",
    )


def limiter_for(settings: Settings) -> Limiter:
    """Per-destination limits: shared through Redis when configured, else per process."""
    limits = DestinationLimiter(
        settings.destination_concurrency, parse_rate(settings.destination_rate_limit)
    )
    redis_url = settings.redis_url.get_secret_value()
    if redis_url and (limits.concurrency or limits.rate):
        return RedisLimiter(redis_url, f"staffetta:{settings.amqp_prefix}:delivery", limits)
    return LocalLimiter(limits)


class DeliveryService(ConsumerService):
    name = "delivery"

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.metrics = DeliveryMetrics.create(self.registry)
        topology = DeliveryTopology.from_settings(settings)
        self.broker = Broker.from_settings(settings, topology)
        self.limiter = limiter_for(settings)
        self.pool = ConnectionPool(settings.connection_cache_time, quit_timeout=5.0)
        relay = Relay(
            DnsResolver(settings.nameserver_addresses, settings.dns_timeout),
            RelayConfig(
                identity=identity_of(settings),
                remote_port=settings.remote_smtp_port,
                client=client_config(settings),
                smarthost=settings.smarthost_address,
            ),
            self.metrics,
            pool=self.pool,
        )
        self.worker = DeliveryWorker(
            self.broker,
            relay,
            Maildir(settings.maildir_root, settings.hostname),
            RetryPolicy(settings.max_queue_lifetime, settings.delay_warning_after),
            self.metrics,
            throttle=Throttle(self.limiter, topology.throttle, smarthost=settings.smarthost),
        )
        self.consumer = QueueConsumer(
            self.broker,
            topology.delivery,
            self.worker.handle,
            background=[
                self._watch_parked,
                *([self.pool.reap_forever] if self.pool.enabled else []),
            ],
            cleanups=[self.pool.close, self.limiter.close],
        )
        self._admin_token = settings.admin_token()
        self._amqp_url = settings.amqp_url.get_secret_value()

    def http_routes(self) -> APIRouter | None:
        """The token-protected ``/admin`` API, or None when no token file is set."""
        if not self._admin_token:
            return None
        return admin_router(
            self._admin_token, lambda: QueueAdmin(self._amqp_url, self.broker.topology)
        )

    async def _watch_parked(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                ready, _ = await self.broker.queue_depth(self.broker.topology.parked)
                self.metrics.parked.set(ready)
            self.worker.refresh_gauges()
            await asyncio.sleep(PARKED_POLL_INTERVAL)  # a module global, so tests can shorten it


def build(settings: Settings) -> DeliveryService:
    return DeliveryService(settings)
