"""The ingress service: SMTP listeners in front of ``PREFIX.incoming``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services.common.amqp import Broker
from services.common.reloading import ReloadingDirectory, ReloadingTable
from services.common.settings import ListenAddress, Settings
from services.ingress.auth import AuthGuard, GuardSettings, UserDirectory
from services.ingress.handler import IngressContext, IngressHandler
from services.ingress.metrics import IngressMetrics
from services.ingress.policy import Limits, PortKind, parse_networks
from services.ingress.quota import LimitsTable, SendingLimits, parse_limits
from services.ingress.senders import SenderLogins, load_sender_logins
from services.ingress.sessions import SessionTable
from services.ingress.smtp import IngressSMTP
from services.ingress.tls import ReloadingCertificate
from services.ingress.usage import usage_store

log = logging.getLogger(__name__)

STOP_GRACE = 25.0


@dataclass(frozen=True)
class Listener:
    port: PortKind
    address: ListenAddress


def listeners(settings: Settings) -> list[Listener]:
    found = [Listener("smtp", settings.smtp_address)]
    if settings.submission_address is not None:
        found.append(Listener("submission", settings.submission_address))
    if settings.submissions_address is not None:
        found.append(Listener("submissions", settings.submissions_address))
    return found


class IngressService:
    name = "ingress"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = IngressMetrics(self.registry, settings.account_metrics_limit)
        self.broker = Broker.from_settings(settings)
        self.certificate = (
            ReloadingCertificate(settings.tls_cert_file, settings.tls_key_file)
            if settings.tls_cert_file is not None and settings.tls_key_file is not None
            else None
        )
        self.tls_context = self.certificate.context if self.certificate is not None else None
        self.context = IngressContext(
            hostname=settings.hostname,
            broker=self.broker,
            directory=ReloadingDirectory(
                settings.local_domains, settings.local_recipients_file, settings.aliases_file
            ),
            limits=Limits(settings.max_message_size, settings.max_recipients),
            trusted_networks=parse_networks(settings.trusted_networks),
            metrics=self.metrics,
            sessions=SessionTable(settings.max_sessions, settings.max_sessions_per_ip),
            greet_pause=settings.greet_pause,
            idle_timeout=settings.smtp_idle_timeout,
            tls_context=self.tls_context,
            users=UserDirectory(settings.users_file),
            allow_plaintext_auth=settings.allow_plaintext_auth,
            guard=AuthGuard(
                GuardSettings(
                    max_failures=settings.auth_max_failures,
                    window=settings.auth_lockout,
                    lockout=settings.auth_lockout,
                    delay=settings.auth_failure_delay,
                    max_delay=settings.auth_failure_delay * 8,
                )
            ),
            sending_limits=SendingLimits(
                settings.account_max_per_hour,
                settings.account_max_per_day,
                settings.account_monthly_quota,
            ),
            usage=usage_store(settings.redis_url.get_secret_value(), settings.amqp_prefix),
            proxy_networks=(
                parse_networks(settings.proxy_networks) if settings.proxy_protocol else None
            ),
            sender_logins=sender_logins(settings),
            limits_table=limits_table(settings),
        )
        self.handler = IngressHandler(self.context)
        self._servers: list[asyncio.Server] = []
        self._connect_task: asyncio.Task[None] | None = None
        self.bound: dict[PortKind, ListenAddress] = {}

    def is_ready(self) -> bool:
        return self.broker.ready and bool(self._servers) and not self.context.stopping

    async def start(self) -> None:
        # The ports listen even while the broker is down: clients then get
        # 421 4.3.0 at the greeting instead of a refused connection.
        self._connect_task = asyncio.create_task(self.broker.connect_forever())
        loop = asyncio.get_running_loop()
        for listener in listeners(self.settings):
            server = await loop.create_server(
                self._factory(listener.port),
                host=listener.address.host,
                port=listener.address.port,
                reuse_address=True,
                ssl=self.tls_context if listener.port == "submissions" else None,
            )
            self._servers.append(server)
            sockname = server.sockets[0].getsockname()
            self.bound[listener.port] = ListenAddress(str(sockname[0]), int(sockname[1]))
            log.info(
                "listening",
                extra={
                    "event": "listening",
                    "port": listener.port,
                    "address": str(self.bound[listener.port]),
                },
            )

    def _factory(self, port: PortKind) -> Callable[[], IngressSMTP]:
        handler = self.handler
        certificate = self.certificate

        def make() -> IngressSMTP:
            # Called as the connection is accepted, before any TLS handshake on it.
            if certificate is not None:
                certificate.refresh()
            return IngressSMTP(handler, port=port)

        return make

    async def stop(self) -> None:
        """Stop listening, let open transactions finish (bounded), then hang up."""
        self.context.stopping = True
        for server in self._servers:
            server.close()
        if self.context.open_transactions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.context.drained.wait(), STOP_GRACE)
        for connection in list(self.context.connections):
            await connection.close_for_shutdown()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connect_task
        await self.broker.close()
        await self.context.usage.close()
        log.info("ingress stopped", extra={"event": "ingress_stopped"})


def sender_logins(settings: Settings) -> ReloadingTable[SenderLogins] | None:
    path = settings.sender_logins_file
    if path is None:
        return None
    return ReloadingTable((path,), lambda: load_sender_logins(path), "sender_logins")


def limits_table(settings: Settings) -> ReloadingTable[LimitsTable] | None:
    path = settings.sending_limits_file
    if path is None:
        return None
    return ReloadingTable(
        (path,), lambda: parse_limits(path.read_text().splitlines()), "sending_limits"
    )


def build(settings: Settings) -> IngressService:
    return IngressService(settings)
