"""The wire codec: a hand-written fast path for the hot frames, pamqp's commands for the rest.

Hot frames are parsed with struct.unpack_from at offsets into the received
bytes and encoded with cached Structs, with no per-frame objects:

    in:  Basic.Publish, content header, body, Basic.Ack / Nack / Reject
    out: Basic.Deliver + content header + body, Basic.Ack / Nack (confirms)

Every other method is read into a pamqp command by `decode_method`, which
takes the arguments exactly as RabbitMQ's decoder does (pamqp's own reader
is more lenient: it takes trailing bytes, short strings that overrun, field
types RabbitMQ refuses) and says how they are wrong, because each way
gets a different answer. Other methods are written by pamqp.

A content header's property bytes (the flags word and the property list) are
kept exactly as received and sent out unchanged; `check_properties` makes
sure they would decode (RabbitMQ refuses a publish whose properties do not),
and `decode_properties` turns them into pamqp's Basic.Properties only when
something needs a property. Short strings of methods with content (as
RabbitMQ, we do not check those for UTF-8) and of properties are decoded
with surrogateescape, so any bytes a client sends survive the round trip.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from pamqp import commands, frame
from pamqp import decode as pdecode
from pamqp.base import Frame as PamqpFrame
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
)

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
# Method arguments are read the way RabbitMQ's generated decoder reads them:
# one binary pattern per method that must match the payload exactly, then
# field tables parsed and (for methods without content) short strings
# checked for UTF-8. Each way of failing answers differently, so each has
# its own exception; the connection maps them to what RabbitMQ answers.


class UndecodableMethod(Exception):
    """Arguments that do not fit the method's layout (RabbitMQ: 501 "cannot decode <<...>>")."""

    def __init__(self, arguments: bytes) -> None:
        super().__init__(f"cannot decode {len(arguments)} bytes")
        self.arguments = arguments


class MalformedUTF8(Exception):
    """A short string of a method without content that is not UTF-8 (RabbitMQ: 501)."""


class BadFieldTable(Exception):
    """A field table RabbitMQ's parser cannot read; its connection process dies, the socket closes."""


class UnknownMethod(Exception):
    """A class/method id pair the protocol does not define; RabbitMQ's reader dies on it too."""


def parse_publish(buf: bytes, pos: int, end: int) -> tuple[str, str, bool, bool]:
    """Basic.Publish arguments from the method payload at buf[pos:end] (after class/method).

    Returns (exchange, routing key, mandatory, immediate). The payload must
    hold exactly the arguments (UndecodableMethod otherwise); names are not
    checked for UTF-8, as RabbitMQ skips that check on methods with content.
    """
    p = pos + 2  # reserved ticket
    if p < end:
        n = buf[p]
        exchange = buf[p + 1 : p + 1 + n]
        p += 1 + n
        if p < end:
            n = buf[p]
            routing_key = buf[p + 1 : p + 1 + n]
            p += 1 + n
            if p + 1 == end:
                bits = buf[p]
                return short_name(exchange), short_name(routing_key), bool(bits & 1), bool(bits & 2)
    raise UndecodableMethod(bytes(buf[pos:end]))


def parse_content_header(buf: bytes, pos: int, end: int) -> tuple[int, int, int, bytes]:
    """(class id, weight, body size, raw property bytes) of a content header payload.

    The caller makes sure of the 12 fixed bytes; the property bytes are
    whatever follows, checked only when the publish is complete.
    """
    class_id, weight, body_size = unpack_header_fixed(buf, pos)
    return class_id, weight, body_size, buf[pos + 12 : end]


def parse_tag_bits(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(delivery tag, bits) of Basic.Ack / Nack / Reject, pos after class/method."""
    if end - pos != 9:
        raise UndecodableMethod(bytes(buf[pos:end]))
    return unpack_tag_bits(buf, pos)


# (attribute, type) lists, and the methods that carry content, by method index.
_layouts: dict[int, list[tuple[str, str]]] = {}
_CONTENT_METHODS = frozenset(
    (60 << 16) | m for m in (40, 50, 60, 71)  # publish, return, deliver, get-ok
)


class AccessRequest(PamqpFrame):
    """Access.Request (class 30): gone from 0-9-1, still answered by RabbitMQ (ticket 1)."""

    __slots__ = ["realm", "exclusive", "passive", "active", "write", "read"]
    frame_id = 10
    index = 0x001E000A
    name = "Access.Request"
    _realm = "shortstr"
    _exclusive = _passive = _active = _write = _read = "bit"

    def __init__(self) -> None:
        self.realm = "/data"
        self.exclusive = self.passive = False
        self.active = self.write = self.read = True


# Methods pamqp does not define but RabbitMQ answers.
_EXTRA_METHODS: dict[int, type[PamqpFrame]] = {AccessRequest.index: AccessRequest}


def _method_class(method_index: int) -> type[PamqpFrame]:
    cls = commands.INDEX_MAPPING.get(method_index) or _EXTRA_METHODS.get(method_index)
    if cls is None:
        raise UnknownMethod(f"{method_index >> 16}.{method_index & 0xFFFF}")
    return cls


def method_layout(method_index: int) -> list[tuple[str, str]]:
    """The argument (name, type) list of a method; UnknownMethod for an undefined id."""
    layout = _layouts.get(method_index)
    if layout is None:
        cls = _method_class(method_index)
        layout = _layouts[method_index] = [(a, cls.amqp_type(a)) for a in cls.__slots__]
    return layout


def has_content(method_index: int) -> bool:
    """True for the methods followed by a content header and body."""
    return method_index in _CONTENT_METHODS


def decode_method(payload: bytes) -> PamqpFrame:
    """A method (class/method ids first) as a pamqp command, read as RabbitMQ reads it.

    Raises UnknownMethod, UndecodableMethod (layout), MalformedUTF8 or
    BadFieldTable, checked in that order, field by field, as RabbitMQ does.
    """
    method_index = unpack_u32(payload, 0)[0]
    layout = method_layout(method_index)
    raw = _split_arguments(payload, layout)
    cls = _method_class(method_index)
    method = cls.__new__(cls)  # every field is set below; no defaults, no validation
    check_utf8 = method_index not in _CONTENT_METHODS
    for (name, kind), value in zip(layout, raw, strict=True):
        if kind == "shortstr":
            value = _short_str(value, check_utf8)
        elif kind == "longstr":
            value = _long_str(value)
        elif kind == "table":
            value = parse_table(value)
        setattr(method, name, value)
    return method


def _split_arguments(payload: bytes, layout: list[tuple[str, str]]) -> list[Any]:
    """Cut the arguments out by the layout: raw bytes for strings/tables, ints, bools.

    Consecutive bits share one octet (eight at most), as in the spec; the
    payload must end exactly after the last argument.
    """
    values: list[Any] = []
    pos = 4
    end = len(payload)
    bit = 8  # bits used in the current octet; 8 = start a new octet
    octet = 0
    try:
        for _name, kind in layout:
            if kind == "bit":
                if bit == 8:
                    octet = payload[pos]
                    pos += 1
                    bit = 0
                values.append(bool(octet & (1 << bit)))
                bit += 1
                continue
            bit = 8
            if kind == "shortstr":
                n = payload[pos]
                values.append(payload[pos + 1 : pos + 1 + n])
                pos += 1 + n
            elif kind in ("longstr", "table"):
                n = unpack_u32(payload, pos)[0]
                values.append(payload[pos + 4 : pos + 4 + n])
                pos += 4 + n
            else:
                fmt = _INT_FORMATS[kind]
                values.append(fmt.unpack_from(payload, pos)[0])
                pos += fmt.size
    except (IndexError, struct.error):
        raise UndecodableMethod(payload[4:]) from None
    if pos != end:
        raise UndecodableMethod(payload[4:])
    return values


_INT_FORMATS = {
    "octet": struct.Struct(">B"),
    "short": struct.Struct(">H"),
    "long": struct.Struct(">I"),
    "longlong": struct.Struct(">Q"),
    "timestamp": struct.Struct(">Q"),
}


def _short_str(raw: bytes, check_utf8: bool) -> str:
    if check_utf8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedUTF8("Malformed UTF-8 in shortstr") from None
    return raw.decode("utf-8", "surrogateescape")


def _long_str(raw: bytes) -> str | bytes:
    """pamqp's convention: text when it is UTF-8, the bytes otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw)


# ------------------------------------------------------------ field tables
# RabbitMQ's parse_table: these types and no others, every length inside the
# table. Values come out as pamqp's decoder gives them.
_FIXED: dict[int, tuple[struct.Struct, Callable[[Any], Any] | None]] = {
    ord("b"): (struct.Struct(">b"), None),
    ord("B"): (struct.Struct(">B"), None),
    ord("s"): (struct.Struct(">h"), None),
    ord("u"): (struct.Struct(">H"), None),
    ord("I"): (struct.Struct(">i"), None),
    ord("i"): (struct.Struct(">I"), None),
    ord("l"): (struct.Struct(">q"), None),
    ord("L"): (struct.Struct(">q"), None),
    ord("f"): (struct.Struct(">f"), None),
    ord("d"): (struct.Struct(">d"), None),
    ord("t"): (struct.Struct(">B"), bool),
    ord("T"): (struct.Struct(">Q"), None),  # converted by _timestamp
}
_SIZED = frozenset(b"SxFA")
_T, _D, _V = ord("T"), ord("D"), ord("V")
# Tables and arrays nested deeper than this are refused. RabbitMQ has no
# limit; Python's stack has one, and so has everything that walks the
# values later (encoders, comparisons): a client nests a few levels, not
# hundreds.
MAX_TABLE_DEPTH = 100


def parse_table(data: bytes, depth: int = 0) -> dict[str, Any]:
    """A field table's contents (without its length prefix); BadFieldTable if RabbitMQ would fail."""
    if depth > MAX_TABLE_DEPTH:
        raise BadFieldTable(f"field tables nested deeper than {MAX_TABLE_DEPTH}")
    table: dict[str, Any] = {}
    pos, end = 0, len(data)
    while pos < end:
        n = data[pos]
        pos += 1
        if pos + n >= end:  # the name and at least the type octet
            raise BadFieldTable("field name runs past the table")
        key = data[pos : pos + n].decode("utf-8", "surrogateescape")
        value, pos = _field_value(data, pos + n, end, depth)
        table[key] = value
    return table


def parse_array(data: bytes, depth: int = 0) -> list[Any]:
    """A field array's contents (without its length prefix)."""
    if depth > MAX_TABLE_DEPTH:
        raise BadFieldTable(f"field tables nested deeper than {MAX_TABLE_DEPTH}")
    values = []
    pos, end = 0, len(data)
    while pos < end:
        value, pos = _field_value(data, pos, end, depth)
        values.append(value)
    return values


def _field_value(data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    kind = data[pos]
    pos += 1
    fixed = _FIXED.get(kind)
    if fixed is not None:
        fmt, convert = fixed
        if pos + fmt.size > end:
            raise BadFieldTable("value runs past the table")
        value = fmt.unpack_from(data, pos)[0]
        if kind == _T:
            value = _timestamp(value)
        elif convert is not None:
            value = convert(value)
        return value, pos + fmt.size
    if kind in _SIZED:
        if pos + 4 > end:
            raise BadFieldTable("value length runs past the table")
        n = unpack_u32(data, pos)[0]
        pos += 4
        if pos + n > end:
            raise BadFieldTable("value runs past the table")
        raw = data[pos : pos + n]
        if kind == 0x53:  # S
            value = _long_str(raw)
        elif kind == 0x78:  # x
            value = bytearray(raw)
        elif kind == 0x46:  # F
            value = parse_table(raw, depth + 1)
        else:  # A
            value = parse_array(raw, depth + 1)
        return value, pos + n
    if kind == _D:
        if pos + 5 > end:
            raise BadFieldTable("decimal runs past the table")
        return pdecode.decimal(data[pos : pos + 5])[1], pos + 5
    if kind == _V:
        return None, pos
    raise BadFieldTable(f"unknown field type 0x{kind:02x}")


def _timestamp(seconds: int) -> Any:
    """pamqp's datetime for a timestamp; the bare number where datetime cannot hold it."""
    try:
        return pdecode.timestamp(struct.pack(">Q", seconds))[1]
    except (ValueError, OverflowError, OSError):
        return seconds


# Byte sizes of the fixed-size field types, for walking a table without reading it.
_FIXED_SIZES = {kind: fmt.size for kind, (fmt, _convert) in _FIXED.items()}
_FIXED_SIZES[_D] = 5
_FIXED_SIZES[_V] = 0


def check_table(data: bytes, pos: int, end: int, depth: int = 0) -> None:
    """Walk a field table's contents without building values; BadFieldTable if malformed.

    The same grammar as parse_table (a test keeps them in step), at a
    fraction of the cost: the publish path checks every message's headers.
    """
    if depth > MAX_TABLE_DEPTH:
        raise BadFieldTable(f"field tables nested deeper than {MAX_TABLE_DEPTH}")
    fixed = _FIXED_SIZES
    while pos < end:
        pos += 1 + data[pos]
        if pos >= end:
            raise BadFieldTable("field name runs past the table")
        kind = data[pos]
        size = fixed.get(kind)
        if size is not None:
            pos += 1 + size
            if pos > end:
                raise BadFieldTable("value runs past the table")
        else:
            pos = _skip_sized(data, pos, end, depth)


def _skip_sized(data: bytes, pos: int, end: int, depth: int) -> int:
    """Past a string, byte array, table or array value (pos at its type octet)."""
    kind = data[pos]
    if kind not in _SIZED:
        raise BadFieldTable(f"unknown field type 0x{kind:02x}")
    if pos + 5 > end:
        raise BadFieldTable("value length runs past the table")
    start = pos + 5
    stop = start + unpack_u32(data, pos + 1)[0]
    if stop > end:
        raise BadFieldTable("value runs past the table")
    if kind == 0x46:  # F
        check_table(data, start, stop, depth + 1)
    elif kind == 0x41:  # A
        if depth >= MAX_TABLE_DEPTH:
            raise BadFieldTable(f"field tables nested deeper than {MAX_TABLE_DEPTH}")
        fixed = _FIXED_SIZES
        while start < stop:
            size = fixed.get(data[start])
            if size is not None:
                start += 1 + size
                if start > stop:
                    raise BadFieldTable("value runs past the array")
            else:
                start = _skip_sized(data, start, stop, depth + 1)
    return stop


# ----------------------------------------------------------------- encoding
def encode_method(channel: int, method: PamqpFrame) -> bytes:
    """A whole method frame through pamqp (the cold path)."""
    return frame.marshal(method, channel)


def encode_raw_method(channel: int, class_id: int, method_id: int, arguments: bytes) -> bytes:
    """A method frame from already encoded arguments (for what pamqp cannot encode)."""
    size = 4 + len(arguments)
    return _method_head.pack(FRAME_METHOD, channel, size, class_id, method_id) + arguments + _END


_method_head = struct.Struct(">BHIHH")
_close_tail = struct.Struct(">HH")


def encode_close(channel: int, code: int, reply_text: bytes, class_id: int, method_id: int) -> bytes:
    """Connection.Close (channel 0) or Channel.Close with the reply text's bytes as they are.

    Built by hand so that bytes a client sent (quoted in the text) go back
    unchanged, as RabbitMQ sends them, where pamqp would insist on UTF-8.
    """
    cls, meth = (10, 50) if channel == 0 else (20, 40)
    arguments = (
        struct.pack(">HB", code, len(reply_text))
        + reply_text
        + _close_tail.pack(class_id, method_id)
    )
    return encode_raw_method(channel, cls, meth, arguments)


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
# Raw property bytes are read as RabbitMQ reads them: one 16-bit flags word
# (the low two bits, continuation and reserved, are ignored), the present
# properties in order, and nothing after them.
_PROPERTIES: list[tuple[int, str, str]] = [
    (commands.Basic.Properties.flags[name], name, commands.Basic.Properties.amqp_type(name))
    for name in commands.Basic.Properties.__slots__
]
_PROPERTY_SIZES = {"octet": 1, "timestamp": 8}


# For each flags word: the present properties' sizes in order (-1 a short
# string, -2 a table), so a check loops over what is there, not all 14.
_SHORTSTR, _TABLE = -1, -2
_plans: dict[int, tuple[int, ...]] = {}
# Property bytes seen to be good lately: publishers repeat theirs.
_checked: dict[bytes, None] = {}


def _plan(flags: int) -> tuple[int, ...]:
    plan = _plans.get(flags)
    if plan is None:
        sizes = {"shortstr": _SHORTSTR, "table": _TABLE, **_PROPERTY_SIZES}
        plan = _plans[flags] = tuple(sizes[kind] for flag, _n, kind in _PROPERTIES if flags & flag)
    return plan


def check_properties(raw: bytes) -> bool:
    """True when raw property bytes decode (RabbitMQ fails the publish otherwise); no values built."""
    end = len(raw)
    if end < 2:
        return False
    flags = ((raw[0] << 8) | raw[1]) & 0xFFFC
    if not flags:
        return end == 2
    if raw in _checked:
        return True
    pos = 2
    try:
        for size in _plan(flags):
            if size == _SHORTSTR:
                pos += 1 + raw[pos]
            elif size == _TABLE:
                n = unpack_u32(raw, pos)[0]
                pos += 4
                if pos + n > end:
                    return False
                check_table(raw, pos, pos + n)
                pos += n
            else:
                pos += size
    except (IndexError, struct.error, BadFieldTable):
        return False
    if pos != end:
        return False
    if end <= 512:
        if len(_checked) >= 1024:
            _checked.clear()
        _checked[raw] = None
    return True


def decode_properties(raw: bytes) -> commands.Basic.Properties:
    """pamqp's Basic.Properties from raw property bytes, on demand; ValueError if malformed.

    Short strings that are not UTF-8 come out with surrogate escapes (RabbitMQ
    does not check them either).
    """
    if not check_properties(raw):
        raise ValueError("malformed content header properties")
    flags = (raw[0] << 8) | raw[1]
    props = commands.Basic.Properties()
    pos = 2
    for flag, name, kind in _PROPERTIES:
        if not flags & flag:
            continue
        if kind == "shortstr":
            n = raw[pos]
            value: Any = raw[pos + 1 : pos + 1 + n].decode("utf-8", "surrogateescape")
            pos += 1 + n
        elif kind == "table":
            n = unpack_u32(raw, pos)[0]
            value = parse_table(raw[pos + 4 : pos + 4 + n])
            pos += 4 + n
        elif kind == "octet":
            value = raw[pos]
            pos += 1
        else:  # timestamp
            value = _timestamp(struct.unpack_from(">Q", raw, pos)[0])
            pos += 8
        setattr(props, name, value)
    return props


def encode_properties(properties: commands.Basic.Properties | None) -> bytes:
    """Raw property bytes (flags + list) for properties made by the server."""
    header = ContentHeader(0, 0, properties or commands.Basic.Properties())
    return header.marshal()[12:]


EMPTY_PROPERTIES = b"\x00\x00"


def join_frames(parts: Sequence[bytes]) -> bytes:
    return b"".join(parts)
