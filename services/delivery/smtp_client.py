"""The SMTP client adapter: one session with one host, recorded in a Transcript.

aiosmtplib does the protocol; this module only sequences EHLO, STARTTLS,
AUTH, MAIL, one RCPT per recipient and DATA, with the configured timeouts,
and writes down what the server said. Decisions are :func:`transcript.judge`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from services.delivery.replies import SmtpReply
from services.delivery.transcript import Transcript

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
    connect: float
    command: float
    data: float
    greeting: float | None = None  # default: command

    @property
    def banner(self) -> float:
        return self.greeting if self.greeting is not None else self.command


@dataclass(frozen=True)
class ClientConfig:
    helo: str
    timeouts: Timeouts
    tls: TlsMode = "opportunistic"
    username: str = ""
    password: str = ""


class _TlsHandshakeFailed(Exception):
    pass


def _unverified_context() -> ssl.SSLContext:
    # Opportunistic TLS, as MTAs do between themselves: encrypt, do not verify.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _verified_context() -> ssl.SSLContext:
    # Towards a smarthost the certificate is checked (system CAs, SSL_CERT_FILE).
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
) -> Transcript:
    """One SMTP session; with opportunistic TLS a failed handshake is retried in plaintext."""
    transcript = Transcript(remote_mta=target.remote_mta)
    try:
        await _session(transcript, target, sender, recipients, body, config, starttls=True)
    except _TlsHandshakeFailed as exc:
        transcript = Transcript(remote_mta=target.remote_mta, tls_fallback=True)
        if config.tls != "opportunistic":
            transcript.error, transcript.error_phase = f"TLS handshake failed: {exc}", "starttls"
            return transcript
        await _session(transcript, target, sender, recipients, body, config, starttls=False)
    return transcript


@dataclass(frozen=True)
class _Envelope:
    sender: str
    recipients: Sequence[str]
    body: bytes


async def _session(
    transcript: Transcript,
    target: Target,
    sender: str,
    recipients: Sequence[str],
    body: bytes,
    config: ClientConfig,
    *,
    starttls: bool,
) -> None:
    try:
        sock = await _open_socket(target, config.timeouts.connect)
    except (OSError, TimeoutError) as exc:
        transcript.error, transcript.error_phase = _describe(exc, "connect"), "connect"
        return
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
        if await _open(client, target, config, transcript, progress, starttls=starttls):
            envelope = _Envelope(sender, recipients, body)
            await _transaction(client, envelope, config, transcript, progress)
    except aiosmtplib.SMTPResponseException as exc:
        if progress.phase in ("rcpt", "data"):
            transcript.error, transcript.error_phase = str(_reply(exc)), progress.phase
        else:
            transcript.reply, transcript.reply_phase = _reply(exc), progress.phase
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        transcript.error, transcript.error_phase = _describe(exc, progress.phase), progress.phase
    finally:
        client.close()


@dataclass
class _Progress:
    phase: str = "greeting"


async def _open(
    client: aiosmtplib.SMTP,
    target: Target,
    config: ClientConfig,
    transcript: Transcript,
    progress: _Progress,
    *,
    starttls: bool,
) -> bool:
    """Greeting, EHLO, STARTTLS, AUTH: True when the session may carry mail."""
    try:
        await client.connect(timeout=config.timeouts.banner)
    except ssl.SSLError as exc:
        transcript.error, transcript.error_phase = f"TLS handshake failed: {exc}", "greeting"
        return False
    transcript.tls = config.tls == "implicit"
    progress.phase = "ehlo"
    await _hello(client, config.helo)
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
) -> None:
    """MAIL, one RCPT per recipient, DATA when any recipient was accepted."""
    encoding = _encoding(client)
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
                return
    if any(reply.is_positive for reply in transcript.rcpt.values()):
        progress.phase = "data"
        body = envelope.body if envelope.body.endswith(b"\r\n") else envelope.body + b"\r\n"
        try:
            response = await client.data(body, timeout=config.timeouts.data)
            transcript.data_reply = SmtpReply(response.code, response.message)
        except aiosmtplib.SMTPDataError as exc:
            transcript.data_reply = _reply(exc)
    progress.phase = "quit"
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        await client.quit(timeout=config.timeouts.command)


async def _hello(client: aiosmtplib.SMTP, helo: str) -> None:
    try:
        await client.ehlo(hostname=helo)
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code not in (500, 502):
            raise
        await client.helo(hostname=helo)


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
        await client.starttls(tls_context=context, server_hostname=target.host)
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
        await _hello(client, config.helo)
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
