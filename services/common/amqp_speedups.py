"""Faster equivalents of the aiormq and pamqp code every message goes through.

pamqp marshals any frame by walking its class's attribute list and looking a
codec up by type name for each field, and aiormq copies the frames once more
through a ``BytesIO``. Here the frames of the hot path (Basic.Publish, the
content header, body frames, Basic.Ack) take a direct path; anything else,
and any input the direct path is not sure about, goes to pamqp's own code, so
the bytes are the same (tests compare both over many inputs, odd ones included).

Importing this module installs the patches (services.common.amqp imports it).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterable
from typing import Any

import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.commands import Basic, Connection
from pamqp.header import ContentHeader

_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_ACK = struct.Struct(">BHIIqBB")  # a whole Basic.Ack frame, frame end included
_HEADER_HEAD = struct.Struct(">BHIHxxQH")  # ... class, weight, body size, property flags
_LONG = struct.Struct(">I")
_FRAME_END = b"\xce"
_ACK_SIZE = 13  # method index, delivery tag, bits
_PUBLISH_CACHE_MAX = 1024

_PROPERTY_FLAGS = Basic.Properties.flags
_PROPERTY_KINDS = [
    (name, _PROPERTY_FLAGS[name], Basic.Properties.amqp_type(name))
    for name in Basic.Properties.__slots__
]

# The originals, for the fallbacks and for the tests that compare.
pamqp_marshal = pamqp.frame.marshal
aiormq_marshall = ChannelFrame.marshall


class _Unsure(Exception):
    """The direct path met an input it leaves to pamqp."""


# --- marshalling ----------------------------------------------------------

_publish_frames: dict[tuple[int, str, str, bool, bool], bytes] = {}


def _publish(frame: Basic.Publish, channel: int) -> bytes:
    """A Basic.Publish frame: the same few values every time, so cached by value."""
    exchange, routing_key = frame.exchange, frame.routing_key
    mandatory, immediate = frame.mandatory, frame.immediate
    if not (
        frame.ticket == 0
        and type(frame.ticket) is int
        and type(channel) is int
        and type(exchange) is str
        and type(routing_key) is str
        and type(mandatory) is bool
        and type(immediate) is bool
    ):
        return pamqp_marshal(frame, channel)
    key = (channel, exchange, routing_key, mandatory, immediate)
    cached = _publish_frames.get(key)
    if cached is None:
        cached = pamqp_marshal(frame, channel)  # raises for what it refuses
        if len(_publish_frames) >= _PUBLISH_CACHE_MAX:
            _publish_frames.clear()
        _publish_frames[key] = cached
    return cached


def _ack(frame: Basic.Ack, channel: int) -> bytes:
    tag, multiple = frame.delivery_tag, frame.multiple
    if type(tag) is int and (multiple is True or multiple is False):
        try:
            return _ACK.pack(1, channel, _ACK_SIZE, Basic.Ack.index, tag, multiple, 0xCE)
        except struct.error:
            pass  # pamqp raises its own error for the tag or the channel
    return pamqp_marshal(frame, channel)


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise _Unsure
    return bytes((len(raw),)) + raw


def _table(table: dict[Any, Any]) -> bytes:
    """A field table of str keys and str values, as pamqp encodes it (keys sorted)."""
    parts = []
    for key in sorted(table):
        value = table[key]
        if type(key) is not str or type(value) is not str:
            raise _Unsure
        raw_key = key.encode()
        if len(raw_key) > 128:  # pamqp truncates it and logs a warning
            raise _Unsure
        raw = value.encode()
        parts.append(bytes((len(raw_key),)) + raw_key + b"S" + _LONG.pack(len(raw)) + raw)
    output = b"".join(parts)
    return _LONG.pack(len(output)) + output


def _properties(properties: Basic.Properties) -> tuple[int, bytes]:
    """The property flags and the encoded properties, as BasicProperties.marshal."""
    flags = 0
    parts = []
    for name, flag, kind in _PROPERTY_KINDS:
        value = getattr(properties, name)
        if value is None:
            continue
        value_type = type(value)
        if kind == "shortstr" and value_type is str:
            if value == "":
                continue
            parts.append(_shortstr(value))
        elif kind == "octet" and value_type is int and 0 <= value <= 255:
            parts.append(bytes((value,)))
        elif kind == "table" and value_type is dict:
            parts.append(_table(value) if value else b"\0\0\0\0")
        else:
            raise _Unsure
        flags |= flag
    return flags, b"".join(parts)


def _content_header(frame: ContentHeader, channel: int) -> bytes:
    body_size = frame.body_size
    if type(frame.properties) is Basic.Properties and type(body_size) is int:
        try:
            flags, properties = _properties(frame.properties)
            size = 14 + len(properties)  # class, weight, body size, flags
            head = _HEADER_HEAD.pack(2, channel, size, Basic.frame_id, body_size, flags)
            return head + properties + _FRAME_END
        except Exception:
            pass  # pamqp raises its own error, or encodes what this does not know
    return pamqp_marshal(frame, channel)


def marshall(
    cls: type[ChannelFrame],
    channel_number: int,
    frames: Iterable[Any],
    drain_future: asyncio.Future[Any] | None = None,
) -> ChannelFrame:
    """aiormq's ``ChannelFrame.marshall``, with the hot frames encoded directly."""
    should_close = False
    parts: list[Any] = []
    for frame in frames:
        if should_close:
            logging.getLogger("aiormq.connection").getChild("marshall").warning(
                "It looks like you are going to send a frame %r after "
                "the connection is closed, it's pointless, "
                "the frame is dropped.",
                frame,
            )
            continue
        kind = type(frame)
        if kind is ContentBody:
            value = frame.value
            if (type(value) is bytes or type(value) is memoryview) and type(channel_number) is int:
                try:
                    parts.append(_FRAME_HEAD.pack(3, channel_number, len(value)))
                except struct.error:
                    parts.append(pamqp_marshal(frame, channel_number))
                else:
                    parts += (value, _FRAME_END)
                continue
        elif kind is ContentHeader:
            parts.append(_content_header(frame, channel_number))
            continue
        elif kind is Basic.Publish:
            parts.append(_publish(frame, channel_number))
            continue
        elif kind is Basic.Ack:
            parts.append(_ack(frame, channel_number))
            continue
        if isinstance(frame, Connection.CloseOk):
            should_close = True
        parts.append(pamqp_marshal(frame, channel_number))
    return cls(payload=b"".join(parts), drain_future=drain_future, should_close=should_close)


ChannelFrame.marshall = classmethod(marshall)  # type: ignore[method-assign,assignment]
