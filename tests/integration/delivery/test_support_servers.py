"""The loopback DNS and MX helpers behave as the delivery tests rely on."""

from __future__ import annotations

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.resolver
import pytest

from tests.support.dns_server import DnsServer
from tests.support.mx_server import MxServers


def _resolver(dns_server: DnsServer, timeout: float = 2.0) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns_server.host]
    resolver.port = dns_server.port
    resolver.lifetime = timeout
    return resolver


async def test_dns_server_answers_mx_a_aaaa_and_errors() -> None:
    server = DnsServer()
    server.add_mx("example.test", [(20, "mx2.example.test"), (10, "mx1.example.test")])
    server.add_a("mx1.example.test", "127.0.0.2")
    server.add_aaaa("mx1.example.test", "::1")
    server.add_null_mx("nomail.test")
    server.servfail("broken.test")
    server.drop("slow.test")
    async with server:
        resolver = _resolver(server)
        mx = await resolver.resolve("example.test", "MX")
        assert sorted((r.preference, r.exchange.to_text()) for r in mx) == [
            (10, "mx1.example.test."),
            (20, "mx2.example.test."),
        ]
        a = await resolver.resolve("mx1.example.test", "A")
        assert [r.address for r in a] == ["127.0.0.2"]
        aaaa = await resolver.resolve("mx1.example.test", "AAAA")
        assert [r.address for r in aaaa] == ["::1"]
        null = await resolver.resolve("nomail.test", "MX")
        assert [(r.preference, r.exchange.to_text()) for r in null] == [(0, ".")]
        with pytest.raises(dns.resolver.NoAnswer):
            await resolver.resolve("nomail.test", "A")
        with pytest.raises(dns.resolver.NXDOMAIN):
            await resolver.resolve("unknown.test", "MX")
        with pytest.raises(dns.resolver.NoNameservers):
            await resolver.resolve("broken.test", "MX")
        with pytest.raises(dns.exception.Timeout):
            await _resolver(server, timeout=0.5).resolve("slow.test", "MX")
        tcp = await resolver.resolve("example.test", "MX", tcp=True)
        assert len(tcp) == 2
        assert {q.transport for q in server.queries_for("example.test")} == {"udp", "tcp"}


def test_dns_server_sync_start_stop() -> None:
    server = DnsServer()
    server.add_a("host.test", "127.0.0.9")
    with server:
        assert server.address == f"127.0.0.1:{server.port}"
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = server.port
        assert [r.address for r in resolver.resolve("host.test", "A")] == ["127.0.0.9"]


async def _send(host: str, port: int, recipients: list[str]) -> tuple[dict[str, object], str]:
    message = b"Subject: hi\r\n\r\nbody\r\n"
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=5) as client:
        errors, reply = await client.sendmail("a@sender.test", recipients, message)
    return dict(errors), reply


async def test_mx_servers_share_a_port_and_record_messages() -> None:
    async with MxServers(count=2) as fleet:
        assert fleet.hosts == ["127.0.0.2", "127.0.0.3"]
        await _send("127.0.0.3", fleet.port, ["x@dest.test"])
        received = await fleet[1].messages_received(1, within=5)
        assert received[0].sender == "a@sender.test"
        assert received[0].recipients == ["x@dest.test"]
        assert received[0].data.endswith(b"body\r\n")
        assert received[0].peer[0] == "127.0.0.1"
        assert fleet[0].messages == []


async def test_mx_server_scripts_replies_per_transaction_and_recipient() -> None:
    async with MxServers(count=1) as fleet:
        mx = fleet[0]
        mx.fail_rcpt("451 4.7.1 later", times=1)
        mx.reply_rcpt("bad@dest.test", "550 5.1.1 <bad@dest.test>: no such user")
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await _send(mx.host, fleet.port, ["a@dest.test", "b@dest.test"])
        errors, _ = await _send(mx.host, fleet.port, ["a@dest.test", "bad@dest.test"])
        assert errors["bad@dest.test"] == (550, "5.1.1 <bad@dest.test>: no such user")
        assert (await mx.messages_received(1))[0].recipients == ["a@dest.test"]
        mx.fail_data("554 5.6.0 nope")
        with pytest.raises(aiosmtplib.SMTPDataError):
            await _send(mx.host, fleet.port, ["a@dest.test"])
        mx.fail_mail("452 4.3.1 full", times=None)
        for _ in range(2):
            with pytest.raises(aiosmtplib.SMTPSenderRefused):
                await _send(mx.host, fleet.port, ["a@dest.test"])


async def test_mx_server_greeting_421_and_refusal() -> None:
    async with MxServers(count=1) as fleet:
        mx = fleet[0]
        mx.greet_421()
        with pytest.raises(aiosmtplib.SMTPConnectResponseError):
            await _send(mx.host, fleet.port, ["a@dest.test"])
        assert mx.greetings_421 == 1
        mx.refuse()
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await _send(mx.host, fleet.port, ["a@dest.test"])
        mx.accept_connections()
        await _send(mx.host, fleet.port, ["a@dest.test"])
        assert len(mx.wait_for_messages(1, timeout=5)) == 1
        with pytest.raises(TimeoutError):
            mx.wait_for_messages(2, timeout=0.2)
