"""A tiny raw SMTP client for tests that need exact bytes on the wire."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl


class RawSMTP:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        host: str = "127.0.0.1",
        source: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> RawSMTP:
        reader, writer = await asyncio.open_connection(
            host,
            port,
            local_addr=(source, 0) if source else None,
            ssl=tls,
            server_hostname="mx.staffetta.test" if tls else None,
        )
        return cls(reader, writer)

    @classmethod
    async def greeted(
        cls,
        port: int,
        *,
        ehlo: str = "client.test",
        host: str = "127.0.0.1",
        source: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> RawSMTP:
        """Connected, greeting read and ``EHLO`` sent (neither reply checked): ready for MAIL."""
        client = await cls.connect(port, host=host, source=source, tls=tls)
        await client.reply()
        await client.command(f"EHLO {ehlo}")
        return client

    async def reply(self, within: float = 10.0) -> str:
        """One complete (possibly multi-line) reply, lines joined by newlines."""
        lines: list[str] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), within)
            if not line:
                raise ConnectionError("connection closed; got " + repr(lines))
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def command(self, line: str | bytes) -> str:
        raw = line.encode() if isinstance(line, str) else line
        await self.send(raw + b"\r\n")
        return await self.reply()

    async def closed(self, within: float = 10.0) -> bool:
        """True once the server has closed the connection (EOF)."""
        data = await asyncio.wait_for(self.reader.read(), within)
        return data == b"" or self.reader.at_eof()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def transaction(
    client: RawSMTP, sender: str, recipients: list[str], message: bytes
) -> list[str]:
    """MAIL, RCPT..., DATA and the message (already CRLF, without the final dot)."""
    answers = [await client.command(f"MAIL FROM:<{sender}>")]
    answers += [await client.command(f"RCPT TO:<{rcpt}>") for rcpt in recipients]
    answers.append(await client.command("DATA"))
    if answers[-1].startswith("354"):
        await client.send(message + b".\r\n")
        answers.append(await client.reply())
    return answers


async def open_data(client: RawSMTP, sender: str = "a@s.test", rcpt: str = "b@local.test") -> None:
    """MAIL and RCPT (replies unchecked), then DATA, which must answer 354."""
    await client.command(f"MAIL FROM:<{sender}>")
    await client.command(f"RCPT TO:<{rcpt}>")
    assert (await client.command("DATA")).startswith("354")


async def starttls(client: RawSMTP, context: ssl.SSLContext) -> str:
    """STARTTLS and the TLS handshake; returns the 220 reply."""
    reply = await client.command("STARTTLS")
    if reply.startswith("220"):
        await client.writer.start_tls(context, server_hostname="mx.staffetta.test")
    return reply


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
