"""The wire codec: a hand-written fast path for the hot frames, pamqp for everything else.

Hot frames are parsed with struct.unpack_from at offsets into the received
bytes and encoded with cached Structs, with no per-frame objects:

    in:  Basic.Publish, content header, body, Basic.Ack / Nack / Reject
    out: Basic.Deliver + content header + body, Basic.Ack / Nack (confirms)

A content header's property bytes (the flags word and the property list) are
kept exactly as received and sent out unchanged; `decode_properties` turns
them into pamqp's Basic.Properties only when something needs a property.
Short strings on the fast path are decoded as UTF-8 with surrogateescape, so
any bytes a client sends survive the round trip.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pamqp import commands, frame
from pamqp.base import Frame as PamqpFrame
from pamqp.exceptions import UnmarshalingException
from pamqp.header import ContentHeader

from .constants import (
    BASIC,
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_NACK,
    FRAME_BODY,
    FRAME_END,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    SYNTAX_ERROR,
)
from .errors import ConnectionError

FRAME_HEADER = struct.Struct(">BHI")
unpack_frame_header = FRAME_HEADER.unpack_from
_U32 = struct.Struct(">I")
unpack_u32 = _U32.unpack_from
_HEADER_FIXED = struct.Struct(">HHQ")
unpack_header_fixed = _HEADER_FIXED.unpack_from
_TAG_BITS = struct.Struct(">QB")
unpack_tag_bits = _TAG_BITS.unpack_from
_ACK_FRAME = struct.Struct(">BHIIQBB")
_pack_ack = _ACK_FRAME.pack
_BODY_FRAME_HEAD = struct.Struct(">BHI")
_pack_body_head = _BODY_FRAME_HEAD.pack
_END = bytes([FRAME_END])

HEARTBEAT_FRAME = FRAME_HEADER.pack(FRAME_HEARTBEAT, 0, 0) + _END

# ----------------------------------------------------------------- strings
_names: dict[bytes, str] = {}


def short_name(raw: bytes) -> str:
    """Decode a short string, caching the few names a broker sees over and over."""
    name = _names.get(raw)
    if name is None:
        name = raw.decode("utf-8", "surrogateescape")
        if len(_names) > 8192:
            _names.clear()
        _names[raw] = name
    return name


def encode_short(value: str) -> bytes:
    """A short string: length octet + UTF-8 bytes (at most 255)."""
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) > 255:
        raise ValueError(f"short string of {len(raw)} bytes (at most 255)")
    return bytes((len(raw),)) + raw


# ------------------------------------------------------------------ parsing
def parse_publish(buf: bytes, pos: int, end: int) -> tuple[str, str, bool, bool]:
    """Basic.Publish arguments from the method payload at buf[pos:end] (after class/method).

    Returns (exchange, routing key, mandatory, immediate); raises a 502 on a
    payload that does not hold them.
    """
    try:
        p = pos + 2  # reserved ticket
        n = buf[p]
        exchange = buf[p + 1 : p + 1 + n]
        p += 1 + n
        n = buf[p]
        routing_key = buf[p + 1 : p + 1 + n]
        p += 1 + n
        bits = buf[p]
    except IndexError:
        raise ConnectionError(SYNTAX_ERROR, "malformed basic.publish", 60, 40) from None
    if p + 1 > end:
        raise ConnectionError(SYNTAX_ERROR, "malformed basic.publish", 60, 40)
    return short_name(exchange), short_name(routing_key), bool(bits & 1), bool(bits & 2)


def parse_content_header(buf: bytes, pos: int, end: int) -> tuple[int, int, bytes]:
    """(class id, body size, raw property bytes) of a content header payload."""
    if end - pos < 14:
        raise ConnectionError(SYNTAX_ERROR, "content header too short")
    class_id, _weight, body_size = unpack_header_fixed(buf, pos)
    return class_id, body_size, buf[pos + 12 : end]


def parse_tag_bits(buf: bytes, pos: int, end: int, method_id: int) -> tuple[int, int]:
    """(delivery tag, bits) of Basic.Ack / Nack / Reject, pos after class/method."""
    if end - pos < 9:
        raise ConnectionError(SYNTAX_ERROR, "malformed acknowledgement", BASIC, method_id)
    return unpack_tag_bits(buf, pos)


def decode_method(payload: bytes) -> PamqpFrame:
    """Any method through pamqp; raises UnmarshalingException or KeyError (unknown id)."""
    method_index = unpack_u32(payload, 0)[0]
    method = commands.INDEX_MAPPING[method_index]()
    try:
        method.unmarshal(payload[4:])
    except (struct.error, ValueError, IndexError, TypeError, UnicodeDecodeError) as exc:
        raise UnmarshalingException(method, exc) from exc
    return method


# ----------------------------------------------------------------- encoding
def encode_method(channel: int, method: PamqpFrame) -> bytes:
    """A whole method frame through pamqp (the cold path)."""
    return frame.marshal(method, channel)


_deliver_structs: dict[tuple[int, int, int], struct.Struct] = {}


def _deliver_struct(lc: int, lx: int, lp: int) -> struct.Struct:
    key = (lc, lx, lp)
    st = _deliver_structs.get(key)
    if st is None:
        # method frame | header frame | body frame head, one pack for all of it
        st = struct.Struct(f">BHII{lc}sQB{lx}sBBHIHHQ{lp}sBBHI")
        if len(_deliver_structs) > 4096:
            _deliver_structs.clear()
        _deliver_structs[key] = st
    return st


def encode_deliver(
    channel: int,
    consumer_tag: bytes,
    delivery_tag: int,
    redelivered: bool,
    exchange_rk: bytes,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes]:
    """Basic.Deliver + content header + body as bytes to write.

    consumer_tag and exchange_rk are pre-encoded short strings (the routing
    key's short string follows the exchange's); properties are the raw bytes
    kept from the publish.
    """
    blen = len(body)
    max_body = frame_max - 8
    lc, lx, lp = len(consumer_tag), len(exchange_rk), len(properties)
    if blen <= max_body and blen:
        head = _deliver_struct(lc, lx, lp).pack(
            FRAME_METHOD, channel, 13 + lc + lx, BASIC_DELIVER,
            consumer_tag, delivery_tag, redelivered, exchange_rk,
            FRAME_END, 2, channel, 12 + lp, BASIC, 0, blen,
            properties, FRAME_END, FRAME_BODY, channel, blen,
        )  # fmt: skip
        return [head, body, _END]
    method = _deliver_method_struct(lc, lx).pack(
        FRAME_METHOD, channel, 13 + lc + lx, BASIC_DELIVER,
        consumer_tag, delivery_tag, redelivered, exchange_rk, FRAME_END,
    )  # fmt: skip
    return [method, *encode_content(channel, properties, body, frame_max)]


def _deliver_method_struct(lc: int, lx: int) -> struct.Struct:
    key = (lc, lx, -1)
    st = _deliver_structs.get(key)
    if st is None:
        st = _deliver_structs[key] = struct.Struct(f">BHII{lc}sQB{lx}sB")
    return st


_content_head = struct.Struct(">BHIHHQ")


def encode_content(channel: int, properties: bytes, body: bytes, frame_max: int) -> list[bytes]:
    """Content header (raw properties) and body frames, for Return and Get-Ok."""
    parts = [
        _content_head.pack(2, channel, 12 + len(properties), BASIC, 0, len(body)),
        properties,
        _END,
    ]
    parts += encode_body_frames(channel, body, frame_max)
    return parts


def encode_body_frames(channel: int, body: bytes, frame_max: int) -> list[bytes]:
    """Body frames of at most frame_max bytes each (none for an empty body)."""
    if not body:
        return []
    max_body = frame_max - 8
    if len(body) <= max_body:
        return [_pack_body_head(FRAME_BODY, channel, len(body)), body, _END]
    parts: list[bytes] = []
    view = memoryview(body)
    for i in range(0, len(body), max_body):
        chunk = bytes(view[i : i + max_body])
        parts += (_pack_body_head(FRAME_BODY, channel, len(chunk)), chunk, _END)
    return parts


def encode_ack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """Basic.Ack (a publisher confirm) as one frame."""
    return _pack_ack(FRAME_METHOD, channel, 13, BASIC_ACK, delivery_tag, multiple, FRAME_END)


def encode_nack(channel: int, delivery_tag: int, multiple: bool, requeue: bool = False) -> bytes:
    """Basic.Nack (a negative publisher confirm) as one frame."""
    bits = (1 if multiple else 0) | (2 if requeue else 0)
    return _pack_ack(FRAME_METHOD, channel, 13, BASIC_NACK, delivery_tag, bits, FRAME_END)


# --------------------------------------------------------------- properties
def decode_properties(raw: bytes) -> commands.Basic.Properties:
    """pamqp's Basic.Properties from raw property bytes (flags + list), on demand."""
    flags = 0
    pos = 0
    shift = 0
    while True:
        word = struct.unpack_from(">H", raw, pos)[0]
        pos += 2
        flags |= word << (shift * 16)
        if not word & 1:
            break
        shift += 1
    props = commands.Basic.Properties()
    props.unmarshal(flags, raw[pos:])
    return props


def encode_properties(properties: commands.Basic.Properties | None) -> bytes:
    """Raw property bytes (flags + list) for properties made by the server."""
    header = ContentHeader(0, 0, properties or commands.Basic.Properties())
    return header.marshal()[12:]


EMPTY_PROPERTIES = b"\x00\x00"


def join_frames(parts: Sequence[bytes]) -> bytes:
    return b"".join(parts)
