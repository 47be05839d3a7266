"""The SMTP edge: aiosmtpd's protocol, adapted to the contract.

:class:`IngressSMTP` adds what aiosmtpd leaves to us: session limits, the
early-talker check and the broker check at the greeting, enhanced status codes
on every reply, and the accounting of transactions for metrics and for a
graceful stop. Every decision is the policy's; the hooks live in
:mod:`services.ingress.handler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP

from services.ingress import replies
from services.ingress.handler import IngressContext, IngressHandler
from services.ingress.policy import Client, PortKind, is_trusted
from services.ingress.replies import Reply

log = logging.getLogger(__name__)

IDENT = "ESMTP Staffetta"


class IngressSMTP(SMTP):
    """One SMTP connection on one of the ingress ports."""

    def __init__(
        self,
        handler: IngressHandler,
        *,
        port: PortKind,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        **auth: Any,
    ) -> None:
        context = handler.context
        super().__init__(
            handler,
            data_size_limit=context.limits.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=context.hostname,
            ident=IDENT,
            tls_context=tls_context,
            timeout=context.idle_timeout,
            loop=asyncio.get_running_loop(),
            **auth,
        )
        self.context: IngressContext = context
        self.port_kind: PortKind = port
        self.implicit_tls = implicit_tls
        self.in_transaction = False
        self._counted_address: str | None = None
        self._greeted = False
        self._in_ehlo = False

    # -- who is talking ---------------------------------------------------

    @property
    def client_address(self) -> str:
        peer = self.session.peer if self.session is not None else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return str(peer or "")

    @property
    def authenticated_user(self) -> str:
        if self.session is None or not self.session.authenticated:
            return ""
        return str(getattr(self.session.auth_data, "login", b"").decode("utf-8", "replace"))

    def client(self) -> Client:
        address = self.client_address
        return Client(
            address=address,
            port=self.port_kind,
            trusted=is_trusted(address, self.context.trusted_networks),
            user=self.authenticated_user,
        )

    @property
    def tls_active(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    def tls_description(self) -> str:
        """``TLSv1.3 with cipher NAME (256/256 bits)`` for the Received: header."""
        transport = self.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return ""
        cipher = ssl_object.cipher()
        if not cipher:
            return str(ssl_object.version())
        name, _, bits = cipher
        return f"{ssl_object.version()} with cipher {name} ({bits}/{bits} bits)"

    # -- connection life cycle --------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.context.connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.context.connections.discard(self)
        if self.in_transaction:
            self.end_transaction(accepted=False)
        if self._counted_address is not None:
            self.context.sessions.close(self._counted_address)
            self.context.metrics.active_sessions.dec()
            self._counted_address = None
        super().connection_lost(error)

    async def _refuse(self, reply: Reply, reason: str) -> None:
        self.context.metrics.refused_sessions.labels(reason=reason).inc()
        log.info(
            "session refused",
            extra={"event": "session_refused", "reason": reason, "client": self.client_address},
        )
        self._greeted = True
        await super().push(str(reply))
        if self.transport is not None:
            self.transport.close()

    async def _handle_client(self) -> None:
        context = self.context
        address = self.client_address
        if context.stopping:
            await self._refuse(replies.SHUTTING_DOWN, "shutting_down")
            return
        if not context.sessions.open(address):
            await self._refuse(replies.TOO_MANY_SESSIONS, "too_many_sessions")
            return
        self._counted_address = address
        context.metrics.sessions.labels(port=self.port_kind).inc()
        context.metrics.active_sessions.inc()
        # Postscreen-style pre-greeting pause: a client that talks before our
        # banner is a spambot or a smuggler; a real client waits.
        await asyncio.sleep(context.greet_pause)
        if getattr(self._reader, "_buffer", b""):
            await self._refuse(replies.EARLY_TALKER, "early_talker")
            return
        if not context.broker.ready:
            await self._refuse(replies.BROKER_DOWN_GREETING, "broker_unavailable")
            return
        await super()._handle_client()

    async def close_for_shutdown(self) -> None:
        """Tell an idle client we are going away, then hang up."""
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await super().push(str(replies.SHUTTING_DOWN))
        if self.transport is not None:
            self.transport.close()

    # -- replies ------------------------------------------------------------

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and self._greeted and not self._in_ehlo:
            status = replies.with_enhanced_code(status)
        self._greeted = True
        await super().push(status)

    def ehlo_lines(self, responses: list[str]) -> list[str]:
        """aiosmtpd's EHLO keywords, plus ours, minus AUTH where it may not be offered."""
        keywords = [line[4:] for line in responses[1:]]
        wanted = [k for k in keywords if k.split(" ", 1)[0] in ("SIZE", "8BITMIME", "STARTTLS")]
        wanted += ["PIPELINING", "ENHANCEDSTATUSCODES", "SMTPUTF8"]
        auth = [k for k in keywords if k.startswith("AUTH ")]
        if auth and self.auth_offered():
            wanted += auth
        lines = [responses[0]] + [f"250-{k}" for k in wanted[:-1]]
        return [*lines, f"250 {wanted[-1]}"]

    # -- AUTH -------------------------------------------------------------------

    def auth_offered(self) -> bool:
        """Is AUTH advertised and accepted on this connection right now?"""
        return False

    def sender_gate(self) -> Reply | None:
        """A refusal of MAIL that does not depend on the address (AUTH, limits)."""
        if self.port_kind != "smtp" and not self.authenticated_user:
            return replies.AUTH_REQUIRED
        return None

    # -- transactions -----------------------------------------------------------

    def end_transaction(self, *, accepted: bool) -> None:
        if not self.in_transaction:
            return
        self.in_transaction = False
        self.context.metrics.messages.labels(result="accepted" if accepted else "rejected").inc()
        if self.context.stopping and not self.context.open_transactions:
            self.context.drained.set()

    async def smtp_AUTH(self, arg: str) -> None:
        if not self.auth_offered():
            await self.push(str(replies.AUTH_UNAVAILABLE))
            return
        await super().smtp_AUTH(arg)

    async def smtp_HELO(self, hostname: str) -> None:
        self.end_transaction(accepted=False)
        await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        self.end_transaction(accepted=False)
        self._in_ehlo = bool(hostname)
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_RSET(self, arg: str) -> None:
        self.end_transaction(accepted=False)
        await super().smtp_RSET(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if self.context.stopping and not self.in_transaction:
            await self.close_for_shutdown()
            return
        if self.envelope is not None and self.envelope.mail_from is None:
            # A MAIL after a refused MAIL starts a new transaction.
            self.end_transaction(accepted=False)
        self.in_transaction = True
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg: str) -> None:
        await super().smtp_DATA(arg)
        if self.envelope is not None and self.envelope.mail_from is None:
            # DATA ended without our hook's 250 (too big, line too long...).
            self.end_transaction(accepted=False)
