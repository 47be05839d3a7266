"""A real authoritative DNS server on loopback, serving a zone given as Python data.

Tests point ``STAFFETTA_DNS_NAMESERVERS`` at :attr:`DnsServer.address` so that
no look-up ever leaves the machine. The server answers over UDP and TCP on the
same free port of 127.0.0.1, from a background thread with its own event loop,
so it serves the test's loop and service subprocesses alike.

    dns = DnsServer()
    dns.add_mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")])
    dns.add_a("mx1.example.test", "127.0.0.2")
    dns.add_null_mx("nomail.test")
    dns.servfail("broken.test")
    dns.drop("slow.test")              # never answers: the resolver times out
    with dns:                          # or: async with dns:  or dns.start() / dns.stop()
        env["STAFFETTA_DNS_NAMESERVERS"] = dns.address

Unknown names get NXDOMAIN; a known name without records of the asked type
gets an empty NOERROR answer (NODATA). Zone changes apply to the next query.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.support.background_loop import BackgroundLoop

TTL = 60


def _key(name: str) -> str:
    return name.strip().rstrip(".").lower()


@dataclass
class Zone:
    """Records by owner name (lower-case, no trailing dot)."""

    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)

    def exists(self, name: str) -> bool:
        return name in self.mx or name in self.a or name in self.aaaa


@dataclass(frozen=True)
class Query:
    name: str
    rdtype: str
    transport: str  # "udp" or "tcp"


class DnsServer(BackgroundLoop):
    """An authoritative loopback DNS server for MX, A and AAAA records."""

    thread_name = "test-dns"
    description = "DNS server"

    def __init__(self, zone: Zone | None = None, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.zone = zone or Zone()
        self.host = host
        self.port = 0
        self.queries: list[Query] = []
        self._lock = threading.Lock()

    # Zone editing (thread-safe; applies to the next query).

    def add_mx(self, name: str, exchanges: Iterable[tuple[int, str]]) -> None:
        with self._lock:
            self.zone.mx.setdefault(_key(name), []).extend(
                (pref, _key(host) or ".") for pref, host in exchanges
            )

    def add_null_mx(self, name: str) -> None:
        """RFC 7505: ``MX 0 .`` -- the domain accepts no mail."""
        with self._lock:
            self.zone.mx[_key(name)] = [(0, ".")]

    def add_a(self, name: str, *addresses: str) -> None:
        with self._lock:
            self.zone.a.setdefault(_key(name), []).extend(addresses)

    def add_aaaa(self, name: str, *addresses: str) -> None:
        with self._lock:
            self.zone.aaaa.setdefault(_key(name), []).extend(addresses)

    def servfail(self, name: str, enabled: bool = True) -> None:
        with self._lock:
            (self.zone.servfail.add if enabled else self.zone.servfail.discard)(_key(name))

    def drop(self, name: str, enabled: bool = True) -> None:
        """Never answer queries for ``name`` (the client times out)."""
        with self._lock:
            (self.zone.dropped.add if enabled else self.zone.dropped.discard)(_key(name))

    def remove(self, name: str) -> None:
        with self._lock:
            for table in (self.zone.mx, self.zone.a, self.zone.aaaa):
                table.pop(_key(name), None)

    def queries_for(self, name: str) -> list[Query]:
        with self._lock:
            return [query for query in self.queries if query.name == _key(name)]

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the value for ``STAFFETTA_DNS_NAMESERVERS``."""
        if not self.port:
            raise RuntimeError("DNS server not started")
        return f"{self.host}:{self.port}"

    # Answering.

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        """The response to one query in wire format, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name = _key(question.name.to_text())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append(Query(name, rdtype, transport))
            if name in self.zone.dropped:
                return None
            if name in self.zone.servfail:
                response.flags &= ~dns.flags.AA
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            if not self.zone.exists(name):
                response.set_rcode(dns.rcode.NXDOMAIN)
                return response.to_wire()
            texts = self._records(name, rdtype)
        if texts:
            response.answer.append(
                dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, rdtype, texts)
            )
        return response.to_wire()

    def _records(self, name: str, rdtype: str) -> list[str]:
        if rdtype == "MX":
            return [
                f"{pref} {host}." if host != "." else f"{pref} ."
                for pref, host in self.zone.mx.get(name, [])
            ]
        if rdtype == "A":
            return list(self.zone.a.get(name, []))
        if rdtype == "AAAA":
            return list(self.zone.aaaa.get(name, []))
        return []

    # Life cycle (start/stop/with/async with): see BackgroundLoop.

    async def _serve(self, stopped: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = _bind_pair(self.host)
        self.port = udp_sock.getsockname()[1]
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock
        )
        server = await asyncio.start_server(self._handle_tcp, sock=tcp_sock)
        self._ready.set()
        try:
            await stopped.wait()
        finally:
            transport.close()
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(2)
                (length,) = struct.unpack("!H", header)
                wire = await reader.readexactly(length)
                reply = self.answer(wire, "tcp")
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self._server.answer(data, "udp")
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same free port of ``host``."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind((host, port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise RuntimeError("no free port for the DNS server")
