"""Users file parsing and verification; the AUTH failure guard; the TLS context."""

from __future__ import annotations

import ssl
from pathlib import Path

import bcrypt
import pytest
import trustme

from services.ingress.auth import AuthGuard, GuardSettings, UserDirectory, parse_users
from services.ingress.tls import server_context


def htpasswd(password: str) -> str:
    return "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()[4:]


def test_htpasswd_lines_verify(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"# comment\n\nalice:{htpasswd('wonderland')}\nbob:{htpasswd('b')}\n")
    users = UserDirectory(path)
    assert users.configured
    assert users.verify("alice", b"wonderland")
    assert not users.verify("alice", b"Wonderland")
    assert not users.verify("carol", b"wonderland")
    assert users.verify("bob", b"b")


@pytest.mark.parametrize("line", ["alice", "alice:plaintext", ":$2y$05$abc", "alice:{SHA}xyz"])
def test_bad_users_lines_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_users(line)


def test_a_broken_rewrite_keeps_the_old_accounts(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"alice:{htpasswd('x')}\n")
    users = UserDirectory(path)
    path.write_text("garbage without a hash, longer than before\n")
    assert users.verify("alice", b"x")


def test_no_users_file() -> None:
    users = UserDirectory(None)
    assert not users.configured
    assert not users.verify("alice", b"x")


def test_guard_slows_down_then_locks_out_then_forgives() -> None:
    clock = [1000.0]
    guard = AuthGuard(
        GuardSettings(max_failures=3, window=60, lockout=300, delay=1, max_delay=3),
        now=lambda: clock[0],
    )
    assert not guard.locked("a")
    assert guard.failure("a") == 1
    assert guard.failure("a") == 2
    assert not guard.locked("a")
    assert guard.failure("a") == 3  # capped by max_delay
    assert guard.locked("a") and not guard.locked("b")
    clock[0] += 301
    assert not guard.locked("a")
    assert guard.failure("a") == 1  # counting starts again


def test_guard_window_and_success() -> None:
    clock = [0.0]
    guard = AuthGuard(GuardSettings(max_failures=2, window=10, lockout=100), now=lambda: clock[0])
    guard.failure("a")
    clock[0] += 11
    guard.failure("a")  # the first failure is out of the window
    assert not guard.locked("a")
    guard.success("a")
    guard.failure("a")
    assert not guard.locked("a")


def test_server_context_is_tls12_or_newer(tmp_path: Path) -> None:
    cert = trustme.CA().issue_cert("mx.test")
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    context = server_context(cert_file, key_file)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE


def test_guard_forgets_stale_addresses() -> None:
    clock = [0.0]
    guard = AuthGuard(GuardSettings(max_failures=5, window=10, lockout=10), now=lambda: clock[0])
    for number in range(AuthGuard.SWEEP_ABOVE + 1):
        guard.failure(f"192.0.2.{number}")
    assert guard.tracked == AuthGuard.SWEEP_ABOVE + 1
    clock[0] += 11
    guard.failure("198.51.100.1")
    assert guard.tracked == 1
