"""Remote MX servers for tests: aiosmtpd on 127.0.0.2, 127.0.0.3, ... sharing ONE port.

The delivery service uses ``STAFFETTA_REMOTE_SMTP_PORT`` for every MX host, so
all fake MX hosts listen on the same port, each on its own loopback address.
They run in a background thread with their own event loop, so they answer the
test's loop and service subprocesses alike.

    mx = MxServers(count=2)                  # 127.0.0.2 and 127.0.0.3
    with mx:                                 # or: async with mx:  or mx.start() / mx.stop()
        primary, backup = mx[0], mx[1]
        primary.fail_rcpt("451 4.7.1 try later", times=2)
        primary.reply_rcpt("nobody@example.test", "550 5.1.1 <nobody@example.test>: no such user")
        backup.refuse()                      # connection refused until accept_connections()
        ...
        received = primary.wait_for_messages(1, timeout=10)
        received = await primary.messages_received(1, within=10)   # from async tests

Scripted failures count *transactions*: ``times=N`` answers the next N
transactions (``times=None``: every one). A RCPT rule may name one recipient.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.background_loop import BackgroundLoop

_transactions = itertools.count(1)


@dataclass(frozen=True)
class ReceivedMessage:
    """One message accepted by a fake MX (data as received, dot-unstuffed)."""

    host: str
    sender: str  # "" for the null reverse-path <>
    recipients: list[str]
    data: bytes
    peer: tuple[str, int]
    helo: str
    tls: bool
    auth_user: str | None
    mail_options: list[str]
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class _Rule:
    phase: str  # "mail", "rcpt", "data"
    reply: str
    recipient: str | None
    remaining: int | None  # transactions left; None: forever
    used_in: set[int] = field(default_factory=set)

    def applies(self, txn: int, recipient: str | None = None) -> bool:
        if self.recipient is not None and (recipient or "").lower() != self.recipient.lower():
            return False
        return txn in self.used_in or self.remaining is None or self.remaining > 0

    def use(self, txn: int) -> str:
        if txn not in self.used_in:
            self.used_in.add(txn)
            if self.remaining is not None:
                self.remaining -= 1
        return self.reply


class _Greeting421(asyncio.Protocol):
    """Answers a 421 greeting and closes, as a busy server does."""

    def __init__(self, reply: str) -> None:
        self._reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._reply.encode() + b"\r\n")
        transport.close()


class MxServer:
    """One fake MX host; scripted through the methods below (thread-safe)."""

    def __init__(self, fleet: MxServers, host: str, hostname: str) -> None:
        self.fleet = fleet
        self.host = host
        self.hostname = hostname
        self.messages: list[ReceivedMessage] = []
        self.rejections: list[tuple[str, str, str]] = []  # (phase, argument, reply)
        self.connections = 0
        self.greetings_421 = 0
        self.data_delay = 0.0
        self.resets = 0  # RSET commands (a client reusing its session)
        self.max_recipients: int | None = None  # past it: 452 4.5.3 (per transaction)
        self.data_in_progress = 0
        self.max_parallel_data = 0  # most DATA phases at once: the client's concurrency
        self.data_started = threading.Event()
        self._rules: list[_Rule] = []
        self._greet_421: list[str] = []
        self._cond = threading.Condition()
        self._listening = True
        self._silent = False
        self._server: asyncio.Server | None = None
        self._placeholder: socket.socket | None = None

    # Scripting.

    def fail_mail(self, reply: str, times: int | None = 1) -> None:
        self._add(_Rule("mail", reply, None, times))

    def fail_rcpt(self, reply: str, times: int | None = 1, recipient: str | None = None) -> None:
        self._add(_Rule("rcpt", reply, recipient, times))

    def reply_rcpt(self, recipient: str, reply: str, times: int | None = None) -> None:
        """A fixed reply for one recipient (by default for every transaction)."""
        self._add(_Rule("rcpt", reply, recipient, times))

    def fail_data(self, reply: str, times: int | None = 1) -> None:
        self._add(_Rule("data", reply, None, times))

    def slow_data(self, seconds: float) -> None:
        """Wait ``seconds`` before answering the end of DATA (0: answer at once)."""
        self.data_delay = seconds

    def greet_421(self, times: int = 1, reply: str = "421 4.3.2 Service not available") -> None:
        with self._cond:
            self._greet_421.extend([reply] * times)

    def silent(self, enabled: bool = True) -> None:
        """Accept connections but never send a greeting (the client's timeout runs out)."""
        self._silent = enabled

    def clear_script(self) -> None:
        with self._cond:
            self._rules.clear()
            self._greet_421.clear()

    def _add(self, rule: _Rule) -> None:
        with self._cond:
            self._rules.append(rule)

    def refuse(self) -> None:
        """Stop listening: connections are refused (the port stays reserved)."""
        self._listening = False
        if self.fleet.running:
            self.fleet.call(self._apply_listening)

    def accept_connections(self) -> None:
        self._listening = True
        if self.fleet.running:
            self.fleet.call(self._apply_listening)

    # Waiting.

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until ``count`` messages arrived; raises TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(
                    f"{self.host}: {len(self.messages)} of {count} messages after {timeout}s"
                )
            return list(self.messages)

    async def messages_received(self, count: int, within: float = 10.0) -> list[ReceivedMessage]:
        return await asyncio.to_thread(self.wait_for_messages, count, within)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # aiosmtpd handler hooks (run in the server thread).

    def _scripted(self, phase: str, txn: int, argument: str, recipient: str | None = None) -> str:
        with self._cond:
            for rule in self._rules:
                if rule.phase == phase and rule.applies(txn, recipient):
                    reply = rule.use(txn)
                    self.rejections.append((phase, argument, reply))
                    self._cond.notify_all()
                    return reply
        return ""

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        txn = next(_transactions)
        envelope.staffetta_txn = txn  # type: ignore[attr-defined]
        if self.fleet.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        scripted = self._scripted("mail", txn, address)
        if scripted:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        txn = getattr(envelope, "staffetta_txn", 0)
        scripted = self._scripted("rcpt", txn, address, address)
        if scripted:
            return scripted
        if self.max_recipients is not None and len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        txn = getattr(envelope, "staffetta_txn", 0)
        self.data_started.set()
        with self._cond:
            self.data_in_progress += 1
            self.max_parallel_data = max(self.max_parallel_data, self.data_in_progress)
        try:
            if self.data_delay:
                await asyncio.sleep(self.data_delay)
        finally:
            with self._cond:
                self.data_in_progress -= 1
        scripted = self._scripted("data", txn, "")
        if scripted:
            return scripted
        transport = server.transport
        implicit_tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        data = envelope.original_content or b""
        auth = session.auth_data if session.authenticated else None
        message = ReceivedMessage(
            host=self.host,
            sender="" if envelope.mail_from in (None, "<>") else envelope.mail_from,
            recipients=list(envelope.rcpt_tos),
            data=data,
            peer=tuple(session.peer or ("", 0)),  # type: ignore[arg-type]
            helo=session.host_name or "",
            tls=session.ssl is not None or implicit_tls,
            auth_user=str(auth) if auth is not None else None,
            mail_options=list(envelope.mail_options),
        )
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()
        self.fleet._notify()
        return "250 2.0.0 Ok: queued"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._cond:
            self.resets += 1
        return "250 2.0.0 Ok"

    # Sockets.

    def _protocol(self) -> asyncio.BaseProtocol:
        with self._cond:
            self.connections += 1
            if self._silent:
                return asyncio.Protocol()
            if self._greet_421:
                self.greetings_421 += 1
                return _Greeting421(self._greet_421.pop(0))
        return self.fleet.make_smtp(self)

    async def _apply_listening(self) -> None:
        loop = asyncio.get_running_loop()
        if self._listening and self._server is None:
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None
            sock = _tcp_socket(self.host, self.fleet.port)
            self._server = await loop.create_server(
                self._protocol, sock=sock, ssl=self.fleet.implicit_tls_context
            )
        elif not self._listening and self._server is not None:
            self._server.close()
            self._server = None
            self._placeholder = _tcp_socket(self.host, self.fleet.port, listen=False)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None


def _tcp_socket(host: str, port: int, listen: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    if listen:
        sock.listen(64)
    sock.setblocking(False)
    return sock


def _free_port(hosts: list[str]) -> int:
    """A port free on every one of ``hosts`` (checked by binding each)."""
    for _ in range(50):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind((hosts[0], 0))
        port = int(probe.getsockname()[1])
        held = [probe]
        try:
            for host in hosts[1:]:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no port free on every MX address")


class MxServers(BackgroundLoop):
    """A fleet of fake MX hosts on consecutive loopback addresses, one shared port."""

    thread_name = "test-mx"
    description = "MX servers"

    def __init__(
        self,
        count: int = 2,
        *,
        first_address: int = 2,
        domain: str = "mx.test",
        tls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        require_auth: bool = False,
        auth_require_tls: bool | None = None,
        smtputf8: bool = True,
        idle_timeout: float = 300.0,
    ) -> None:
        """``tls_context`` offers STARTTLS; ``implicit_tls_context`` wraps every connection.

        ``users`` enables AUTH PLAIN/LOGIN with these passwords; ``require_auth``
        answers 530 to MAIL before AUTH. AUTH is offered only after STARTTLS
        when a ``tls_context`` is set, unless ``auth_require_tls=False``.
        """
        super().__init__()
        self.servers = [
            MxServer(self, f"127.0.0.{first_address + index}", f"mx{index + 1}.{domain}")
            for index in range(count)
        ]
        self.port = 0
        self.tls_context = tls_context
        self.implicit_tls_context = implicit_tls_context
        self.users = users
        self.require_auth = require_auth
        self.smtputf8 = smtputf8
        self.idle_timeout = idle_timeout  # the server closes a session idle this long
        self.auth_require_tls = (
            tls_context is not None if auth_require_tls is None else (auth_require_tls)
        )
        self._cond = threading.Condition()

    def __getitem__(self, index: int) -> MxServer:
        return self.servers[index]

    def __len__(self) -> int:
        return len(self.servers)

    @property
    def hosts(self) -> list[str]:
        return [server.host for server in self.servers]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._loop is not None

    @property
    def messages(self) -> list[ReceivedMessage]:
        return [message for server in self.servers for message in server.messages]

    @property
    def connections(self) -> int:
        return sum(server.connections for server in self.servers)

    def server_for(self, host: str) -> MxServer:
        return next(server for server in self.servers if server.host == host)

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until the whole fleet received ``count`` messages."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"{len(self.messages)} of {count} messages after {timeout}s")
            return self.messages

    async def messages_received(self, count: int, within: float = 10.0) -> list[ReceivedMessage]:
        return await asyncio.to_thread(self.wait_for_messages, count, within)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def make_smtp(self, server: MxServer) -> SMTP:
        assert self._loop is not None
        options: dict[str, Any] = {}
        if self.users is not None:
            options["authenticator"] = _authenticator(self.users)
        return SMTP(
            server,
            hostname=server.hostname,
            tls_context=self.tls_context,
            auth_require_tls=self.auth_require_tls,
            enable_SMTPUTF8=self.smtputf8,
            timeout=self.idle_timeout,
            loop=self._loop,
            **options,
        )

    def call(self, coroutine: Callable[[], Any]) -> None:
        """Run ``coroutine()`` in the servers' loop and wait for it."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine(), self._loop).result(10)

    # Life cycle (start/stop/with/async with): see BackgroundLoop.

    def _before_start(self) -> None:
        self.port = _free_port(self.hosts)

    async def _serve(self, stopped: asyncio.Event) -> None:
        try:
            for server in self.servers:
                await server._apply_listening()
            self._ready.set()
            await stopped.wait()
        finally:
            for server in self.servers:
                await server._close()
            # Sessions still open (a client that never said QUIT) end with the fleet.
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _authenticator(users: dict[str, str]) -> Callable[..., AuthResult]:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if users.get(login) == auth_data.password.decode():
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    return authenticate
