"""The journey of one message through the services, rebuilt from their JSON log lines.

Pure: lines in, entries and text out. Every service logs one JSON object per
line with ``time``, ``service``, ``event`` and ``queue_id``; ``kubectl logs
--prefix`` (or ``--timestamps``) puts text before the object, which is skipped.
A message's lines are those with its queue id, or with a delivery job id made
from it (``QUEUEID.relay.example.org``). The bounce service's ``dsn_queued``
line links the message to the DSN it caused (``dsn_queue_id``), so the DSN's
own journey (routed, delivered to the sender) is followed too, either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DELIVERY_EVENTS = ("delivered", "deferred", "failed")
# Lines of the same millisecond are shown in pipeline order, then in reading order.
STAGES = {"ingress": 0, "router": 1, "delivery": 2, "bounce": 3}


@dataclass(frozen=True)
class Entry:
    time: str
    service: str
    event: str
    queue_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    order: int = 0  # position in the input: keeps equal timestamps in reading order

    def get(self, key: str, default: str = "") -> str:
        value = self.fields.get(key)
        return default if value in (None, "") else str(value)


def parse_line(line: str, order: int = 0) -> Entry | None:
    """One log line as an entry; ``None`` for anything that is not a Staffetta JSON line."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        data = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(data, dict) or not {"time", "service", "event"} <= data.keys():
        return None
    return Entry(
        time=str(data["time"]),
        service=str(data["service"]),
        event=str(data["event"]),
        queue_id=str(data.get("queue_id") or ""),
        fields=data,
        order=order,
    )


def parse(lines: Iterable[str]) -> list[Entry]:
    entries = []
    for order, line in enumerate(lines):
        entry = parse_line(line, order)
        if entry is not None and entry.queue_id:
            entries.append(entry)
    return entries


def _belongs(entry: Entry, ids: set[str]) -> bool:
    return entry.queue_id in ids or entry.queue_id.split(".", 1)[0] in ids


def related_ids(entries: list[Entry], queue_id: str) -> list[str]:
    """The message and the DSNs linked to it (or, for a DSN, its original), in link order."""
    found = [queue_id]
    changed = True
    while changed:
        changed = False
        for entry in entries:
            dsn = entry.get("dsn_queue_id")
            if not dsn:
                continue
            for known, new in ((entry.queue_id, dsn), (dsn, entry.queue_id)):
                if known in found and new not in found:
                    found.append(new)
                    changed = True
    return found


def follow(entries: list[Entry], queue_id: str) -> list[Entry]:
    """The entries of ``queue_id`` and its linked DSNs, in time order."""
    return _in_time_order(entries, set(related_ids(entries, queue_id)))


def _in_time_order(entries: list[Entry], ids: set[str]) -> list[Entry]:
    mine = [entry for entry in entries if _belongs(entry, ids)]
    return sorted(mine, key=lambda e: (e.time, STAGES.get(e.service, len(STAGES)), e.order))


def describe(entry: Entry) -> str:
    """One line for an entry: what happened, with the details an operator needs."""
    get = entry.get
    match entry.event:
        case "accepted":
            text = (
                f"accepted from <{get('sender')}> for {get('recipients', '?')} recipient(s), "
                f"{get('size', '?')} bytes, client {get('client', '?')}"
            )
            return text + (f", user {get('user')}" if get("user") else "")
        case "routed":
            return (
                f"routed: {get('local', '0')} local and {get('relay', '0')} relay recipient(s) "
                f"in {get('jobs', '0')} job(s), {get('failed', '0')} failed"
            )
        case "recipient_failed":
            return f"failed {get('recipient')} at the router: {get('status')} {get('reason')}"
        case "delivered" | "deferred" | "failed":
            note = f" [{get('note')}]" if get("note") else ""
            return (
                f"{entry.event} {get('recipient')} ({get('route')}, attempt "
                f"{get('attempt', '?')}): {get('reply') or get('status')}{note}"
            )
        case "dsn_queued":
            return (
                f"{get('kind')} DSN {get('dsn_queue_id')} queued to the sender for "
                f"{get('recipients')} ({get('statuses')})"
            )
        case "dsn_dropped":
            return f"no DSN sent ({get('reason')}) for {get('recipients')}"
        case "bounce_suppressed":
            return "null sender: no DSN"
        case _:
            error = f": {get('error')}" if get("error") else ""
            return f"{entry.event} ({get('message')}){error}"


@dataclass(frozen=True)
class RecipientState:
    queue_id: str
    recipient: str
    state: str  # delivered, deferred, failed
    detail: str


def outcomes(journey: list[Entry]) -> list[RecipientState]:
    """The last delivery outcome of each recipient, in the order they first appear."""
    last: dict[tuple[str, str], RecipientState] = {}
    for entry in journey:
        queue_id = entry.queue_id.split(".", 1)[0]
        if entry.event in DELIVERY_EVENTS:
            key = (queue_id, entry.get("recipient"))
            last[key] = RecipientState(
                queue_id, key[1], entry.event, entry.get("reply") or entry.get("status")
            )
        elif entry.event == "recipient_failed":
            key = (queue_id, entry.get("recipient"))
            last[key] = RecipientState(queue_id, key[1], "failed", entry.get("status"))
    return list(last.values())


def render(entries: list[Entry], queue_id: str) -> list[str]:
    """The journey as text lines: one per event, then each recipient's outcome."""
    ids = related_ids(entries, queue_id)
    journey = _in_time_order(entries, set(ids))
    if not journey:
        return []
    width = max(len(entry.service) for entry in journey)
    dsns = {entry.get("dsn_queue_id") for entry in entries}
    linked = [f"{other} ({'DSN' if other in dsns else 'original message'})" for other in ids[1:]]
    lines = [queue_id + (f"  linked: {', '.join(linked)}" if linked else "")]
    for entry in journey:
        marker = "" if entry.queue_id.split(".", 1)[0] == queue_id else f"[{entry.queue_id}] "
        lines.append(f"{entry.time}  {entry.service:<{width}}  {marker}{describe(entry)}")
    states = outcomes(journey)
    if states:
        lines.append("recipients:")
        names = [
            state.recipient + ("" if state.queue_id == queue_id else f" [{state.queue_id}]")
            for state in states
        ]
        width = max(len(name) for name in names)
        for name, state in zip(names, states, strict=True):
            waiting = " (retrying)" if state.state == "deferred" else ""
            lines.append(f"  {name:<{width}}  {state.state}{waiting}: {state.detail}")
    return lines
