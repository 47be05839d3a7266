"""The SMTP client adapter: one session with one host, recorded in a Transcript.

aiosmtplib does the protocol; this module only sequences EHLO, STARTTLS,
AUTH, MAIL, one RCPT per recipient and DATA, with the configured timeouts,
and writes down what the server said. Decisions are :func:`transcript.judge`'s.
When the server offers PIPELINING (RFC 2920) the envelope goes in one write,
as Postfix's smtp client sends it: [RSET,] MAIL, every RCPT, DATA (the bytes are
:mod:`pipelining`'s).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from services.delivery.connections import Connection, ConnectionPool, PoolKey
from services.delivery.pipelining import data_pieces, envelope_commands, next_reply
from services.delivery.replies import SmtpReply
from services.delivery.transcript import Transcript

NO_SMTPUTF8 = "5.6.7"
QUIT_TIMEOUT = 5.0  # the outcome is known by then: never hold a job for a slow goodbye

TlsMode = Literal["opportunistic", "starttls", "implicit", "none"]


@dataclass(frozen=True)
class Target:
    host: str  # the name (MX exchange or smarthost), for TLS and for logs
    address: str  # the IP address to connect to
    port: int

    @property
    def remote_mta(self) -> str:
        return self.host if self.host == self.address else f"{self.host}[{self.address}]"


@dataclass(frozen=True)
class Timeouts:
    connect: float  # TCP connect
    command: float  # MAIL, RCPT, RSET, QUIT, AUTH
    data: float  # DATA and the reply to the end of the message
    greeting: float = 300.0  # the banner, EHLO/HELO
    starttls: float = 300.0  # STARTTLS and the handshake


@dataclass(frozen=True)
class ClientConfig:
    helo: str
    timeouts: Timeouts
    tls: TlsMode = "opportunistic"
    username: str = ""
    password: str = ""


class _TlsHandshakeFailed(Exception):
    pass


class _StaleSession(Exception):
    """A cached session failed its RSET: nothing of this message was accepted on it."""


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    # Opportunistic TLS, as MTAs do between themselves: encrypt, do not verify.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _verified_context() -> ssl.SSLContext:
    # Towards a smarthost the certificate is checked against the system CAs
    # (or SSL_CERT_FILE / SSL_CERT_DIR, read when the context is first built).
    return _verified_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _verified_context_for(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)


def _reply(exc: aiosmtplib.SMTPResponseException) -> SmtpReply:
    return SmtpReply(exc.code, exc.message)


async def _open_socket(target: Target, limit: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (target.address, target.port)), limit)
    except BaseException:
        sock.close()
        raise
    return sock


async def send(
    target: Target,
    sender: str,
    recipients: Sequence[str],
    body: bytes,
    config: ClientConfig,
    pool: ConnectionPool | None = None,
    wire_ready: bool = False,
) -> Transcript:
    """Deliver over a cached session to ``target`` if one is idle, else over a new one.

    With opportunistic TLS a failed handshake is retried once in plaintext.
    ``wire_ready``: ``body`` can follow DATA as it is (see ``DeliveryJob.wire_ready``).
    """
    envelope = _Envelope(sender, recipients, body, wire_ready)
    key: PoolKey = (target.host, target.address, target.port, config.tls, config.username)
    while pool is not None and (cached := pool.take(key)) is not None:
        transcript = Transcript(remote_mta=target.remote_mta, tls=cached.tls, reused=True)
        progress = _Progress("rset")
        try:
            await _guarded(
                transcript,
                progress,
                _transaction(cached.client, envelope, config, transcript, progress, reset=True),
            )
        except _StaleSession:
            # The remote closed it meanwhile. Only a failed RSET gets here, never
            # anything later: retrying after that could deliver the message twice.
            cached.client.close()
            continue  # try another, or connect anew
        await _finish(pool, key, cached, transcript, config)
        return transcript

    transcript = Transcript(remote_mta=target.remote_mta)
    try:
        connection = await _session(transcript, target, envelope, config, starttls=True)
    except _TlsHandshakeFailed as exc:
        transcript = Transcript(remote_mta=target.remote_mta, tls_fallback=True)
        if config.tls != "opportunistic":
            transcript.error, transcript.error_phase = f"TLS handshake failed: {exc}", "starttls"
            return transcript
        connection = await _session(transcript, target, envelope, config, starttls=False)
    if connection is not None:
        await _finish(pool, key, connection, transcript, config)
    return transcript


@dataclass(frozen=True)
class _Envelope:
    sender: str
    recipients: Sequence[str]
    body: bytes
    wire_ready: bool = False


@dataclass
class _Progress:
    phase: str = "greeting"


async def _guarded(transcript: Transcript, progress: _Progress, step: Awaitable[bool]) -> bool:
    """Run a protocol step, writing any failure into the transcript; True when it went on."""
    try:
        return await step
    except aiosmtplib.SMTPResponseException as exc:
        if progress.phase in ("rcpt", "data"):
            transcript.error, transcript.error_phase = str(_reply(exc)), progress.phase
        else:
            transcript.reply, transcript.reply_phase = _reply(exc), progress.phase
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        transcript.error, transcript.error_phase = _describe(exc, progress.phase), progress.phase
    return False


async def _session(
    transcript: Transcript,
    target: Target,
    envelope: _Envelope,
    config: ClientConfig,
    *,
    starttls: bool,
) -> Connection | None:
    """A new session carrying one transaction; returns it while it is still open."""
    try:
        sock = await _open_socket(target, config.timeouts.connect)
    except (OSError, TimeoutError) as exc:
        transcript.error, transcript.error_phase = _describe(exc, "connect"), "connect"
        return None
    implicit = config.tls == "implicit"
    client = aiosmtplib.SMTP(
        hostname=target.host,
        sock=sock,
        local_hostname=config.helo,
        timeout=config.timeouts.command,
        use_tls=implicit,
        start_tls=False,
        tls_context=_verified_context() if implicit else None,
    )
    progress = _Progress()
    try:
        opened = await _guarded(
            transcript, progress, _open(client, target, config, transcript, progress, starttls)
        )
        if opened:
            await _guarded(
                transcript, progress, _transaction(client, envelope, config, transcript, progress)
            )
    except BaseException:
        client.close()
        raise
    if not client.is_connected:
        client.close()
        return None
    return Connection(client, tls=transcript.tls)


async def _finish(
    pool: ConnectionPool | None,
    key: PoolKey,
    connection: Connection,
    transcript: Transcript,
    config: ClientConfig,
) -> None:
    """Cache a session in a clean state for the next message; QUIT any other."""
    if pool is not None and pool.enabled and transcript.reusable and connection.client.is_connected:
        pool.give(key, connection)
        return
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        if connection.client.is_connected:
            await connection.client.quit(timeout=min(config.timeouts.command, QUIT_TIMEOUT))
    connection.client.close()


async def _reset(client: aiosmtplib.SMTP, config: ClientConfig) -> None:
    try:
        await client.rset(timeout=config.timeouts.command)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        client.close()
        raise _StaleSession from exc


async def _open(
    client: aiosmtplib.SMTP,
    target: Target,
    config: ClientConfig,
    transcript: Transcript,
    progress: _Progress,
    starttls: bool,
) -> bool:
    """Greeting, EHLO, STARTTLS, AUTH: True when the session may carry mail."""
    try:
        await client.connect(timeout=config.timeouts.greeting)
    except ssl.SSLError as exc:
        transcript.error, transcript.error_phase = f"TLS handshake failed: {exc}", "greeting"
        return False
    transcript.tls = config.tls == "implicit"
    progress.phase = "ehlo"
    await _hello(client, config)
    if starttls and config.tls in ("opportunistic", "starttls"):
        progress.phase = "starttls"
        if not await _starttls(client, target, config, transcript):
            return False
    if config.username:
        progress.phase = "auth"
        await client.login(config.username, config.password)
    return True


async def _transaction(
    client: aiosmtplib.SMTP,
    envelope: _Envelope,
    config: ClientConfig,
    transcript: Transcript,
    progress: _Progress,
    *,
    reset: bool = False,
) -> bool:
    """[RSET on a cached session,] MAIL, one RCPT per recipient, DATA when any was accepted.

    A failed RSET raises :class:`_StaleSession`; every later failure goes to the transcript.
    """
    if reset and not client.is_connected:
        raise _StaleSession
    encoding = _encoding(client)
    addresses = (envelope.sender, *envelope.recipients)
    if encoding == "ascii" and not all(address.isascii() for address in addresses):
        # RFC 6531 3.4: an internationalised address needs SMTPUTF8 all the way.
        transcript.refused_here = NO_SMTPUTF8
        return True
    if client.supports_extension("pipelining"):
        return await _pipelined(client, envelope, config, transcript, progress, reset=reset)
    if reset:
        await _reset(client, config)
    progress.phase = "mail"
    options = _mail_options(client, envelope.sender, envelope.recipients, envelope.body)
    await client.mail(envelope.sender, options=options, encoding=encoding)
    progress.phase = "rcpt"
    for recipient in envelope.recipients:
        try:
            response = await client.rcpt(recipient, encoding=encoding)
            transcript.rcpt[recipient] = SmtpReply(response.code, response.message)
        except aiosmtplib.SMTPRecipientRefused as exc:
            transcript.rcpt[recipient] = _reply(exc)
            if exc.code == 421:
                return False
    if any(reply.is_positive for reply in transcript.rcpt.values()):
        progress.phase = "data"
        body = envelope.body if envelope.body.endswith(b"\r\n") else envelope.body + b"\r\n"
        try:
            response = await client.data(body, timeout=config.timeouts.data)
            transcript.data_reply = SmtpReply(response.code, response.message)
        except aiosmtplib.SMTPDataError as exc:
            transcript.data_reply = _reply(exc)
    return True


async def _pipelined(
    client: aiosmtplib.SMTP,
    envelope: _Envelope,
    config: ClientConfig,
    transcript: Transcript,
    progress: _Progress,
    *,
    reset: bool,
) -> bool:
    """RFC 2920: [RSET,] MAIL, every RCPT and DATA in one write, then the replies in order."""
    if not reset:
        progress.phase = "mail"
    protocol = client.protocol
    lock = protocol._command_lock if protocol is not None else None
    if protocol is None or lock is None:
        if reset:
            raise _StaleSession
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    async with lock:  # aiosmtplib's own: no other command may slip between ours
        try:
            commands = envelope_commands(
                envelope.sender,
                envelope.recipients,
                encoding=_encoding(client),
                options=_mail_options(client, envelope.sender, envelope.recipients, envelope.body),
                reset=reset,
            )
            if reset:
                await _pipelined_reset(protocol, commands, config)
            else:
                protocol.write(commands)
            return await _pipelined_replies(
                client, protocol, envelope, config, transcript, progress
            )
        except BaseException:
            # Replies still due would be read as answers to later commands.
            client.close()
            raise


async def _pipelined_reset(protocol: SMTPProtocol, commands: bytes, config: ClientConfig) -> None:
    """Send the batch that starts with RSET; :class:`_StaleSession` unless RSET gets 250."""
    try:
        protocol.write(commands)
        reply = await next_reply(protocol, config.timeouts.command)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise _StaleSession from exc  # no reply at all: the remote closed it meanwhile
    if reply.code != 250:
        raise _StaleSession


async def _pipelined_replies(
    client: aiosmtplib.SMTP,
    protocol: SMTPProtocol,
    envelope: _Envelope,
    config: ClientConfig,
    transcript: Transcript,
    progress: _Progress,
) -> bool:
    """Read the MAIL, RCPT and DATA replies, then send the body (or end an empty DATA).

    Every reply is read, even after a refused MAIL, so the session stays in step;
    a 421 ends it at once. Returns False when the session cannot go on.
    """
    command_timeout = config.timeouts.command
    progress.phase = "mail"
    mail = await next_reply(protocol, command_timeout)
    mail_ok = mail.code == 250
    if not mail_ok:
        transcript.reply, transcript.reply_phase = SmtpReply(mail.code, mail.message), "mail"
    if mail.code == 421:
        return _closed(client)
    progress.phase = "rcpt"
    for recipient in envelope.recipients:
        reply = await next_reply(protocol, command_timeout)
        if mail_ok:  # after a refused MAIL these are only "503 need MAIL first"
            transcript.rcpt[recipient] = SmtpReply(reply.code, reply.message)
        if reply.code == 421:
            return _closed(client)
    progress.phase = "data"
    data = await next_reply(protocol, config.timeouts.data)
    accepted = mail_ok and any(reply.is_positive for reply in transcript.rcpt.values())
    if data.code == 354:
        # RFC 2920 3.1: with no recipient accepted the server should have refused
        # DATA; if it did not, end the empty message with "." and ignore its reply.
        for piece in data_pieces(envelope.body, envelope.wire_ready) if accepted else [b".\r\n"]:
            protocol.write(piece)
        data = await next_reply(protocol, config.timeouts.data)
    if accepted:
        transcript.data_reply = SmtpReply(data.code, data.message)
    if data.code == 421:
        return _closed(client)
    return mail_ok


def _closed(client: aiosmtplib.SMTP) -> bool:
    """After a 421 the server closes the session; so do we (as aiosmtplib does)."""
    client.close()
    return False


async def _hello(client: aiosmtplib.SMTP, config: ClientConfig) -> None:
    try:
        await client.ehlo(hostname=config.helo, timeout=config.timeouts.greeting)
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code not in (500, 502):
            raise
        await client.helo(hostname=config.helo, timeout=config.timeouts.greeting)


async def _starttls(
    client: aiosmtplib.SMTP, target: Target, config: ClientConfig, transcript: Transcript
) -> bool:
    """STARTTLS when offered; False when the session cannot go on."""
    required = config.tls == "starttls"
    if not client.supports_extension("starttls"):
        if required:
            transcript.reply = SmtpReply(530, "5.7.10 STARTTLS required but not offered")
            transcript.reply_phase = "starttls"
            return False
        return True
    context = _unverified_context() if config.tls == "opportunistic" else _verified_context()
    try:
        await client.starttls(
            tls_context=context, server_hostname=target.host, timeout=config.timeouts.starttls
        )
    except aiosmtplib.SMTPResponseException as exc:
        if required or exc.code == 421:
            transcript.reply, transcript.reply_phase = _reply(exc), "starttls"
            return False
        return True  # a refused STARTTLS leaves the plaintext session usable
    except (ssl.SSLError, aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise _TlsHandshakeFailed(str(exc) or type(exc).__name__) from exc
    try:
        # With TLS 1.3 a refused handshake (e.g. a demanded client certificate)
        # only shows on the first read: the EHLO that follows.
        await _hello(client, config)
    except (ssl.SSLError, aiosmtplib.SMTPServerDisconnected) as exc:
        raise _TlsHandshakeFailed(str(exc) or type(exc).__name__) from exc
    transcript.tls = True
    return True


def _encoding(client: aiosmtplib.SMTP) -> str:
    return "utf-8" if client.supports_extension("smtputf8") else "ascii"


def _mail_options(
    client: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], body: bytes
) -> list[str]:
    options: list[str] = []
    if client.supports_extension("size"):
        options.append(f"SIZE={len(body)}")
    if client.supports_extension("8bitmime") and not body.isascii():
        options.append("BODY=8BITMIME")
    if client.supports_extension("smtputf8") and not all(
        text.isascii() for text in (sender, *recipients)
    ):
        options.append("SMTPUTF8")
    return options


def _describe(exc: BaseException, phase: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"timed out during {phase}"
    text = str(exc) or type(exc).__name__
    return f"{text} during {phase}"
