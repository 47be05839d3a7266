"""Per-connection and per-command costs of aiosmtpd, paid once instead.

Under ``make bench --profile`` the ingress spent about 15 % of its time building
each connection's ``SMTP`` object: aiosmtpd's ``__init__`` finds its command
methods, AUTH mechanisms and handler hooks with ``inspect.getmembers``, ``dir``
and ``inspect.signature`` on every connection, although the answers depend only
on the classes. And its ``_getaddr`` declares a ``typing.Protocol`` class on
every MAIL and RCPT (another 3 %), then runs the ``email`` header parser.

:func:`install` gives ``aiosmtpd.smtp`` a cached ``dir`` of the hook names
only and a stand-in for the two ``inspect`` functions it uses, answering the
same as the originals for the same classes. :func:`parse_path` is the address
parser for MAIL and RCPT: a fast path for the everyday ``<local@domain>`` and
the ``email`` parser for all the rest, with the same results (tests compare the
two).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from types import SimpleNamespace
from typing import Any

import aiosmtpd.smtp

# The only prefixes aiosmtpd's ``__init__`` looks for in ``dir()``: its command
# methods, handler hooks and AUTH mechanisms. The protocol object has some two
# hundred attributes; filtering them on every connection was most of the cost.
HOOK_PREFIXES = ("smtp_", "handle_", "auth_")

_hooks_of_class: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}
# Per class, instance attribute names already seen not to be hooks: an instance's
# own names are the same on every connection, so a set difference skips them.
_plain_attributes: dict[type, set[str]] = {}


def _class_hooks(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    names = _hooks_of_class.get(cls)
    if names is None:
        listed = tuple(name for name in dir(cls) if name.startswith(HOOK_PREFIXES))
        names = _hooks_of_class[cls] = (listed, frozenset(listed))
    return names


def hook_dir(obj: object) -> list[str]:
    """The names of ``dir(obj)`` that start with one of :data:`HOOK_PREFIXES`.

    The class's, cached per class, then the instance's own. Not sorted as ``dir``
    sorts them, and without the other names: aiosmtpd only filters them by these
    prefixes (a test checks every ``dir`` call there does).
    """
    if isinstance(obj, type):
        return [name for name in dir(obj) if name.startswith(HOOK_PREFIXES)]
    cls = type(obj)
    listed, known = _class_hooks(cls)
    own = getattr(obj, "__dict__", None)
    if not own:
        return list(listed)
    plain = _plain_attributes.setdefault(cls, set())
    extra = []
    for name in own.keys() - plain:
        if not name.startswith(HOOK_PREFIXES):
            plain.add(name)
        elif name not in known:
            extra.append(name)
    return [*listed, *extra] if extra else list(listed)


def auth_members(obj: object) -> list[tuple[str, Any]]:
    """``inspect.getmembers(obj)`` reduced to the ``auth_*`` members, its only use there.

    The full version reads every attribute of the object, properties included, and
    the SMTP protocol object has many.
    """
    return [(name, getattr(obj, name)) for name in hook_dir(obj) if name.startswith("auth_")]


_signatures: dict[tuple[Callable[..., Any], type], inspect.Signature] = {}


def cached_signature(callable_: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature``, cached per underlying function (the same for every instance)."""
    # The callable's type is part of the key: a bound method's signature has no
    # ``self``, while its plain function (a class used as the handler) has one.
    key = (getattr(callable_, "__func__", callable_), type(callable_))
    signature = _signatures.get(key)
    if signature is None:
        signature = _signatures[key] = inspect.signature(callable_)
    return signature


_LEVEL_OF_METHOD = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_sanitized_log = aiosmtpd.smtp.sanitized_log


def sanitized_log(func: Callable[..., None], msg: str, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's ``sanitized_log``, skipped when the logger would drop the record.

    aiosmtpd masks AUTH secrets in each command line before it calls the logger,
    twice per command, whatever the level; its ``mail.log`` is at WARNING here.
    """
    logger = getattr(func, "__self__", None)
    level = _LEVEL_OF_METHOD.get(getattr(func, "__name__", ""))
    if isinstance(logger, logging.Logger) and level is not None:
        if logger.isEnabledFor(level):
            _sanitized_log(func, msg, *args, **kwargs)
        return
    _sanitized_log(func, msg, *args, **kwargs)


def install() -> None:
    """Point ``aiosmtpd.smtp``'s introspection at the cached versions (idempotent)."""
    module: Any = aiosmtpd.smtp
    module.dir = hook_dir
    module.inspect = SimpleNamespace(getmembers=auth_members, signature=cached_signature)
    module.sanitized_log = sanitized_log


# A dot-atom local part and a plain domain, the shape of nearly every real path.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"<(?P<address>{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?P<rest>[^()\r\n]*)"
)
_WSP = " \t"  # the parser drops the white space after the path (and comments: not here)


def parse_path(argument: str, local_part_limit: int = 0) -> tuple[str | None, str | None]:
    """(address, the rest of the argument) of MAIL/RCPT, as aiosmtpd's ``_getaddr``.

    ``(None, None)`` when it cannot be parsed or the local part is over the limit.
    """
    if not argument:
        return "", ""
    simple = _SIMPLE_PATH.fullmatch(argument.lstrip())
    if simple is not None:
        address, rest = simple["address"], simple["rest"].lstrip(_WSP)
    else:
        try:
            parse = get_angle_addr if argument.lstrip().startswith("<") else get_addr_spec
            token, rest = parse(argument)
        except HeaderParseError:
            return None, None
        address = token.addr_spec
    local_part = address.rpartition("@")[0]
    if local_part_limit and len(local_part) > local_part_limit:
        return None, None
    return address, rest
