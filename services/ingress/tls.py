"""The server-side TLS context for STARTTLS and implicit TLS, reloaded when its files change."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from services.common.reloading import CHECK_INTERVAL, Stamp, file_stamp

log = logging.getLogger(__name__)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2 or newer, no client certificates asked for."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class ReloadingCertificate:
    """One :class:`ssl.SSLContext` for the process whose certificate follows the files.

    The listeners and sessions keep the same context object; :meth:`refresh` (called
    as each connection is accepted, before its handshake) loads a renewed
    certificate into it, at most once a second. A pair that does not load (half
    written, key and certificate from different renewals) keeps the old one.
    """

    def __init__(
        self, cert_file: Path, key_file: Path, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._files = (cert_file, key_file)
        self._now = now
        self._stamp: Stamp = file_stamp(self._files)
        self.context = server_context(cert_file, key_file)
        self._checked = now()

    def refresh(self) -> None:
        now = self._now()
        if now - self._checked < CHECK_INTERVAL:
            return
        self._checked = now
        stamp = file_stamp(self._files)
        if stamp == self._stamp:
            return
        self._stamp = stamp  # a bad pair is tried again only once the files change again
        cert_file, key_file = self._files
        try:
            server_context(cert_file, key_file)  # try the pair on a scratch context first
            self.context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            log.warning(
                "TLS certificate not reloaded",
                extra={"event": "tls_reload_failed", "error": str(exc)},
            )
            return
        log.info("TLS certificate reloaded", extra={"event": "tls_reloaded"})
