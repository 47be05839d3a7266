"""The aiosmtpd hooks: build a value, ask the policy, turn the decision into a reply.

Shared state of one ingress process lives in :class:`IngressContext`; the
per-connection state lives on the protocol object (:mod:`services.ingress.smtp`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.common.addressing import normalize_address
from services.common.amqp import BodyParts, Broker, BrokerUnavailable
from services.common.envelope import AcceptedMessage, new_queue_id
from services.common.reloading import ReloadingDirectory, ReloadingTable
from services.ingress import message, policy, replies, senders
from services.ingress.auth import AuthGuard, GuardSettings, UserDirectory
from services.ingress.metrics import IngressMetrics
from services.ingress.quota import LimitsTable, SendingLimits
from services.ingress.replies import Reply
from services.ingress.sessions import SessionTable
from services.ingress.usage import MemoryUsageStore, UsageStore

if TYPE_CHECKING:
    from services.ingress.smtp import IngressSMTP

log = logging.getLogger(__name__)


@dataclass
class IngressContext:
    """Everything the sessions of one ingress process share."""

    hostname: str
    broker: Broker
    directory: ReloadingDirectory
    limits: policy.Limits
    trusted_networks: tuple[policy.IPNetwork, ...]
    metrics: IngressMetrics
    sessions: SessionTable
    greet_pause: float = 0.0
    idle_timeout: float = 300.0
    tls_context: ssl.SSLContext | None = None
    users: UserDirectory = field(default_factory=lambda: UserDirectory(None))
    allow_plaintext_auth: bool = False
    guard: AuthGuard = field(default_factory=lambda: AuthGuard(GuardSettings()))
    sending_limits: SendingLimits = field(default_factory=SendingLimits)
    usage: UsageStore = field(default_factory=MemoryUsageStore)
    proxy_networks: tuple[policy.IPNetwork, ...] | None = None  # None: no PROXY protocol
    sender_logins: ReloadingTable[senders.SenderLogins] | None = None  # None: any sender
    limits_table: ReloadingTable[LimitsTable] | None = None  # the sending limits file
    stopping: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)  # set once stopping and idle
    connections: set[IngressSMTP] = field(default_factory=set)

    @property
    def open_transactions(self) -> int:
        return sum(1 for connection in self.connections if connection.in_transaction)


def _is_clean(address: str) -> bool:
    """No NUL, no other control characters, and valid UTF-8 (no escaped bytes)."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not policy.has_control_character(address)


def _declared_size(options: list[str]) -> int | None:
    for option in options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


class IngressHandler:
    """aiosmtpd handler: each hook returns the reply string for one command."""

    def __init__(self, context: IngressContext) -> None:
        self.context = context

    def _reject(self, stage: str, reply: Reply) -> str:
        self.context.metrics.rejected(stage, reply)
        return str(reply)

    async def handle_HELO(
        self, server: IngressSMTP, session: Any, envelope: Any, hostname: str
    ) -> str:
        if not _is_clean(hostname):
            return self._reject("helo", replies.BAD_HELO)
        session.host_name = hostname
        return f"250 {self.context.hostname}"

    async def handle_EHLO(
        self, server: IngressSMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        if not _is_clean(hostname):
            session.extended_smtp = False
            return [self._reject("helo", replies.BAD_HELO)]
        session.host_name = hostname
        return server.ehlo_lines(responses)

    async def handle_MAIL(
        self, server: IngressSMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        sender = "" if address == "<>" else address
        if not _is_clean(sender):
            return self._reject("mail", replies.BAD_SENDER)
        reply = policy.check_declared_size(_declared_size(options), self.context.limits)
        if reply.ok:
            reply = await server.sender_gate() or policy.check_sender(sender)
        if reply.ok and self.context.sender_logins is not None:
            logins = self.context.sender_logins.current()
            reply = senders.check_sender_login(logins, server.authenticated_user, sender)
        if reply.ok:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return self._reject("mail", reply)

    async def handle_RCPT(
        self, server: IngressSMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not _is_clean(address):
            return self._reject("rcpt", replies.BAD_ADDRESS)
        reply = policy.check_recipient(
            server.client(),
            address,
            self.context.directory.current(),
            len(envelope.rcpt_tos),
            server.max_recipients,
        )
        if reply.ok:
            key = normalize_address(address)
            if key not in envelope.recipient_keys:
                # Like Postfix's cleanup: one copy per recipient.
                envelope.recipient_keys.add(key)
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(options)
        return self._reject("rcpt", reply)

    async def handle_exception(self, error: Exception) -> str:
        """A bug must not look like a permanent refusal: log it, answer 451."""
        log.error(
            "SMTP session error",
            exc_info=(type(error), error, error.__traceback__),
            extra={"event": "session_error"},
        )
        return str(replies.LOCAL_ERROR)

    async def handle_DATA(self, server: IngressSMTP, session: Any, envelope: Any) -> str:
        reply = await self._queue(server, session, envelope)
        server.end_transaction(accepted=reply.ok)
        return self._reject("data", reply)

    async def _queue(self, server: IngressSMTP, session: Any, envelope: Any) -> Reply:
        context = self.context
        raw: bytes | bytearray = envelope.data
        if b"\x00" in raw:
            return replies.BAD_DATA
        body = raw if envelope.data_in_crlf else message.normalise_line_ends(raw)
        queue_id = new_queue_id()
        sender = "" if envelope.mail_from == "<>" else str(envelope.mail_from)
        recipients = [str(item) for item in envelope.rcpt_tos]
        client = server.client()
        helo = str(session.host_name or "")
        trace = message.Trace(
            helo=helo,
            client_address=client.address,
            hostname=context.hostname,
            queue_id=queue_id,
            recipients=tuple(recipients),
            esmtp=bool(session.extended_smtp),
            tls=server.tls_description(),
            user=client.user,
        )
        accepted = AcceptedMessage(
            queue_id=queue_id,
            sender=sender,
            recipients=recipients,
            accepted_at=time.time(),
            client_address=client.address,
            helo=helo,
            authenticated_user=client.user,
            received_headers=message.count_received(body),
            # The Received: line we add starts with a letter, so it keeps this true.
            wire_ready=envelope.data_wire_ready,
        )
        # Our Received: line goes in front of the message; for a big message as its own
        # piece: joining would copy 25 MiB to add 200 bytes. Only ``data`` is held now.
        data = BodyParts.of(message.received_header(trace), body)
        envelope.data = b""
        del raw, body
        started = time.monotonic()
        try:
            await context.broker.publish(
                context.broker.topology.incoming, data, accepted, message_id=queue_id
            )
        except BrokerUnavailable as exc:
            log.warning(
                "message not queued: broker unavailable",
                extra={"event": "publish_failed", "queue_id": queue_id, "error": str(exc)},
            )
            return replies.BROKER_DOWN
        context.metrics.publish_seconds.observe(time.monotonic() - started)
        if client.user:
            context.metrics.account_accepted(client.user, len(recipients))
        for item in server.counted:
            if item.limits.enabled:
                await context.usage.record(item.key, accepted.accepted_at)
        context.metrics.received_bytes.inc(len(data))
        log.info(
            "message queued",
            extra={
                "event": "accepted",
                "queue_id": queue_id,
                "client": client.address,
                "sender": sender,
                "recipients": len(recipients),
                "size": len(data),
                "user": client.user,
            },
        )
        return replies.queued(queue_id)
