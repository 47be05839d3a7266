"""Queue control over HTTP: the ``staffetta queue`` commands as a token-protected API.

Mounted on the delivery service's HTTP port next to ``/healthz``, ``/readyz`` and
``/metrics`` (which stay open), only when ``STAFFETTA_ADMIN_TOKEN_FILE`` is set:

    GET    /admin/queue                      deferred and parked jobs (mailq)
    POST   /admin/queue/flush[?queue_id=ID]  deferred jobs back to delivery now (postqueue -f)
    DELETE /admin/queue/{queue_id}           drop a message's waiting jobs (postsuper -d)
    POST   /admin/parked/requeue[?queue_id=ID]  parked jobs back where they came from

Every request needs ``Authorization: Bearer <token>``; without it, or with another
token, the answer is 401 with ``WWW-Authenticate: Bearer``. The work itself is
:class:`~services.delivery.queue_admin.QueueAdmin`'s, one broker connection per
request, one request at a time per process (a listing holds the messages it shows).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request

from services.common.amqp import BROKER_ERRORS
from services.delivery.queue_admin import QueueAdmin

log = logging.getLogger(__name__)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an empty expected token never matches."""
    if given is None or not expected:
        return False
    return secrets.compare_digest(given.encode(), expected.encode())


def admin_router(token: str, open_admin: Callable[[], QueueAdmin]) -> APIRouter:
    """The ``/admin`` routes, answering only requests that carry ``token``."""
    lock = asyncio.Lock()

    def authorize(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
        if not token_matches(bearer_token(authorization), token):
            client = request.client.host if request.client else ""
            log.warning(
                "admin request refused",
                extra={"event": "admin_unauthorized", "client": client, "path": request.url.path},
            )
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @asynccontextmanager
    async def queues() -> AsyncIterator[QueueAdmin]:
        async with lock:
            try:
                async with open_admin() as admin:
                    yield admin
            except BROKER_ERRORS as exc:
                log.warning(
                    "admin request failed", extra={"event": "admin_failed", "error": str(exc)}
                )
                raise HTTPException(status_code=503, detail=f"broker unavailable: {exc}") from exc

    router = APIRouter(prefix="/admin", dependencies=[Depends(authorize)])

    @router.get("/queue")
    async def list_queue() -> dict[str, Any]:
        async with queues() as admin:
            entries = await admin.list()
        return {
            "jobs": [asdict(entry) for entry in entries],
            "count": len(entries),
            "recipients": sum(len(entry.recipients) for entry in entries),
        }

    @router.post("/queue/flush")
    async def flush(queue_id: str | None = None) -> dict[str, Any]:
        async with queues() as admin:
            count = await admin.flush(queue_id)
        _audit("admin_flush", queue_id, count)
        return {"flushed": count, "queue_id": queue_id}

    @router.delete("/queue/{queue_id}")
    async def delete(queue_id: str) -> dict[str, Any]:
        async with queues() as admin:
            count = await admin.delete(queue_id)
        _audit("admin_delete", queue_id, count)
        if not count:
            raise HTTPException(status_code=404, detail=f"no waiting job of {queue_id}")
        return {"deleted": count, "queue_id": queue_id}

    @router.post("/parked/requeue")
    async def requeue_parked(queue_id: str | None = None) -> dict[str, Any]:
        async with queues() as admin:
            count = await admin.requeue_parked(queue_id)
        _audit("admin_requeue_parked", queue_id, count)
        return {"requeued": count, "queue_id": queue_id}

    return router


def _audit(event: str, queue_id: str | None, count: int) -> None:
    log.info(event, extra={"event": event, "queue_id": queue_id or "", "jobs": count})
