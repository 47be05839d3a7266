"""``staffetta delivery``: wire settings, broker, DNS, SMTP client, Maildir and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging

from prometheus_client import CollectorRegistry

from services.common.amqp import Broker
from services.common.settings import Settings
from services.delivery.connections import ConnectionPool
from services.delivery.dns_lookup import DnsResolver
from services.delivery.maildir import Maildir
from services.delivery.metrics import DeliveryMetrics
from services.delivery.mx import Identity
from services.delivery.outcome import RetryPolicy
from services.delivery.relay import Relay, RelayConfig
from services.delivery.shared_limits import Limiter, LocalLimiter, RedisLimiter
from services.delivery.smtp_client import ClientConfig, Timeouts, TlsMode
from services.delivery.throttle import DeliveryTopology, DestinationLimiter, parse_rate
from services.delivery.worker import DeliveryWorker, Throttle

log = logging.getLogger(__name__)

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


class DeliveryService:
    name = "delivery"

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.metrics = DeliveryMetrics.create(self.registry)
        topology = DeliveryTopology(
            settings.amqp_prefix,
            tuple(settings.retry_schedule),
            delivery_limit=settings.amqp_delivery_limit,
        )
        self.broker = Broker(
            settings.amqp_url.get_secret_value(), topology, prefetch=settings.amqp_prefetch
        )
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
        self._consuming = False
        self._tasks: list[asyncio.Task[None]] = []

    def is_ready(self) -> bool:
        return self._consuming and self.broker.ready

    async def start(self) -> None:
        # The broker may come up after us: connect in the background, /readyz says 503 meanwhile.
        self._tasks.append(asyncio.create_task(self._connect_and_consume()))

    async def _connect_and_consume(self) -> None:
        await self.broker.connect_forever()
        await self.broker.consume(self.broker.topology.delivery, self.worker.handle)
        self._consuming = True
        log.info("consuming", extra={"event": "consuming", "queue": self.broker.topology.delivery})
        self._tasks.append(asyncio.create_task(self._watch_parked()))
        if self.pool.enabled:
            self._tasks.append(asyncio.create_task(self.pool.reap_forever()))

    async def _watch_parked(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                ready, _ = await self.broker.queue_depth(self.broker.topology.parked)
                self.metrics.parked.set(ready)
            self.worker.refresh_gauges()
            await asyncio.sleep(PARKED_POLL_INTERVAL)  # a module global, so tests can shorten it

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._consuming = False
        await self.broker.drain()
        await self.pool.close()
        await self.limiter.close()
        await self.broker.close()


def build(settings: Settings) -> DeliveryService:
    return DeliveryService(settings)
