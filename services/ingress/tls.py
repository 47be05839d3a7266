"""The server-side TLS context for STARTTLS and implicit TLS."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2 or newer, no client certificates asked for."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
