"""Local delivery into Maildir: ``ROOT/domain/user/{tmp,new,cur}``.

A message is written to ``tmp/`` under a unique name, flushed to disk,
renamed into ``new/`` and the directory entry flushed too: a reader never sees
half a message and a crash never loses an acknowledged one. Line endings
become LF, as Maildir readers expect.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from services.common.addressing import is_safe_local_part, normalize_domain, split_address

_counter = itertools.count(1)


class UnsafeMailbox(ValueError):
    """The address cannot name a Maildir folder without escaping the root."""


def to_lf(body: bytes) -> bytes:
    return body.replace(b"\r\n", b"\n")


def safe_hostname(hostname: str) -> str:
    """The host part of a Maildir name: ``/`` and ``:`` escaped as the spec says."""
    return hostname.replace("/", "\\057").replace(":", "\\072") or "localhost"


def unique_name(hostname: str, *, now: float, pid: int, sequence: int, random_hex: str) -> str:
    """``<seconds>.M<micro>P<pid>Q<seq>R<random>.<host>`` (the modern Maildir form)."""
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return f"{seconds}.M{micros}P{pid}Q{sequence}R{random_hex}.{safe_hostname(hostname)}"


def mailbox_path(root: Path, address: str) -> Path:
    """``root/domain/user`` for ``user@domain``, both lower-cased; refuses unsafe parts."""
    local, domain = split_address(address)
    local = local.lower()
    domain = normalize_domain(domain)
    if not is_safe_local_part(local):
        raise UnsafeMailbox(f"local part {local!r} cannot be a Maildir folder")
    if not domain or not is_safe_local_part(domain) or domain.startswith("["):
        raise UnsafeMailbox(f"domain {domain!r} cannot be a Maildir folder")
    return root / domain / local


@dataclass(frozen=True)
class Maildir:
    root: Path
    hostname: str

    def deliver(self, address: str, body: bytes) -> Path:
        """Store ``body`` for ``address``; returns the file in ``new/``. Blocking I/O."""
        return self.store(address, to_lf(body))

    def store(self, address: str, lf_body: bytes) -> Path:
        """:meth:`deliver` for a body already passed through :func:`to_lf`, so a
        message to several local recipients is converted once, not once each."""
        mailbox = mailbox_path(self.root, address)
        name = unique_name(
            self.hostname,
            now=time.time(),
            pid=os.getpid(),
            sequence=next(_counter),
            random_hex=secrets.token_hex(4),
        )
        temporary = mailbox / "tmp" / name
        final = mailbox / "new" / name
        try:
            fd = _create(temporary)
        except FileNotFoundError:
            # The folders are made on demand, when a write finds them missing,
            # rather than checked with three mkdir calls for every message.
            _make_folders(mailbox)
            fd = _create(temporary)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(lf_body)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.rename(temporary, final)
            except FileNotFoundError:  # tmp/ was there but new/ was not
                _make_folders(mailbox)
                os.rename(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(mailbox / "new")
        return final


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _make_folders(mailbox: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (mailbox / sub).mkdir(parents=True, exist_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
