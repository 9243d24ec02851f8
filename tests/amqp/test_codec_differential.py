"""The fast codec against pamqp: the same bytes out, the same values in.

The hot path parses Basic.Publish, content headers and acknowledgements in
place and encodes deliveries, content and confirms with packed structs; the
cold path reads every other method with its own strict decoder. For random
methods and properties (all 14 basic properties, headers with nested
tables, arrays, decimals, timestamps and byte arrays) each must agree with
pamqp byte for byte and value for value, wherever pamqp can take the input.
pamqp's own argument validation (exchange-name patterns and the like) is
switched off for the comparisons: it is about what the codec produces, not
about which names a client library allows.
"""

from __future__ import annotations

import datetime
import decimal
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands, encode, frame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from warrenmq.amqp import codec

SETTINGS = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ================================================================ strategies
def short_text(max_bytes: int = 255) -> st.SearchStrategy[str]:
    """UTF-8 text of at most max_bytes bytes (0-255 for a short string)."""
    return st.text(max_size=max_bytes).filter(lambda s: len(s.encode("utf-8")) <= max_bytes)


u8 = st.integers(0, 2**8 - 1)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
# pamqp reads and writes a longlong as signed; the protocol's (and ours) is unsigned.
# The two agree below 2**63, where pamqp can take part.
u63 = st.integers(0, 2**63 - 1)
# Whole seconds in UTC below 2**32 (pamqp reads larger numbers as milliseconds).
timestamps = st.integers(0, 2**32 - 1).map(
    lambda s: datetime.datetime.fromtimestamp(s, tz=datetime.UTC)
)
decimals = st.builds(
    lambda mantissa, scale: decimal.Decimal(mantissa).scaleb(-scale),
    st.integers(0, 2**31 - 1),
    st.integers(0, 20),
)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, width=32),
    decimals,
    st.text(max_size=40),
    timestamps,
    st.binary(max_size=20).map(bytearray),
    st.none(),
)
field_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(short_text(20), inner, max_size=4),
    ),
    max_leaves=12,
)
tables = st.dictionaries(short_text(30), field_values, max_size=6)


@st.composite
def properties(draw: st.DrawFn) -> commands.Basic.Properties:
    """Any subset of the 14 basic properties (cluster_id too, past pamqp's validation)."""
    props = commands.Basic.Properties()
    maybe = lambda s: draw(st.none() | s)  # noqa: E731
    props.content_type = maybe(short_text())
    props.content_encoding = maybe(short_text())
    props.headers = maybe(tables)
    props.delivery_mode = maybe(u8)
    props.priority = maybe(u8)
    props.correlation_id = maybe(short_text())
    props.reply_to = maybe(short_text())
    props.expiration = maybe(short_text())
    props.message_id = maybe(short_text())
    props.timestamp = maybe(timestamps)
    props.message_type = maybe(short_text())
    props.user_id = maybe(short_text())
    props.app_id = maybe(short_text())
    props.cluster_id = maybe(short_text())
    return props


def pamqp_raw_properties(props: commands.Basic.Properties) -> bytes:
    return ContentHeader(0, 0, props).marshal()[12:]


@contextmanager
def no_validation() -> Iterator[None]:
    """pamqp without its argument checks (exchange-name patterns, lengths, reserved values)."""
    with mock.patch.object(Frame, "validate", lambda self: None):
        patches = [
            mock.patch.object(cls, "validate", lambda self: None)
            for cls in commands.INDEX_MAPPING.values()
            if "validate" in vars(cls)
        ]
        for p in patches:
            p.start()
        try:
            yield
        finally:
            for p in patches:
                p.stop()


def pamqp_frame(channel: int, method: Any) -> bytes:
    with no_validation():
        return frame.marshal(method, channel)


def build(cls: type, **fields: Any) -> Any:
    """A pamqp command with the given fields, past its constructor's validation."""
    method = cls.__new__(cls)
    for name in cls.__slots__:
        setattr(method, name, fields.get(name, _DEFAULTS[cls.amqp_type(name)]))
    return method


_DEFAULTS = {
    "shortstr": "", "longstr": "", "octet": 0, "short": 0, "long": 0, "longlong": 0,
    "bit": False, "table": {}, "timestamp": None,
}  # fmt: skip


def pamqp_unmarshal(payload: bytes) -> Any:
    """pamqp's reading of a method payload (class/method ids first)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Basic.RecoverAsync
        method = commands.INDEX_MAPPING[struct.unpack_from(">I", payload)[0]]()
    method.unmarshal(payload[4:])
    return method


def fields(method: Any) -> dict[str, Any]:
    return {name: getattr(method, name) for name in method.__slots__}


# ============================================================ hot-path parsing
@SETTINGS
@given(exchange=short_text(), routing_key=short_text(), mandatory=st.booleans(),
       immediate=st.booleans(), prefix=st.binary(max_size=9))  # fmt: skip
def test_parse_publish_matches_pamqp(exchange, routing_key, mandatory, immediate, prefix) -> None:
    method = build(commands.Basic.Publish, exchange=exchange, routing_key=routing_key,
                   mandatory=mandatory, immediate=immediate)  # fmt: skip
    whole = pamqp_frame(1, method)
    payload = whole[7:-1]
    theirs = pamqp_unmarshal(payload)
    # Parsed in place, at an offset into a larger buffer, as the connection does.
    buf = prefix + whole
    start = len(prefix) + 7
    ours = codec.parse_publish(buf, start + 4, len(buf) - 1)
    assert ours == (theirs.exchange, theirs.routing_key, theirs.mandatory, theirs.immediate)
    assert ours == (exchange, routing_key, mandatory, immediate)


@SETTINGS
@given(exchange=st.binary(max_size=255), routing_key=st.binary(max_size=255))
def test_parse_publish_keeps_any_bytes(exchange: bytes, routing_key: bytes) -> None:
    """Names that are not UTF-8 (RabbitMQ does not check them) survive the round trip."""
    args = b"\x00\x00" + bytes([len(exchange)]) + exchange + bytes([len(routing_key)]) + routing_key
    payload = b"\x00\x3c\x00\x28" + args + b"\x01"
    ex, rk, mandatory, immediate = codec.parse_publish(payload, 4, len(payload))
    assert codec.encode_short(ex) + codec.encode_short(rk) == args[2:]
    assert (mandatory, immediate) == (True, False)


@SETTINGS
@given(args=st.binary(max_size=40))
def test_parse_publish_takes_only_whole_arguments(args: bytes) -> None:
    """Exactly the layout, or UndecodableMethod (RabbitMQ's 501 "cannot decode")."""
    payload = b"\x00\x3c\x00\x28" + args
    try:
        exchange, rk, _m, _i = codec.parse_publish(payload, 4, len(payload))
    except codec.UndecodableMethod as exc:
        assert exc.arguments == args
        return
    expected_len = 2 + 1 + len(codec.encode_short(exchange)) - 1 + 1 + len(
        codec.encode_short(rk)
    ) - 1 + 1
    assert len(args) == expected_len


@SETTINGS
@given(props=properties(), body_size=u64, class_id=st.sampled_from((60, 60, 60, 50, 10)),
       weight=st.sampled_from((0, 0, 1)), channel=u16)  # fmt: skip
def test_content_header_matches_pamqp(props, body_size, class_id, weight, channel) -> None:
    header = ContentHeader(weight, body_size, props)
    header.class_id = class_id
    whole = frame.marshal(header, channel)
    payload = whole[7:-1]
    theirs = ContentHeader()
    theirs.unmarshal(payload)
    ours = codec.parse_content_header(whole, 7, len(whole) - 1)
    assert ours[:3] == (theirs.class_id, theirs.weight, theirs.body_size)
    raw = ours[3]
    assert raw == payload[12:] == pamqp_raw_properties(props)  # kept exactly as received
    assert codec.check_properties(raw)
    assert codec.decode_properties(raw) == theirs.properties


@SETTINGS
@given(props=properties())
def test_encode_properties_matches_pamqp(props) -> None:
    raw = codec.encode_properties(props)
    assert raw == props.marshal() == pamqp_raw_properties(props)
    theirs = ContentHeader()
    theirs.unmarshal(ContentHeader(0, 0, props).marshal())
    assert codec.decode_properties(raw) == theirs.properties


@SETTINGS
@given(tag=u63, multiple=st.booleans(), requeue=st.booleans(),
       kind=st.sampled_from(("ack", "nack", "reject")), prefix=st.binary(max_size=5))  # fmt: skip
def test_parse_acknowledgements_match_pamqp(tag, multiple, requeue, kind, prefix) -> None:
    method = {
        "ack": lambda: commands.Basic.Ack(tag, multiple),
        "nack": lambda: commands.Basic.Nack(tag, multiple, requeue),
        "reject": lambda: commands.Basic.Reject(tag, requeue),
    }[kind]()
    whole = prefix + frame.marshal(method, 3)
    start = len(prefix) + 7
    theirs = pamqp_unmarshal(whole[start:-1])
    delivery_tag, bits = codec.parse_tag_bits(whole, start + 4, len(whole) - 1)
    assert delivery_tag == theirs.delivery_tag
    if kind == "ack":
        assert bool(bits & 1) == theirs.multiple
    elif kind == "nack":
        assert (bool(bits & 1), bool(bits & 2)) == (theirs.multiple, theirs.requeue)
    else:
        assert bool(bits & 1) == theirs.requeue


def test_longlongs_are_unsigned() -> None:
    """Delivery tags past 2**63 (where pamqp's signed longlong stops) read and write unsigned."""
    tag = 2**64 - 2
    ack = b"\x00\x3c\x00\x50" + struct.pack(">QB", tag, 1)
    assert codec.parse_tag_bits(ack, 4, len(ack)) == (tag, 1)
    assert codec.encode_ack(1, tag, True)[11:20] == struct.pack(">QB", tag, 1)
    deliver = codec.encode_deliver(1, b"\x01c", tag, False, b"\x00\x00", b"\x00\x00", b"x", 4096)
    assert struct.unpack_from(">Q", deliver[0], 13)[0] == tag
    payload = struct.pack(">HHQB", 60, 80, tag, 0)
    assert codec.decode_method(payload).delivery_tag == tag


# ============================================================ hot-path encoding
def pamqp_content(channel: int, props: commands.Basic.Properties, body: bytes, frame_max: int) -> bytes:
    """A content header and body frames as pamqp writes them (none for an empty body)."""
    data = frame.marshal(ContentHeader(0, len(body), props), channel)
    step = frame_max - 8
    for i in range(0, len(body), step):
        data += frame.marshal(ContentBody(body[i : i + step]), channel)
    return data


frame_maxes = st.sampled_from((4096, 4097, 8192, 131072))


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Empty, small, exactly one frame, or several frames' worth (for frame_max 4096)."""
    size = draw(st.sampled_from((0, 1, 100, 4087, 4088, 4089, 8176, 8177, 20000)) | st.integers(0, 9000))
    return bytes([draw(u8)]) * size


@SETTINGS
@given(channel=u16, consumer_tag=short_text(), delivery_tag=u63, redelivered=st.booleans(),
       exchange=short_text(), routing_key=short_text(), props=properties(), body=bodies(),
       frame_max=frame_maxes)  # fmt: skip
def test_encode_deliver_matches_pamqp(
    channel, consumer_tag, delivery_tag, redelivered, exchange, routing_key, props, body, frame_max
) -> None:
    raw_props = pamqp_raw_properties(props)
    ours = b"".join(
        codec.encode_deliver(
            channel,
            codec.encode_short(consumer_tag),
            delivery_tag,
            redelivered,
            codec.encode_short(exchange) + codec.encode_short(routing_key),
            raw_props,
            body,
            frame_max,
        )
    )
    deliver = build(commands.Basic.Deliver, consumer_tag=consumer_tag, delivery_tag=delivery_tag,
                    redelivered=redelivered, exchange=exchange, routing_key=routing_key)  # fmt: skip
    theirs = pamqp_frame(channel, deliver) + pamqp_content(channel, props, body, frame_max)
    assert ours == theirs


@SETTINGS
@given(channel=u16, props=properties(), body=bodies(), frame_max=frame_maxes)
def test_encode_content_matches_pamqp(channel, props, body, frame_max) -> None:
    ours = b"".join(codec.encode_content(channel, pamqp_raw_properties(props), body, frame_max))
    assert ours == pamqp_content(channel, props, body, frame_max)


@SETTINGS
@given(channel=u16, tag=u63, multiple=st.booleans(), requeue=st.booleans())
def test_encode_confirms_match_pamqp(channel, tag, multiple, requeue) -> None:
    assert codec.encode_ack(channel, tag, multiple) == frame.marshal(
        commands.Basic.Ack(tag, multiple), channel
    )
    assert codec.encode_nack(channel, tag, multiple, requeue) == frame.marshal(
        commands.Basic.Nack(tag, multiple, requeue), channel
    )
    assert codec.encode_nack(channel, tag, multiple) == frame.marshal(
        commands.Basic.Nack(tag, multiple, False), channel
    )


@SETTINGS
@given(channel=u16, code=u16, text=st.binary(max_size=255), class_id=u16, method_id=u16)
def test_encode_close_matches_pamqp(channel, code, text, class_id, method_id) -> None:
    ours = codec.encode_close(channel, code, text, class_id, method_id)
    if channel == 0:
        command = build(commands.Connection.Close, reply_code=code, reply_text="",
                        class_id=class_id, method_id=method_id)  # fmt: skip
    else:
        command = build(commands.Channel.Close, reply_code=code, reply_text="",
                        class_id=class_id, method_id=method_id)  # fmt: skip
    empty = pamqp_frame(channel, command)
    # The text's bytes go in as they are (pamqp would insist on UTF-8 text).
    assert ours[:7] == struct.pack(">BHI", 1, channel, len(empty) - 8 + len(text))
    assert ours[7:13] == empty[7:13]
    assert ours[13:] == bytes([len(text)]) + text + empty[14:]
    if _is_utf8(text):
        command.reply_text = text.decode()
        assert ours == pamqp_frame(channel, command)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ============================================================ cold-path decoding
_VALUES = {
    "shortstr": short_text(),
    "longstr": st.text(max_size=60),
    "octet": u8,
    "short": u16,
    "long": u32,
    "longlong": u63,
    "bit": st.booleans(),
    "table": tables,
}


@st.composite
def any_method(draw: st.DrawFn) -> Any:
    """Any method pamqp defines, every field random for its type."""
    index = draw(st.sampled_from(sorted(commands.INDEX_MAPPING)))
    cls = commands.INDEX_MAPPING[index]
    return build(cls, **{name: draw(_VALUES[cls.amqp_type(name)]) for name in cls.__slots__})


@SETTINGS
@given(method=any_method())
def test_decode_method_matches_pamqp(method) -> None:
    with no_validation():
        payload = struct.pack(">I", method.index) + method.marshal()
    ours = codec.decode_method(payload)
    theirs = pamqp_unmarshal(payload)
    assert type(ours) is type(theirs)
    assert fields(ours) == fields(theirs)


@SETTINGS
@given(method=any_method(), cut=st.integers(0, 1000), extra=st.binary(min_size=1, max_size=4))
def test_decode_method_takes_only_whole_arguments(method, cut, extra) -> None:
    """A payload cut short or with bytes left over is UndecodableMethod, never a crash."""
    with no_validation():
        args = method.marshal()
    for broken in (args[: cut % max(len(args), 1)], args + extra):
        payload = struct.pack(">I", method.index) + broken
        try:
            codec.decode_method(payload)
        except codec.UndecodableMethod as exc:
            assert exc.arguments == broken
        else:  # a cut that still parses: the layout ends where the bytes end
            assert broken != args + extra


@SETTINGS
@given(table=tables)
def test_parse_table_matches_pamqp(table) -> None:
    from pamqp import decode

    data = encode.field_table(table)
    _n, theirs = decode.field_table(data)
    assert codec.parse_table(data[4:]) == theirs
    codec.check_table(data, 4, len(data))  # the walker takes what the parser takes


@SETTINGS
@given(data=st.binary(max_size=80) | tables.map(lambda t: encode.field_table(t)[4:]))
def test_table_walker_agrees_with_the_parser(data: bytes) -> None:
    """check_table (the publish path's validation) and parse_table accept the same tables."""
    try:
        codec.parse_table(data)
        parsed = True
    except codec.BadFieldTable:
        parsed = False
    try:
        codec.check_table(data, 0, len(data))
        walked = True
    except codec.BadFieldTable:
        walked = False
    assert parsed == walked


@SETTINGS
@given(raw=st.binary(max_size=60) | properties().map(pamqp_raw_properties))
def test_properties_check_agrees_with_decode(raw: bytes) -> None:
    """check_properties is True exactly when decode_properties succeeds."""
    try:
        codec.decode_properties(raw)
        decoded = True
    except ValueError:
        decoded = False
    assert codec.check_properties(raw) == decoded
