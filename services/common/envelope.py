"""What travels between the services.

Every AMQP message carries the raw RFC 5322 message as its body, untouched,
and one of the models below, JSON-encoded, in the ``staffetta`` header. The
body is never re-parsed on the way; each hop only reads the small envelope.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, Field

ENVELOPE_HEADER = "staffetta"

ModelT = TypeVar("ModelT", bound=BaseModel)

Route = Literal["local", "relay"]
Action = Literal["delivered", "failed", "delayed", "deferred"]
BounceKind = Literal["failure", "delay"]

_QUEUE_ID_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"
_QUEUE_ID_PAIRS = [high + low for high in _QUEUE_ID_ALPHABET for low in _QUEUE_ID_ALPHABET]
_TAIL_DIGITS = 8
_TAIL_SPACE = len(_QUEUE_ID_ALPHABET) ** _TAIL_DIGITS


def _queue_id_digits(number: int) -> str:
    """``number`` written with the queue id alphabet, most significant digit first; 0 is ""."""
    pairs = []  # two digits per division: half the divisions of one digit at a time
    while number:
        number, pair = divmod(number, len(_QUEUE_ID_PAIRS))
        pairs.append(_QUEUE_ID_PAIRS[pair])
    return "".join(reversed(pairs)).lstrip("0")


def new_queue_id() -> str:
    """A short, unique, case-insensitive id in the spirit of Postfix's long queue ids.

    The milliseconds since the epoch, then 8 random digits: drawn as one number below
    ``30**8`` (one read of the system's random source, not one per digit).
    """
    tail = _queue_id_digits(secrets.randbelow(_TAIL_SPACE)).rjust(_TAIL_DIGITS, "0")
    return _queue_id_digits(int(time.time() * 1000)) + tail


class AcceptedMessage(BaseModel):
    """Ingress -> router: a message the ingress has answered 250 for."""

    queue_id: str
    sender: str  # "" is the null reverse-path <>
    recipients: list[str]
    accepted_at: float  # Unix time of acceptance; the queue lifetime counts from here
    client_address: str = ""
    helo: str = ""
    authenticated_user: str = ""
    received_headers: int = 0  # Received: headers counted at ingress, for loop detection
    wire_ready: bool = False  # see DeliveryJob.wire_ready


class DeliveryJob(BaseModel):
    """Router -> delivery (and delivery -> retry queues -> delivery)."""

    queue_id: str
    sender: str
    recipients: list[str]
    route: Route
    domain: str  # destination domain (relay) or "" (local)
    accepted_at: float
    attempts: int = 0
    first_attempt_at: float | None = None
    last_error: str = ""
    delay_warned: bool = False
    received_headers: int = 0
    # The body can follow DATA as it is: CRLF line ends throughout and no line starting
    # with ".", as the ingress found while reading it. Delivery then skips the line-end
    # check and the dot-stuffing pass (about 80 us of CPU for 50 KB). False (the
    # default, and any job made elsewhere, e.g. a DSN) means: check and stuff.
    wire_ready: bool = False


class RecipientResult(BaseModel):
    """The outcome of one attempt for one recipient."""

    recipient: str
    action: Action
    status: str  # RFC 3463 enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's reply, when one answered
    remote_mta: str = ""


class BounceJob(BaseModel):
    """Delivery -> bounce: recipients of one message that failed or are delayed."""

    queue_id: str
    sender: str
    accepted_at: float
    kind: BounceKind
    results: list[RecipientResult] = Field(default_factory=list)


def encode(envelope: BaseModel) -> str:
    return envelope.model_dump_json()


def decode(model: type[ModelT], headers: Mapping[str, object]) -> ModelT:
    raw = headers.get(ENVELOPE_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode()
    if not isinstance(raw, str):
        raise ValueError(f"message has no {ENVELOPE_HEADER!r} header")
    return model.model_validate_json(raw)
