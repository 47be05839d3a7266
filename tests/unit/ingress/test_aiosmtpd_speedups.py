"""The cached introspection and the address parser give aiosmtpd's own answers."""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import logging
from pathlib import Path
from typing import Any

import aiosmtpd.smtp
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from services.ingress import aiosmtpd_speedups
from services.ingress.smtp import IngressSMTP

PATHS = [
    "<a@b>",
    " <a@b> SIZE=10",
    "<a@b>  BODY=8BITMIME",
    "<a@b>\tx",
    "<a@b>x",
    "<a@b>>",
    "<a.b+c@x-y.example.org>",
    "<A@B.ORG> SMTPUTF8",
    "<a@b>(comment) SIZE=1",
    "<a..b@c>",
    "<.a@b>",
    "<a@b.>",
    '<"quoted local"@b>',
    "<@relay.example:a@b>",
    "a@b",
    "a@b SIZE=1",
    "<a@[192.0.2.1]>",
    "<>",
    "<ü@b>",
    "<a@b",
    "< a@b >",
    "<a@b>\r\n",
    "<a b@c>",
    "",
    "<" + "x" * 65 + "@b>",
]


def aiosmtpd_getaddr(argument: str, local_part_limit: int) -> tuple[str | None, str | None]:
    smtp = SMTP.__new__(SMTP)
    smtp.local_part_limit = local_part_limit
    result: tuple[str | None, str | None] = SMTP._getaddr(smtp, argument)
    return result


@pytest.mark.parametrize("argument", PATHS)
@pytest.mark.parametrize("limit", [0, 64])
def test_parse_path_answers_as_aiosmtpd(argument: str, limit: int) -> None:
    assert aiosmtpd_speedups.parse_path(argument, limit) == aiosmtpd_getaddr(argument, limit)


def test_the_fast_path_takes_the_everyday_shapes() -> None:
    assert aiosmtpd_speedups._SIMPLE_PATH.fullmatch("<a.b+c@x-y.example.org> SIZE=1")
    assert not aiosmtpd_speedups._SIMPLE_PATH.fullmatch("<a@b>(comment)")
    assert not aiosmtpd_speedups._SIMPLE_PATH.fullmatch('<"q"@b>')


class Hooks:
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        return "250 OK"

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        return responses

    async def auth_CUSTOM(self, server: SMTP, args: list[str]) -> AuthResult:
        return AuthResult(success=False)


class CustomSMTP(SMTP):
    async def smtp_XHELLO(self, arg: str) -> None:
        await self.push("250 hi")

    async def auth_OTHER__MECH(self, server: SMTP, args: list[str]) -> AuthResult:
        return AuthResult(success=False)


def introspected(smtp: SMTP) -> dict[str, Any]:
    return {
        "commands": sorted(smtp._smtp_methods),
        "auth": sorted((name, attr.is_builtin) for name, attr in smtp._auth_methods.items()),
        "hooks": sorted(smtp._handle_hooks),
        "ehlo": smtp._ehlo_hook_ver,
    }


async def test_cached_introspection_finds_what_aiosmtpd_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    handler = Hooks()
    with_speedups = introspected(CustomSMTP(handler, loop=loop))

    monkeypatch.setattr(aiosmtpd.smtp, "inspect", inspect)
    monkeypatch.setattr(aiosmtpd.smtp, "dir", builtins.dir)
    assert introspected(CustomSMTP(handler, loop=loop)) == with_speedups
    assert "XHELLO" in with_speedups["commands"]
    assert ("OTHER-MECH", True) in with_speedups["auth"]
    assert ("CUSTOM", False) in with_speedups["auth"]
    assert with_speedups["ehlo"] == "new"


def _hook_names(names: list[str]) -> list[str]:
    return sorted(name for name in names if name.startswith(aiosmtpd_speedups.HOOK_PREFIXES))


def test_hook_dir_gives_the_hook_names_of_dir_instance_attributes_included() -> None:
    class Thing:
        def smtp_NOOP(self) -> None: ...

        def method(self) -> None: ...

    thing = Thing()
    thing.smtp_LATE = "set on the instance"  # type: ignore[attr-defined]
    thing.other = "not a hook"  # type: ignore[attr-defined]
    assert sorted(aiosmtpd_speedups.hook_dir(thing)) == _hook_names(dir(thing))
    assert "smtp_LATE" in aiosmtpd_speedups.hook_dir(thing)
    assert sorted(aiosmtpd_speedups.hook_dir(Thing())) == _hook_names(dir(Thing()))
    assert aiosmtpd_speedups.hook_dir(IngressSMTP) == _hook_names(dir(IngressSMTP))


def _prefix_filters(node: ast.comprehension) -> set[str]:
    return {
        test.args[0].value
        for test in node.ifs
        if isinstance(test, ast.Call)
        and isinstance(test.func, ast.Attribute)
        and test.func.attr == "startswith"
        and isinstance(test.args[0], ast.Constant)
    }


def test_aiosmtpd_filters_every_dir_by_a_hook_prefix() -> None:
    """hook_dir leaves out every other name: safe only while aiosmtpd filters so."""
    tree = ast.parse(Path(aiosmtpd.smtp.__file__).read_text())
    dir_calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dir"
    ]
    filtered = [
        comprehension
        for comprehension in ast.walk(tree)
        if isinstance(comprehension, ast.comprehension)
        and isinstance(comprehension.iter, ast.Call)
        and isinstance(comprehension.iter.func, ast.Name)
        and comprehension.iter.func.id == "dir"
        and _prefix_filters(comprehension) <= set(aiosmtpd_speedups.HOOK_PREFIXES)
        and _prefix_filters(comprehension)
    ]
    assert dir_calls, "aiosmtpd no longer calls dir(): the speedup can go"
    assert len(filtered) == len(dir_calls)


def test_aiosmtpd_uses_only_the_inspect_functions_of_the_stand_in() -> None:
    """install replaces aiosmtpd.smtp's ``inspect`` with a namespace of two functions."""
    tree = ast.parse(Path(aiosmtpd.smtp.__file__).read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "inspect"
    }
    assert used, "aiosmtpd no longer uses inspect: the stand-in can go"
    assert used <= {"getmembers", "signature"}


def test_cached_signature_is_the_bound_signature() -> None:
    first, second = Hooks(), Hooks()
    assert aiosmtpd_speedups.cached_signature(first.handle_EHLO) == inspect.signature(
        first.handle_EHLO
    )
    assert len(aiosmtpd_speedups.cached_signature(second.handle_EHLO).parameters) == 5


def test_cached_signature_tells_a_bound_method_from_its_function() -> None:
    assert len(aiosmtpd_speedups.cached_signature(Hooks().handle_RCPT).parameters) == 5
    assert aiosmtpd_speedups.cached_signature(Hooks.handle_RCPT) == inspect.signature(
        Hooks.handle_RCPT
    )


def test_sanitized_log_skips_only_what_the_logger_drops(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger("mail.log")
    line = b"AUTH PLAIN c2VjcmV0\r\n"
    aiosmtpds = aiosmtpd_speedups._sanitized_log
    masked: list[str] = []  # the messages aiosmtpd's masking was run for

    def masking(func: Any, msg: str, *args: Any, **kwargs: Any) -> None:
        masked.append(msg)
        aiosmtpds(func, msg, *args, **kwargs)

    monkeypatch.setattr(aiosmtpd_speedups, "_sanitized_log", masking)
    with caplog.at_level(logging.WARNING, logger="mail.log"):
        aiosmtpd_speedups.sanitized_log(logger.info, "%r >> %r", "peer", line)
    assert caplog.records == []
    assert masked == []  # skipped, not only dropped by the logger
    with caplog.at_level(logging.DEBUG, logger="mail.log"):
        aiosmtpd_speedups.sanitized_log(logger.debug, "readline: %r", line)
        aiosmtpds(logger.debug, "readline: %r", line)
    assert masked == ["readline: %r"]
    ours, theirs = (record.getMessage() for record in caplog.records)
    assert ours == theirs
    assert "c2VjcmV0" not in ours and "********" in ours


def test_install_points_aiosmtpd_at_the_speedups() -> None:
    aiosmtpd_speedups.install()
    assert aiosmtpd.smtp.sanitized_log is aiosmtpd_speedups.sanitized_log  # type: ignore[attr-defined]
    assert aiosmtpd.smtp.dir is aiosmtpd_speedups.hook_dir  # type: ignore[attr-defined]
