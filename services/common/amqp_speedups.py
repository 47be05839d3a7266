"""Faster equivalents of the aiormq and pamqp code every message goes through.

pamqp marshals and unmarshals any frame by walking each class's attribute list
and looking a codec up by type name for each field; aiormq reads a frame in
three awaits through a ``BytesIO`` under a lock. A relayed message pays that
about ten times in each service. Here the few frames of the hot path
(Basic.Publish, the content header, body frames, Basic.Ack, Basic.Deliver,
heartbeats) take a direct path; anything else, and any input the direct path
is not sure about, goes to pamqp's own code, so the bytes and the objects are
the same (tests compare both over many inputs, odd ones included). Big bodies
are cut into frames as views, not copies, and a big message's frames go to the
socket as a list of buffers (``writelines``) instead of being joined into one:
a 25 MiB message is then held once, not twice, while it is published.

Importing this module installs the patches (services.common.amqp imports it).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterable
from typing import Any

import aiormq
import pamqp.frame
from aiormq.abc import ChannelFrame, DeliveredMessage
from aiormq.connection import FrameReceiver
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from pamqp.body import ContentBody
from pamqp.commands import Basic, Connection
from pamqp.exceptions import PAMQPException
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

Received = tuple[int, int, pamqp.frame.FrameTypes]

_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_ACK = struct.Struct(">BHIIqBB")  # a whole Basic.Ack frame, frame end included
_HEADER_HEAD = struct.Struct(">BHIHxxQH")  # ... class, weight, body size, property flags
_CONTENT = struct.Struct(">HHQH")  # a received header's class, weight, body size, flags
_LONG = struct.Struct(">I")
_LONGLONG = struct.Struct(">q")
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
pamqp_unmarshal = pamqp.frame.unmarshal
aiormq_marshall = ChannelFrame.marshall
aiormq_get_frame = FrameReceiver.get_frame
aiormq_split_body = aiormq.Channel._split_body


class _Unsure(Exception):
    """The direct path met an input it leaves to pamqp."""


# --- body frames ----------------------------------------------------------

# From this size on a message's frames are written as a list of buffers, not joined.
JOIN_LIMIT = 1 << 20


class BodyParts:
    """A message body published as consecutive pieces, never joined into one bytes.

    The ingress publishes its ``Received:`` line and the client's message this way,
    so a big message is not copied to put 200 bytes in front of it. ``len()`` is
    the body's size (aiormq's ``basic_publish`` puts it in the content header).
    """

    __slots__ = ("parts",)

    def __init__(self, *parts: bytes | bytearray) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(map(len, self.parts))

    @classmethod
    def of(cls, *parts: bytes | bytearray) -> bytes | BodyParts:
        """The pieces joined when that is cheap (one body frame, as any message), as a
        :class:`BodyParts` from ``JOIN_LIMIT`` on, where the copy would cost memory."""
        if sum(map(len, parts)) < JOIN_LIMIT:
            return b"".join(parts)
        return cls(*parts)


def _split_body_in_views(
    self: aiormq.Channel, body: bytes | bytearray | BodyParts
) -> list[ContentBody]:
    """aiormq's ``Channel._split_body``, with the frames as views of the body.

    aiormq copies a big body into frame-sized pieces, then each piece into the
    frame buffer: a 25 MiB message cost three times its size while it was sent.
    Views give the same frames (a test compares the bytes) with one copy less.
    A :class:`BodyParts` gives the frames of its pieces, in order: a frame may
    end early where a piece ends (AMQP only asks the frames to add up to the
    body size), so nothing is copied to fill it.
    """
    if isinstance(body, BodyParts):
        return [frame for part in body.parts if part for frame in _split_body_in_views(self, part)]
    if not body:
        return []
    size = self.max_content_size
    if len(body) < size and type(body) is bytes:
        return [ContentBody(body)]
    view = memoryview(body)  # a bytearray (the ingress's message) is always cut in views
    return [ContentBody(view[start : start + size]) for start in range(0, len(body), size)]  # type: ignore[arg-type]


class FrameBuffers(list[Any]):
    """A ``ChannelFrame.payload`` left as a list of buffers: see :func:`_write`."""


_stream_write = asyncio.StreamWriter.write


def _write(self: asyncio.StreamWriter, data: Any) -> None:
    """``StreamWriter.write``, but :class:`FrameBuffers` go out with ``writelines``.

    aiormq's writer passes each ``ChannelFrame.payload`` to ``write``; a big
    message's payload is a :class:`FrameBuffers`, which the transport (uvloop's
    too) sends as it is, holding references, not a joined copy.
    """
    if type(data) is FrameBuffers:
        self.writelines(data)
    else:
        _stream_write(self, data)


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
    return cls(payload=_payload(parts), drain_future=drain_future, should_close=should_close)


def _payload(parts: list[Any]) -> Any:
    """The frames joined; for a big message left as buffers (see :class:`FrameBuffers`)."""
    # A publish with a body has five parts or more; acks and the like are not summed.
    if len(parts) > 3 and sum(map(len, parts)) >= JOIN_LIMIT:
        return FrameBuffers(parts)
    return b"".join(parts)


# --- unmarshalling --------------------------------------------------------


def _string(data: bytes, offset: int) -> tuple[str, int]:
    end = offset + 1 + data[offset]
    if end > len(data):
        raise _Unsure
    return data[offset + 1 : end].decode(), end


def _deliver(payload: bytes) -> Basic.Deliver:
    consumer_tag, offset = _string(payload, 4)
    (delivery_tag,) = _LONGLONG.unpack_from(payload, offset)
    bits = payload[offset + 8]
    exchange, offset = _string(payload, offset + 9)
    routing_key, offset = _string(payload, offset)
    if offset != len(payload):
        raise _Unsure
    frame = Basic.Deliver.__new__(Basic.Deliver)  # pamqp sets the fields unvalidated too
    frame.consumer_tag = consumer_tag
    frame.delivery_tag = delivery_tag
    frame.redelivered = bits & 1 != 0
    frame.exchange = exchange
    frame.routing_key = routing_key
    return frame


def _received_table(data: bytes, offset: int) -> tuple[dict[str, Any], int]:
    """A field table of str values (anything else is left to pamqp)."""
    end = offset + 4 + _LONG.unpack_from(data, offset)[0]
    if end > len(data):
        raise _Unsure
    offset += 4
    table: dict[str, Any] = {}
    while offset < end:
        key, offset = _string(data, offset)
        if offset >= end or data[offset] != 0x53:  # "S"
            raise _Unsure
        start = offset + 5
        offset = start + _LONG.unpack_from(data, offset + 1)[0]
        if offset > end:
            raise _Unsure
        table[key] = data[start:offset].decode()
    return table, end


def _header(payload: bytes) -> ContentHeader:
    class_id, weight, body_size, flags = _CONTENT.unpack_from(payload)
    if flags & 1:  # a second flag word
        raise _Unsure
    properties = Basic.Properties()
    offset = 14
    value: Any
    for name, flag, kind in _PROPERTY_KINDS:
        if flags & flag:
            if kind == "shortstr":
                value, offset = _string(payload, offset)
            elif kind == "octet":
                value = payload[offset]
                offset += 1
            elif kind == "table":
                value, offset = _received_table(payload, offset)
            else:
                raise _Unsure
            setattr(properties, name, value)
    if offset != len(payload):
        raise _Unsure
    header = ContentHeader(weight, body_size, properties)
    header.class_id = class_id
    return header


def _direct(frame_type: int, size: int, rest: bytes) -> pamqp.frame.FrameTypes:
    if frame_type == 3:
        return ContentBody(rest[:-1])
    if frame_type == 1:
        index = _LONG.unpack_from(rest)[0]
        if index == Basic.Ack.index and size == _ACK_SIZE:
            ack = Basic.Ack.__new__(Basic.Ack)
            ack.delivery_tag = _LONGLONG.unpack_from(rest, 4)[0]
            ack.multiple = rest[12] & 1 != 0
            return ack
        if index == Basic.Deliver.index:
            return _deliver(rest[:-1])
    elif frame_type == 2:
        return _header(rest[:-1])
    raise _Unsure


def unmarshal_parts(head: bytes, rest: bytes) -> Received:
    """``pamqp.frame.unmarshal(head + rest)`` for a frame read as its 7-byte head and the rest."""
    frame_type, channel, size = _FRAME_HEAD.unpack(head)
    if frame_type == 8 and size == 0:
        return 8, channel, Heartbeat()
    if size and len(rest) == size + 1 and rest[-1] == 0xCE:
        try:
            return size + 8, channel, _direct(frame_type, size, rest)
        except Exception:
            pass  # pamqp decodes it, or raises its own error
    return pamqp_unmarshal(head + rest)


def unmarshal(data: bytes) -> Received:
    """``pamqp.frame.unmarshal`` of one whole frame (what the tests compare)."""
    if len(data) < 7 or data[:4] == b"AMQP":
        return pamqp_unmarshal(data)
    return unmarshal_parts(data[:7], data[7:])


async def get_frame(self: FrameReceiver) -> Received:
    """aiormq's ``FrameReceiver.get_frame`` in two reads, without a BytesIO or a lock.

    The lock only kept concurrent callers apart, and there is one reader. The
    errors are the same for the same conditions, down to their messages: the
    head is read in one call, a short read is told as aiormq's 1 + 6 reads.
    """
    reader = self.reader
    if reader.at_eof():
        del self.reader
        raise StopAsyncIteration
    size = -1
    try:
        head = await reader.readexactly(7)
        if not self.started and head.startswith(b"AMQP"):
            raise ProtocolSyntaxError("Unexpected AMQP protocol header")
        self.started = True
        size = _FRAME_HEAD.unpack(head)[2]
        rest = await reader.readexactly(size + 1)
    except asyncio.IncompleteReadError as e:
        if size < 0 and e.partial:  # aiormq read the first byte on its own
            e = asyncio.IncompleteReadError(e.partial[1:], 6)
        elif size < 0:
            e = asyncio.IncompleteReadError(e.partial, 1)
        raise AMQPConnectionError(
            "Server connection unexpectedly closed. "
            f"Read {len(e.partial)} bytes but {e.expected} "
            "bytes expected",
        ) from e
    except ConnectionRefusedError as e:
        raise AMQPConnectionError(f"Server connection refused: {e!r}") from e
    except ConnectionResetError as e:
        raise AMQPConnectionError(f"Server connection reset: {e!r}") from e
    except ConnectionError as e:
        raise AMQPConnectionError(f"Server connection error: {e!r}") from e
    except OSError as e:
        raise AMQPConnectionError(f"Server communication error: {e!r}") from e
    try:
        received = unmarshal_parts(head, rest)
    except PAMQPException as e:
        raise InvalidFrameError(str(e)) from e
    if type(received[2]) is Basic.Deliver:
        return _with_content(reader, received)
    return received


# --- a delivery in one piece ----------------------------------------------
#
# aiormq hands every frame of a delivered message (Basic.Deliver, its content
# header, its body frames) from the connection's reader task to the channel's
# through an asyncio.Queue, then assembles the body in a BytesIO: three queue
# passes and three dispatches per message. RabbitMQ writes a message's frames
# together, so they are usually all in the reader's buffer when the Deliver is
# decoded: then they are taken with it, and the channel gets one frame.


_DELIVER_FIELDS: tuple[str, ...] = tuple(Basic.Deliver.__slots__)


class DeliverWithContent(Basic.Deliver):
    """A Basic.Deliver that arrived with its whole content (see :func:`_with_content`)."""

    content_header: ContentHeader
    body: bytes


def _frame_end(buffer: bytearray, offset: int, kind: int, channel: int) -> int | None:
    """Where the payload of the ``kind`` frame for ``channel`` at ``offset`` ends (its
    frame-end octet), or None unless that whole frame is in ``buffer``."""
    if len(buffer) < offset + 7:
        return None
    found, on, size = _FRAME_HEAD.unpack_from(buffer, offset)
    end: int = offset + 7 + size
    if found != kind or on != channel or len(buffer) <= end or buffer[end] != 0xCE:
        return None
    return end


def _content_in_buffer(buffer: bytearray, channel: int) -> tuple[ContentHeader, bytes, int] | None:
    """The content header and body that start ``buffer``, for ``channel``, with the
    number of bytes they take; None unless they are all there, well formed and on
    the direct path (then the frames are left where they are, for aiormq)."""
    end = _frame_end(buffer, 0, 2, channel)
    if end is None:
        return None
    with memoryview(buffer) as view:
        try:
            header = _header(view[7:end].tobytes())
        except Exception:
            return None
        pieces: list[memoryview] = []
        offset = end + 1
        left = header.body_size
        while left > 0:
            end = _frame_end(buffer, offset, 3, channel)
            if end is None:
                return None
            pieces.append(view[offset + 7 : end])
            left -= end - offset - 7
            offset = end + 1
        body = b"".join(pieces)
        pieces.clear()  # the views go before the buffer is cut
    return header, body, offset


def _with_content(reader: asyncio.StreamReader, received: Received) -> Received:
    """``received`` (a Basic.Deliver) as a :class:`DeliverWithContent` when its content
    is already in the reader's buffer, taken out of it; else as it is."""
    weight, channel, deliver = received
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    content = _content_in_buffer(buffer, channel)
    if content is None:
        return received
    header, body, taken = content
    del buffer[:taken]
    reader._maybe_resume_transport()  # type: ignore[attr-defined]  # as readexactly does
    whole = DeliverWithContent.__new__(DeliverWithContent)
    for field in _DELIVER_FIELDS:  # slots: consumer_tag, delivery_tag, redelivered, ...
        setattr(whole, field, getattr(deliver, field))
    whole.content_header = header
    whole.body = body
    return weight, channel, whole


async def _on_deliver_frame(self: aiormq.Channel, frame: Basic.Deliver) -> None:
    """aiormq's ``Channel._on_deliver_frame``; a :class:`DeliverWithContent` needs no
    more frames from the channel's queue."""
    if type(frame) is not DeliverWithContent:
        return await aiormq_on_deliver_frame(self, frame)
    message = DeliveredMessage(
        delivery=frame, header=frame.content_header, body=frame.body, channel=self
    )
    if frame.consumer_tag is None:
        aiormq.channel.log.warning("Frame %r has no consumer tag", frame)
        return None
    consumer = self.consumers.get(frame.consumer_tag)
    if consumer is not None:
        task = self.create_task(consumer(message))
        task.add_done_callback(self._on_consumer_done)
    return None


aiormq_on_deliver_frame = aiormq.Channel._on_deliver_frame
aiormq.Channel._on_deliver_frame = _on_deliver_frame  # type: ignore[method-assign]
aiormq.Channel._split_body = _split_body_in_views  # type: ignore[method-assign]
asyncio.StreamWriter.write = _write  # type: ignore[method-assign]
ChannelFrame.marshall = classmethod(marshall)  # type: ignore[method-assign,assignment]
FrameReceiver.get_frame = get_frame  # type: ignore[method-assign]
