"""Local Maildir delivery, TLS towards MX hosts, smarthost AUTH, and a draining stop."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.integration.delivery.conftest import BODY, Delivery, StartDelivery, wait_for
from tests.support.dns_server import DnsServer
from tests.support.mx_server import MxServers

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context


@pytest.fixture
def trusted_ca(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the test CA the one the smarthost's certificate is checked against."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    yield


async def test_local_delivery_is_byte_identical_modulo_line_ends(
    start_delivery: StartDelivery, tmp_path: Path
) -> None:
    delivery = await start_delivery()
    job = delivery.job(["John.Doe@Local.TEST", "bad/name@local.test"], domain="", route="local")
    await delivery.submit(job)
    bounce, _ = await delivery.next_bounce()
    assert [(r.recipient, r.status) for r in bounce.results] == [("bad/name@local.test", "5.1.3")]
    new = tmp_path / "mail" / "local.test" / "john.doe" / "new"
    [stored] = list(new.iterdir())
    assert stored.read_bytes() == BODY.replace(b"\r\n", b"\n")
    assert list((new.parent / "tmp").iterdir()) == []
    assert not (tmp_path / "mail" / "local.test" / "bad").exists()
    assert (
        delivery.metric("staffetta_delivery_attempts_total", route="local", result="delivered") == 1
    )


async def test_maildir_trouble_defers_and_retries(
    start_delivery: StartDelivery, tmp_path: Path
) -> None:
    root = tmp_path / "unwritable"
    root.write_text("a file where the Maildir root should be\n")
    delivery = await start_delivery(MAILDIR_ROOT=str(root))
    await delivery.submit(delivery.job(["user@local.test"], domain="", route="local"))
    await delivery.wait_metric("staffetta_delivery_retries_total", 1, 10, "a deferral", attempt="1")
    root.unlink()
    new = root / "local.test" / "user" / "new"
    await wait_for(lambda: new.is_dir() and any(new.iterdir()), 10, "the retried delivery")
    assert delivery.bounces.empty()


async def test_opportunistic_starttls_to_the_mx(
    start_delivery: StartDelivery, ca: trustme.CA
) -> None:
    with MxServers(count=1, tls_context=_server_context(ca, "mx1.example.test")) as fleet:
        delivery = await start_delivery(REMOTE_SMTP_PORT=str(fleet.port))
        await delivery.submit(delivery.job(["a@example.test"]))
        [received] = await fleet[0].messages_received(1)
        assert received.tls
        assert received.data == BODY
        await delivery.wait_metric(
            "staffetta_delivery_tls_sessions_total", 1, 5, "the TLS session counted", mode="tls"
        )


async def test_failed_tls_handshake_falls_back_to_plaintext(
    start_delivery: StartDelivery, ca: trustme.CA
) -> None:
    context = _server_context(ca, "mx1.example.test")
    context.maximum_version = ssl.TLSVersion.TLSv1_1  # our client insists on TLS 1.2 or later
    with MxServers(count=1, tls_context=context) as fleet:
        delivery = await start_delivery(REMOTE_SMTP_PORT=str(fleet.port))
        await delivery.submit(delivery.job(["a@example.test"]))
        [received] = await fleet[0].messages_received(1)
        assert not received.tls
        assert fleet[0].connections == 2
        await delivery.wait_metric(
            "staffetta_delivery_tls_sessions_total", 1, 5, "the fallback counted", mode="fallback"
        )


def _password(tmp_path: Path, text: str) -> str:
    path = tmp_path / "smarthost-password"
    path.write_text(text + "\n")
    return str(path)


async def test_smarthost_with_auth_in_clear(
    start_delivery: StartDelivery, tmp_path: Path, dns_server: object
) -> None:
    with MxServers(count=1, first_address=4, users={"relay": "s3cret"}, require_auth=True) as sh:
        delivery = await start_delivery(
            SMARTHOST=f"127.0.0.4:{sh.port}",
            SMARTHOST_USERNAME="relay",
            SMARTHOST_PASSWORD_FILE=_password(tmp_path, "s3cret"),
            SMARTHOST_TLS="none",
        )
        await delivery.submit(delivery.job(["a@anywhere.test"], domain="anywhere.test"))
        [received] = await sh[0].messages_received(1)
        assert received.auth_user == "relay"
        assert received.recipients == ["a@anywhere.test"]
        assert not received.tls


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_smarthost_by_name_with_tls_and_a_verified_certificate(
    start_delivery: StartDelivery,
    tmp_path: Path,
    ca: trustme.CA,
    trusted_ca: None,
    dns_server: DnsServer,
    mode: str,
) -> None:
    dns_server.add_a("relay.isp.test", "127.0.0.4")
    context = _server_context(ca, "relay.isp.test")
    tls = {"implicit_tls_context": context} if mode == "implicit" else {"tls_context": context}
    with MxServers(
        count=1, first_address=4, users={"relay": "s3cret"}, require_auth=True, **tls
    ) as sh:
        delivery = await start_delivery(
            SMARTHOST=f"relay.isp.test:{sh.port}",
            SMARTHOST_USERNAME="relay",
            SMARTHOST_PASSWORD_FILE=_password(tmp_path, "s3cret"),
            SMARTHOST_TLS=mode,
        )
        await delivery.submit(delivery.job(["a@anywhere.test"], domain="anywhere.test"))
        [received] = await sh[0].messages_received(1)
        assert received.tls
        assert received.auth_user == "relay"


async def _submit_and_expect_a_deferral(delivery: Delivery, smarthost: MxServers) -> None:
    """One job for the smarthost: deferred once, nothing delivered, nothing bounced."""
    await delivery.submit(delivery.job(["a@anywhere.test"], domain="anywhere.test"))
    await delivery.wait_metric("staffetta_delivery_retries_total", 1, 10, "a deferral", attempt="1")
    assert smarthost[0].messages == []
    assert delivery.bounces.empty()


async def test_smarthost_certificate_for_another_name_defers(
    start_delivery: StartDelivery, tmp_path: Path, ca: trustme.CA, trusted_ca: None
) -> None:
    context = _server_context(ca, "someone-else.test")
    with MxServers(count=1, first_address=4, tls_context=context) as sh:
        delivery = await start_delivery(SMARTHOST=f"127.0.0.4:{sh.port}", SMARTHOST_TLS="starttls")
        await _submit_and_expect_a_deferral(delivery, sh)


async def test_smarthost_without_starttls_defers_when_tls_is_required(
    start_delivery: StartDelivery,
) -> None:
    with MxServers(count=1, first_address=4) as sh:
        delivery = await start_delivery(SMARTHOST=f"127.0.0.4:{sh.port}", SMARTHOST_TLS="starttls")
        await _submit_and_expect_a_deferral(delivery, sh)


async def test_smarthost_refusing_our_password_defers(
    start_delivery: StartDelivery, tmp_path: Path
) -> None:
    with MxServers(count=1, first_address=4, users={"relay": "s3cret"}, require_auth=True) as sh:
        delivery = await start_delivery(
            SMARTHOST=f"127.0.0.4:{sh.port}",
            SMARTHOST_USERNAME="relay",
            SMARTHOST_PASSWORD_FILE=_password(tmp_path, "wrong"),
            SMARTHOST_TLS="none",
        )
        await _submit_and_expect_a_deferral(delivery, sh)


async def test_stop_lets_the_in_flight_delivery_finish(
    start_delivery: StartDelivery, mx: object
) -> None:
    assert isinstance(mx, MxServers)
    mx[0].slow_data(1.0)
    delivery = await start_delivery()
    await delivery.submit(delivery.job(["a@example.test"]))
    await asyncio.to_thread(mx[0].data_started.wait, 10)
    await delivery.service.stop()
    assert len(mx[0].messages) == 1
    assert (
        delivery.metric("staffetta_delivery_attempts_total", route="relay", result="delivered") == 1
    )
