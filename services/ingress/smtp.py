"""The SMTP edge: aiosmtpd's protocol, adapted to the contract.

:class:`IngressSMTP` adds what aiosmtpd leaves to us: session limits, the
PROXY header, the early-talker and broker checks at the greeting, enhanced
status codes on every reply, AUTH against the users file (with the failure
guard), and the accounting of transactions for metrics and a graceful stop.
Every decision is the policy's; the command hooks live in
:mod:`services.ingress.handler`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import logging
import time
from typing import Any

from aiosmtpd.proxy_protocol import get_proxy
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session, syntax

from services.ingress import aiosmtpd_speedups, message, quota, replies
from services.ingress.handler import IngressContext, IngressHandler
from services.ingress.policy import Client, PortKind, is_trusted, without_root_dot
from services.ingress.replies import Reply

log = logging.getLogger(__name__)

# Before any connection: every IngressSMTP then skips aiosmtpd's per-connection introspection.
aiosmtpd_speedups.install()

IDENT = "ESMTP Staffetta"
PROXY_HEADER_TIMEOUT = 10.0
DATA_CHUNK = 256 * 1024  # bytes taken from the socket buffer per read during DATA


class IngressSession(Session):
    """aiosmtpd's Session without the deprecation chatter of ``login_data``."""

    @property
    def login_data(self) -> Any:
        return None

    @login_data.setter
    def login_data(self, value: Any) -> None:
        pass


class IngressEnvelope(Envelope):
    """aiosmtpd's Envelope, plus what the ingress learns about the transaction on the way.

    A new one comes with every transaction (after DATA and on RSET), so none of it
    outlives the message it describes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.recipient_keys: set[str] = set()  # normalised recipients, for the duplicate check
        # The message as received (unstuffed). Not aiosmtpd's ``content``: for a big
        # message this is the receive buffer itself, a bytearray, not a bytes copy.
        self.data: bytes | bytearray = b""
        self.data_in_crlf = False  # the DATA's line ends are all CRLF already
        # ... and no line starts with ".": the body can follow DATA as it is, unstuffed
        self.data_wire_ready = False


class Account:
    """``auth_data`` of an authenticated session: the account name only, never the password."""

    def __init__(self, user: str) -> None:
        self.user = user


class IngressSMTP(SMTP):
    """One SMTP connection on one of the ingress ports."""

    def __init__(self, handler: IngressHandler, *, port: PortKind) -> None:
        context = handler.context
        super().__init__(
            handler,
            data_size_limit=context.limits.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=context.hostname,
            ident=IDENT,
            tls_context=None if port == "submissions" else context.tls_context,
            timeout=context.idle_timeout,
            auth_require_tls=False,  # checked here: implicit TLS counts too
            loop=asyncio.get_running_loop(),
        )
        # aiosmtpd keeps these limits in a dict shared by every instance (and grows
        # MAIL's on each EHLO): give each connection its own.
        self.command_size_limits: dict[str, int] = collections.defaultdict(
            lambda: SMTP.command_size_limit
        )
        self.context: IngressContext = context
        self.port_kind: PortKind = port
        self.implicit_tls = port == "submissions"
        self.in_transaction = False
        self.counted: tuple[quota.Counted, ...] = ()  # the sending limits of this transaction
        # Recipients allowed in this transaction: a sending limits line may allow fewer.
        self.max_recipients = context.limits.max_recipients
        self._client_ip = ""
        self._trust: tuple[str, bool] | None = None  # (client address, in trusted networks)
        self._counted_address: str | None = None
        self._greeted = False
        self._in_ehlo = False
        self._idle_deadline = 0.0  # loop time after which the session is idle
        self._idle_timer_set = False

    def _create_session(self) -> Session:
        return IngressSession(self.loop)

    def _create_envelope(self) -> IngressEnvelope:
        return IngressEnvelope()

    # -- who is talking ---------------------------------------------------

    @property
    def client_address(self) -> str:
        if self._client_ip:
            return self._client_ip
        peer = self.session.peer if self.session is not None else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return str(peer or "")

    @property
    def authenticated_user(self) -> str:
        if self.session is None or not self.session.authenticated:
            return ""
        account = self.session.auth_data
        return account.user if isinstance(account, Account) else ""

    def client(self) -> Client:
        address = self.client_address
        if self._trust is None or self._trust[0] != address:
            # Asked at MAIL and at each RCPT: look the address up once per connection.
            self._trust = (address, is_trusted(address, self.context.trusted_networks))
        return Client(
            address=address,
            port=self.port_kind,
            trusted=self._trust[1],
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

    def data_received(self, data: bytes) -> None:
        # The idle timeout counts silence, not command gaps: a long DATA transfer
        # that keeps sending bytes is not idle.
        if self._timeout_handle is not None:
            self._reset_timeout()
        super().data_received(data)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd's idle timer, moved on without a new timer each time.

        aiosmtpd cancels and re-creates its timer at every command, and this class
        at every chunk received: about a dozen times a message, 1.6 us each. Here a
        reset only moves the deadline; the timer, when it fires early, sets itself
        again for the time left.
        """
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or not self._idle_timer_set or deadline < handle.when():
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_timer_fired)
            self._idle_timer_set = True

    def _idle_timer_fired(self) -> None:
        if self.loop.time() < self._idle_deadline:  # the client spoke since it was set
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_timer_fired)
            return
        self._idle_timer_set = False
        self._timeout_cb()

    def _timeout_cb(self) -> None:
        """Idle for STAFFETTA_SMTP_IDLE_TIMEOUT: say so (as Postfix does), then hang up."""
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            log.info(
                "idle session closed",
                extra={"event": "idle_timeout", "client": self.client_address},
            )
            transport.write(f"{replies.IDLE_TIMEOUT}\r\n".encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]

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
        with contextlib.suppress(ConnectionError, RuntimeError):
            await super().push(str(reply))
        if self.transport is not None:
            self.transport.close()

    async def _read_proxy_header(self) -> bool:
        """PROXY v1/v2 from a trusted load balancer: the real client's address."""
        try:
            data = await asyncio.wait_for(get_proxy(self._reader), PROXY_HEADER_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return False
        # Read first, judge after: the refusal then reaches the client intact.
        if not data.valid or not is_trusted(self.client_address, self.context.proxy_networks or ()):
            return False
        if data.src_addr is not None:  # None for PROXY UNKNOWN / LOCAL: keep the peer
            self._client_ip = str(data.src_addr)
        return True

    async def _handle_client(self) -> None:
        context = self.context
        if context.proxy_networks is not None and not await self._read_proxy_header():
            await self._refuse(replies.PROXY_REFUSED, "bad_proxy_header")
            return
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
        if self.auth_offered():
            wanted.append("AUTH PLAIN LOGIN")
        lines = [responses[0]] + [f"250-{k}" for k in wanted[:-1]]
        return [*lines, f"250 {wanted[-1]}"]

    # -- AUTH -------------------------------------------------------------------

    def auth_available(self) -> bool:
        """AUTH exists on the submission ports, and on the MTA port with a users file."""
        return self.port_kind != "smtp" or self.context.users.configured

    def auth_offered(self) -> bool:
        """Advertised now: available, and over TLS unless plaintext AUTH is allowed."""
        return self.auth_available() and (self.tls_active or self.context.allow_plaintext_auth)

    async def smtp_AUTH(self, arg: str) -> None:
        if await self.check_helo_needed("EHLO"):
            return
        if not self.auth_available():
            await self.push(str(replies.AUTH_UNAVAILABLE))
        elif not self.auth_offered():
            await self.push(str(replies.AUTH_NEEDS_TLS))
        elif self.context.guard.locked(self.client_address):
            self.context.metrics.rejected("auth", replies.AUTH_LOCKED)
            await self.push(str(replies.AUTH_LOCKED))
        else:
            await super().smtp_AUTH(arg)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        blob = await self._auth_argument(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3 or not parts[1]:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._verify(parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        login = await self._auth_argument(args, "Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self._auth_argument([], "Password:")
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._verify(login, password)

    async def _auth_argument(self, args: list[str], challenge: str) -> bytes | None:
        """The initial response (``AUTH MECH <b64>``) or the answer to a 334 challenge."""
        if len(args) == 2 and args[1] != "=":
            try:
                return base64_decode(args[1])
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return None
        answer = await self.challenge_auth(challenge)
        return answer if isinstance(answer, bytes) else None

    async def _verify(self, login: bytes, password: bytes) -> AuthResult:
        address = self.client_address
        try:
            user = login.decode("utf-8")
        except UnicodeDecodeError:
            user = ""
        ok = bool(user) and await asyncio.to_thread(self.context.users.verify, user, password)
        if ok:
            self.context.guard.success(address)
            log.info("authenticated", extra={"event": "auth_ok", "client": address, "user": user})
            return AuthResult(success=True, auth_data=Account(user))
        delay = self.context.guard.failure(address)
        self.context.metrics.rejected("auth", replies.AUTH_FAILED)
        log.info("authentication failed", extra={"event": "auth_failed", "client": address})
        await asyncio.sleep(delay)  # slow guessing down; the lockout stops it
        return AuthResult(success=False, handled=False)

    async def sender_gate(self) -> Reply | None:
        """A refusal of MAIL that does not depend on the address (AUTH, broker, sending limits)."""
        user = self.authenticated_user
        if self.port_kind != "smtp" and not user:
            return replies.AUTH_REQUIRED
        if not self.context.broker.ready:
            return replies.BROKER_DOWN  # say so now, before the client sends the message
        context = self.context
        table = context.limits_table.current() if context.limits_table is not None else None
        self.counted = quota.applicable(table, context.sending_limits, user, self.client_address)
        self.max_recipients = quota.max_recipients(context.limits.max_recipients, self.counted)
        now = time.time()
        for item in self.counted:
            if item.limits.enabled:
                refusal = quota.check(item.limits, await context.usage.usage(item.key, now))
                if refusal is not None:
                    return refusal
        return None

    # -- addresses --------------------------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's parser, forgiving one trailing dot on the domain (``user@local.test.``).

        A CR or LF inside MAIL/RCPT (e.g. ``<b@local.test\\r>``) is refused: RFC 5322's
        folding white space has no place in an SMTP command.
        """
        if "\r" in arg or "\n" in arg:
            return None, None
        address, rest = aiosmtpd_speedups.parse_path(arg, self.local_part_limit)
        if address is None:
            retry = without_root_dot(arg)
            if retry is not None:
                address, rest = aiosmtpd_speedups.parse_path(retry, self.local_part_limit)
        return address, rest

    # -- transactions -----------------------------------------------------------

    def end_transaction(self, *, accepted: bool) -> None:
        if not self.in_transaction:
            return
        self.in_transaction = False
        self.context.metrics.messages.labels(result="accepted" if accepted else "rejected").inc()
        if self.context.stopping and not self.context.open_transactions:
            self.context.drained.set()

    async def smtp_HELO(self, hostname: str) -> None:
        self.end_transaction(accepted=False)
        await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        self.end_transaction(accepted=False)
        self.command_size_limits.pop("MAIL", None)  # EHLO adds the SIZE/SMTPUTF8 room again
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

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the message read in large chunks instead of line by line.

        aiosmtpd awaits one ``readuntil`` per line: about 650 awaits, 3.5 ms of CPU,
        for a 50 KB message. The replies are aiosmtpd's: 552 over the size limit,
        500 for a line (with its CRLF) over ``line_length_limit``, the handler's otherwise.
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await self._read_data()
        # Unstuffing leaves line ends alone: what is learnt here spares the handler a look.
        longest, in_crlf = message.line_shape(data) if data is not None else (0, False)
        if data is None:
            status = "552 Error: Too much mail data"
        elif longest > self.line_length_limit:
            status = "500 Line too long (see RFC5321 4.5.3.1.6)"
        else:
            envelope = self.envelope
            assert isinstance(envelope, IngressEnvelope)  # _create_envelope makes no other
            # A line that starts with "." reached us with one more (RFC 5321 4.5.2), so
            # the wire form has one exactly when the message does: one search answers
            # both whether to unstuff and whether delivery must stuff again.
            dotted = message.has_dot_lines(data)
            envelope.data = message.unstuff(data) if dotted else data
            envelope.data_in_crlf = in_crlf
            envelope.data_wire_ready = in_crlf and not dotted
            del data  # the envelope holds the message now: one copy, not two, while it is queued
            status = await self._call_handler_hook("DATA")  # IngressHandler always has it
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)
        # Refused before the hook: the transaction ends here (after the hook, a no-op).
        self.end_transaction(accepted=False)

    async def _read_data(self) -> bytearray | None:
        """The data up to the line holding one dot (the CRLF before it kept), or None
        when it went over the size limit (then read to its end and dropped)."""
        reader = self._reader
        limit = self.data_size_limit
        # The 354 reply's line has just ended: the data starts at the start of a line.
        buffer = bytearray(b"\r\n")
        searched = dropped = 0
        keep = len(message.DATA_END) - 1  # a partial end marker, when dropping the rest
        while (end := buffer.find(message.DATA_END, searched)) < 0:
            if limit and len(buffer) + dropped > limit + len(message.DATA_END) + 2:
                # Over the limit: read on to the end marker, holding only its width.
                dropped += len(buffer) - keep
                del buffer[:-keep]
            searched = max(len(buffer) - keep, 0)
            try:
                chunk = await reader.read(DATA_CHUNK)
            except asyncio.CancelledError:
                log.info("connection lost during DATA", extra={"event": "data_lost"})
                self._writer.close()
                raise
            if not chunk:  # EOF before the end of the data: nothing is accepted
                self._writer.close()
                raise asyncio.CancelledError
            buffer += chunk
        # Commands a pipelining client sent after the dot are the command loop's: put
        # them back in front of the reader's buffer (StreamReader has no public unread;
        # aiosmtpd itself reaches into ``_buffer`` for STARTTLS).
        rest = buffer[end + len(message.DATA_END) :]
        if rest:
            reader._buffer[:0] = rest  # type: ignore[attr-defined]
        size = dropped + end  # the bytes before the end marker's CRLF, less our leading CRLF
        if dropped or (limit and size > limit):
            return None
        # The message is the buffer itself, cut in place: bytes() of it would hold a
        # 25 MiB message twice. (Cutting the front moves a start offset, not the data.)
        del buffer[end + 2 :]
        del buffer[:2]
        return buffer


def base64_decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError("invalid base64") from exc
