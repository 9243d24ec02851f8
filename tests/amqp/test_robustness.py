"""Hostile byte streams never break the server: each ends in the right close, or a dropped socket.

Over 10,000 generated streams (garbage, wrong headers, truncated and
oversized frames, wrong frame types, unknown method ids, bad field tables
and properties, content out of order, mutated valid traffic), each split
at random points into many writes, go through the `Connection` protocol
object in-process; a few hundred more go over real sockets to a running
server while a well-behaved client keeps doing publish/consume round trips
on it. Every answer must be well-formed frames ending in a Connection.Close
with a sensible code, or the protocol header, or nothing (a dropped socket);
nothing may be logged at ERROR (an "internal error" is a bug of ours), and
the server must go on serving.

The streams come from a seeded generator (and hypothesis, derandomized), so
a failure names the stream's index and bytes and can be replayed.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import random
import socket
import struct
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands, encode, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from support.amqp_server import EchoHandler, ServerThread

from warrenmq.amqp import ChannelError, Connection, ConnectionError, ConnectionHandler, State, codec
from warrenmq.amqp.constants import PROTOCOL_HEADER, REPLY_NAMES

IN_PROCESS_STREAMS = 10_000
TCP_STREAMS = 10_000
TCP_BATCH = 50  # the good client checks in after every batch
SEED = 20240917

ACCEPTED_HEADERS = (PROTOCOL_HEADER, b"AMQP\x01\x01\x00\x09")
# The codes a hostile stream may be answered with (404/406 from the handler).
SENSIBLE_CODES = {403, 404, 406, 501, 503, 504, 505, 530, 540, 541}


# =================================================================== handlers
class FuzzHandler(ConnectionHandler):
    """guest/guest on '/'; answers a few methods, echoes publishes; never fails on odd input."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.consuming: set[int] = set()

    def authenticate(self, mechanism: str, username: str, password: str) -> bool:
        return (username, password) == ("guest", "guest")

    def open_vhost(self, vhost: str) -> None:
        if vhost != "/":
            raise ConnectionError(530, f"vhost {vhost} not found")

    def on_method(self, channel: int, method: Any) -> None:
        name = method.name
        if name == "Queue.Declare":
            if method.queue == "missing":
                raise ChannelError(404, "no queue 'missing' in vhost '/'")
            if not method.nowait:
                self.conn.send_method(channel, commands.Queue.DeclareOk("q", 0, 0))
        elif name == "Basic.Consume":
            self.consuming.add(channel)
            self.conn.send_method(channel, commands.Basic.ConsumeOk("ctag"))
        elif name == "Basic.Qos":
            self.conn.send_method(channel, commands.Basic.QosOk())
        elif name == "Confirm.Select" and not method.nowait:
            self.conn.send_method(channel, commands.Confirm.SelectOk())

    def on_publish(self, channel, exchange, routing_key, mandatory, immediate, properties, body):
        if channel in self.consuming:
            names = codec.encode_short(exchange) + codec.encode_short(routing_key)
            self.conn.send_deliver(channel, b"\x04ctag", 1, False, names, properties, body)

    def channel_closed(self, channel: int) -> None:
        self.consuming.discard(channel)


class FuzzEchoHandler(EchoHandler):
    """The echo handler, with the fuzzer's queue names answered by one safe name."""

    def on_method(self, channel: int, method: Any) -> None:
        if method.name == "Queue.Declare" and method.queue not in ("missing", "good"):
            if not method.nowait:
                self.conn.send_method(channel, commands.Queue.DeclareOk("q", 0, 0))
            return
        super().on_method(channel, method)


# ================================================================ log capture
class ErrorLog(logging.Handler):
    """Records ERROR and above from the wire layer and asyncio (any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger("warrenmq.amqp"), logging.getLogger("asyncio")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


# ================================================================== frames
def raw(ftype: int, ch: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", ftype, ch, len(payload)) + payload + end


def m(ch: int, command: Any) -> bytes:
    return frame.marshal(command, ch)


def header_frame(ch: int, size: int, props: commands.Basic.Properties | None = None) -> bytes:
    return frame.marshal(ContentHeader(0, size, props or commands.Basic.Properties()), ch)


def body_frame(ch: int, data: bytes) -> bytes:
    return frame.marshal(ContentBody(data), ch)


def start_ok(user: str = "guest", password: str = "guest", mechanism: str = "PLAIN") -> bytes:
    return m(0, commands.Connection.StartOk(
        {"product": "fuzz", "capabilities": {"authentication_failure_close": True}},
        mechanism, f"\0{user}\0{password}", "en_US"))  # fmt: skip


def handshake(frame_max: int = 131072, channel_max: int = 2047, channels: int = 1) -> bytes:
    """Everything a client sends up to open channels 1..channels (answers are not awaited)."""
    data = PROTOCOL_HEADER + start_ok()
    data += m(0, commands.Connection.TuneOk(channel_max, frame_max, 0))
    data += m(0, commands.Connection.Open("/"))
    for n in range(1, channels + 1):
        data += m(n, commands.Channel.Open())
    return data


# ================================================================ generator
class StreamGenerator:
    """Hostile streams of many kinds from one seeded random generator."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.kinds: list[tuple[str, Callable[[], bytes]]] = [
            ("garbage", self.garbage),
            ("bad-header", self.bad_header),
            ("handshake", self.handshake_fuzz),
            ("random-frames", self.random_frames),
            ("sizes", self.sizes),
            ("unknown-ids", self.unknown_ids),
            ("method-args", self.method_args),
            ("tables", self.tables),
            ("deep-tables", self.deep_tables),
            ("properties", self.properties),
            ("content-order", self.content_order),
            ("mutated-valid", self.mutated_valid),
            ("valid-then-garbage", self.valid_then_garbage),
        ]

    def stream(self) -> tuple[str, bytes]:
        kind, make = self.r.choice(self.kinds)
        return kind, make()

    def splits(self, data: bytes) -> list[bytes]:
        """data cut at random points: byte by byte, a few pieces, or many."""
        r = self.r
        mode = r.random()
        if len(data) < 64 and mode < 0.15:
            return [data[i : i + 1] for i in range(len(data))]
        count = r.choice((1, 2, 3, 5, 10, 30))
        cuts = sorted(r.sample(range(1, len(data)), min(count, len(data) - 1))) if len(data) > 1 else []
        pieces, last = [], 0
        for cut in [*cuts, len(data)]:
            pieces.append(data[last:cut])
            last = cut
        return [p for p in pieces if p]

    # ---------------------------------------------------------- pieces
    def rbytes(self, lo: int = 0, hi: int = 64) -> bytes:
        return self.r.randbytes(self.r.randint(lo, hi))

    def channel(self) -> int:
        return self.r.choice((0, 1, 1, 1, 2, 5, 2047, 2048, 65535))

    def short(self) -> str:
        r = self.r
        return r.choice(("", "q", "missing", "amq.direct", "x" * r.randint(0, 255), "é€", "a b"))

    def value(self, depth: int = 0) -> Any:
        """A random field value pamqp can encode (tables and arrays nest)."""
        r = self.r
        kinds = ["int", "str", "bool", "float", "decimal", "time", "bytes", "none"]
        if depth < 3:
            kinds += ["table", "array"]
        kind = r.choice(kinds)
        if kind == "int":
            return r.choice((0, 1, -1, 127, -129, 40000, 2**31, -(2**40), 2**63 - 1))
        if kind == "str":
            return self.short()
        if kind == "bool":
            return r.random() < 0.5
        if kind == "float":
            return r.uniform(-1e9, 1e9)
        if kind == "decimal":
            return decimal.Decimal(r.randint(0, 10**6)).scaleb(-r.randint(0, 5))
        if kind == "time":
            return datetime.datetime.fromtimestamp(r.randint(0, 2**32 - 1), tz=datetime.UTC)
        if kind == "bytes":
            return bytearray(self.rbytes(0, 16))
        if kind == "none":
            return None
        if kind == "table":
            return self.table_dict(depth + 1)
        return [self.value(depth + 1) for _ in range(r.randint(0, 4))]

    def table_dict(self, depth: int = 0) -> dict[str, Any]:
        return {f"k{i}{self.short()[:8]}": self.value(depth) for i in range(self.r.randint(0, 5))}

    def table_bytes(self) -> bytes:
        """A field table (with its length): valid, corrupted, or made up."""
        r = self.r
        good = encode.field_table(self.table_dict())
        choice = r.random()
        if choice < 0.3:
            return good
        if choice < 0.6:
            return self.mutate(good, r.randint(1, 3))
        items = b""
        for _ in range(r.randint(1, 4)):
            name = self.rbytes(0, 8)
            items += bytes([len(name) + r.choice((0, 0, 1, 50))]) + name
            items += bytes([r.choice(b"tbBsuIilLfdDSATFVx\x00Zq")]) + self.rbytes(0, 12)
        declared = len(items) + r.choice((0, 0, 0, -1, 1, 1000))
        return struct.pack(">I", max(declared, 0)) + items

    def props_bytes(self) -> bytes:
        """Raw content-header properties: valid, corrupted, or random flags and values."""
        r = self.r
        props = commands.Basic.Properties(
            content_type=r.choice((None, "text/plain")),
            headers=self.table_dict() if r.random() < 0.5 else None,
            delivery_mode=r.choice((None, 1, 2)),
            priority=r.choice((None, 0, 9)),
            timestamp=r.choice((None, datetime.datetime(2021, 5, 1, tzinfo=datetime.UTC))),
            message_id=r.choice((None, "id-1")),
        )
        good = codec.encode_properties(props)
        choice = r.random()
        if choice < 0.3:
            return good
        if choice < 0.7:
            return self.mutate(good, r.randint(1, 3))
        flags = r.getrandbits(16)
        return struct.pack(">H", flags) + self.rbytes(0, 40)

    def mutate(self, data: bytes, times: int) -> bytes:
        """Flip, drop, insert, duplicate or cut bytes."""
        r = self.r
        buf = bytearray(data)
        for _ in range(times):
            if not buf:
                buf += self.rbytes(1, 8)
                continue
            op = r.randrange(6)
            i = r.randrange(len(buf))
            if op == 0:
                buf[i] ^= 1 << r.randrange(8)
            elif op == 1:
                buf[i] = r.randrange(256)
            elif op == 2:
                del buf[i : i + r.randint(1, 8)]
            elif op == 3:
                buf[i:i] = self.rbytes(1, 8)
            elif op == 4:
                j = min(len(buf), i + r.randint(1, 16))
                buf[i:i] = buf[i:j]
            else:
                del buf[i:]
        return bytes(buf)

    def valid_commands(self, ch: int) -> bytes:
        """A few commands a real client might send on channel ch."""
        r = self.r
        options = [
            lambda: m(ch, commands.Queue.Declare(queue=r.choice(("q", "missing", "")))),
            lambda: m(ch, commands.Queue.Bind(queue="q", exchange="amq.direct", routing_key="k")),
            lambda: m(ch, commands.Exchange.Declare(exchange="x", exchange_type="direct")),
            lambda: m(ch, commands.Basic.Qos(prefetch_count=r.randint(0, 100))),
            lambda: m(ch, commands.Basic.Consume(queue="q")),
            lambda: m(ch, commands.Basic.Cancel(consumer_tag="ctag")),
            lambda: m(ch, commands.Basic.Ack(r.randint(0, 5), r.random() < 0.5)),
            lambda: m(ch, commands.Basic.Nack(r.randint(0, 5), False, True)),
            lambda: m(ch, commands.Basic.Reject(r.randint(0, 5), False)),
            lambda: m(ch, commands.Confirm.Select()),
            lambda: m(ch, commands.Channel.Flow(True)),
            lambda: m(ch, commands.Channel.Close(200, "bye", 0, 0)),
            lambda: m(ch, commands.Channel.CloseOk()),
            lambda: m(ch, commands.Channel.Open()),
            lambda: self.publish(ch),
            lambda: self.publish(ch),
        ]
        return b"".join(r.choice(options)() for _ in range(r.randint(1, 6)))

    def publish(self, ch: int) -> bytes:
        r = self.r
        body = self.rbytes(0, 300)
        data = m(ch, commands.Basic.Publish(exchange=r.choice(("", "amq.direct")), routing_key="q"))
        data += header_frame(ch, len(body))
        if body:
            step = r.choice((len(body), 50, 7))
            for i in range(0, len(body), step):
                data += body_frame(ch, body[i : i + step])
        return data

    # ---------------------------------------------------------- kinds
    def garbage(self) -> bytes:
        prefix = PROTOCOL_HEADER if self.r.random() < 0.5 else b""
        return prefix + self.rbytes(1, 200)

    def bad_header(self) -> bytes:
        r = self.r
        head = r.choice((
            b"AMQP" + self.rbytes(4, 4), b"AMQP\x00\x00\x09\x00", b"AMQP\x01\x01\x08\x00",
            b"AMQP\x03\x01\x00\x00", b"GET / HTTP/1.1\r\n", self.rbytes(8, 8),
            b"AMQP\x01\x01\x00\x09",
        ))  # fmt: skip
        return head + self.rbytes(0, 40)

    def handshake_fuzz(self) -> bytes:
        r = self.r
        steps = [
            start_ok(r.choice(("guest", "x")), r.choice(("guest", "nope"))),
            m(0, commands.Connection.TuneOk(r.choice((0, 1, 10, 2047, 3000)),
                                            r.choice((0, 1000, 4095, 4096, 131072, 200000)),
                                            r.choice((0, 60)))),
            m(0, commands.Connection.Open(r.choice(("/", "nope")))),
            m(1, commands.Channel.Open()),
        ]  # fmt: skip
        data = PROTOCOL_HEADER + b"".join(steps[: r.randint(0, 4)])
        if r.random() < 0.7:
            data = data[:8] + self.mutate(data[8:], r.randint(1, 3))
        return data + self.rbytes(0, 20)

    def random_frames(self) -> bytes:
        r = self.r
        data = handshake(channels=r.randint(0, 2))
        for _ in range(r.randint(1, 8)):
            ftype = r.choice((1, 1, 2, 3, 8, 0, 4, 9, 255))
            payload = r.choice((
                self.rbytes(0, 30), struct.pack(">HH", 50, 10) + self.rbytes(0, 20),
                struct.pack(">HHQ", 60, 0, r.randint(0, 100)) + self.rbytes(0, 10), b"",
            ))  # fmt: skip
            end = b"\xce" if r.random() < 0.9 else bytes([r.randrange(256)])
            data += raw(ftype, self.channel(), payload, end)
        return data

    def sizes(self) -> bytes:
        r = self.r
        fm = r.choice((4096, 8192, 131072))
        data = handshake(frame_max=fm)
        size = r.choice((fm - 8, fm - 7, fm, fm + 1, 2**31, 2**32 - 1, 0, 3))
        data += struct.pack(">BHI", r.choice((1, 2, 3, 8)), self.channel(), size)
        return data + self.rbytes(0, min(size, 300) + 2)

    def unknown_ids(self) -> bytes:
        r = self.r
        data = handshake()
        for _ in range(r.randint(1, 3)):
            ids = (r.choice((10, 20, 30, 40, 50, 60, 85, 90, 99, 0, 65535)), r.randrange(0, 200))
            data += raw(1, self.channel(), struct.pack(">HH", *ids) + self.rbytes(0, 20))
        return data

    def method_args(self) -> bytes:
        """Known methods with truncated, padded or garbled arguments."""
        r = self.r
        data = handshake()
        index, cls = r.choice(list(commands.INDEX_MAPPING.items()))
        payload = struct.pack(">I", index) + encode_defaults(cls)
        payload = self.mutate(payload[:4] + payload[4:], r.randint(1, 3))
        if len(payload) >= 4:
            payload = struct.pack(">I", index) + payload[4:]
        return data + raw(1, r.choice((0, 1, 1, 3)), payload)

    def tables(self) -> bytes:
        r = self.r
        data = handshake()
        table = self.table_bytes()
        if r.random() < 0.5:
            args = b"\x00\x00\x01q" + bytes([r.randrange(32)]) + table
            return data + raw(1, 1, struct.pack(">HH", 50, 10) + args)
        args = b"\x00\x00\x01x\x06direct" + bytes([r.randrange(32)]) + table
        return data + raw(1, 1, struct.pack(">HH", 40, 10) + args)

    def deep_tables(self) -> bytes:
        """Tables and arrays nested hundreds or thousands deep, in arguments or headers."""
        r = self.r
        value = b"V"
        for _ in range(r.choice((50, 99, 100, 101, 500, 5000))):
            if r.random() < 0.5:
                value = b"F" + struct.pack(">I", 2 + len(value)) + b"\x01k" + value
            else:
                value = b"A" + struct.pack(">I", len(value)) + value
        table = struct.pack(">I", 2 + len(value)) + b"\x01k" + value
        data = handshake()
        if r.random() < 0.5:
            return data + raw(1, 1, struct.pack(">HH", 50, 10) + b"\x00\x00\x01q\x00" + table)
        data += m(1, commands.Basic.Publish(exchange="", routing_key="q"))
        return data + raw(2, 1, struct.pack(">HHQH", 60, 0, 0, 0x2000) + table)

    def properties(self) -> bytes:
        r = self.r
        data = handshake()
        if r.random() < 0.5:
            data += m(1, commands.Basic.Consume(queue="q"))
        body = self.rbytes(0, 50)
        data += m(1, commands.Basic.Publish(exchange="", routing_key="q"))
        data += raw(2, 1, struct.pack(">HHQ", 60, 0, len(body)) + self.props_bytes())
        return data + (body_frame(1, body) if body else b"")

    def content_order(self) -> bytes:
        r = self.r
        data = handshake(channels=2)
        parts = [
            m(1, commands.Basic.Publish(routing_key="q")),
            header_frame(1, r.choice((0, 5, 10))),
            body_frame(1, b"12345"),
            body_frame(1, b"6789012"),
            m(1, commands.Queue.Declare(queue="q")),
            m(2, commands.Basic.Publish(routing_key="q")),
            header_frame(2, 5),
            body_frame(2, b"abcde"),
            raw(8, r.choice((0, 1)), b""),
            m(r.choice((1, 2, 3)), commands.Basic.Deliver("c", 1, False, "", "q")),
        ]
        return data + b"".join(r.choice(parts) for _ in range(r.randint(2, 10)))

    def mutated_valid(self) -> bytes:
        r = self.r
        data = handshake(channels=2) + self.valid_commands(1) + self.valid_commands(2)
        cut = r.randrange(8, len(data))  # leave the protocol header alone
        return data[:cut] + self.mutate(data[cut:], r.randint(1, 4))

    def valid_then_garbage(self) -> bytes:
        return handshake(channels=2) + self.valid_commands(1) + self.rbytes(1, 64)


def encode_defaults(cls: type) -> bytes:
    """The arguments of a method with pamqp's defaults (a valid payload to corrupt)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Basic.RecoverAsync
        try:
            return cls().marshal()
        except (TypeError, ValueError):
            return b""


# ============================================================== the answers
def parse_answer(data: bytes) -> list[tuple]:
    """The server's bytes as events; fails on anything malformed."""
    events: list[tuple] = []
    pos = 0
    if data.startswith(b"AMQP"):
        events.append(("header", data[:8]))
        pos = 8
    while pos < len(data):
        assert len(data) - pos >= 8, f"truncated frame in the answer: {data[pos:]!r}"
        ftype, ch, size = struct.unpack_from(">BHI", data, pos)
        end = pos + 7 + size
        assert end < len(data) and data[end] == 0xCE, "bad frame in the answer"
        payload = data[pos + 7 : end]
        if ftype == 1:
            ids = struct.unpack_from(">HH", payload)
            if ids in ((10, 50), (20, 40)):
                code, n = struct.unpack_from(">HB", payload, 4)
                text = payload[7 : 7 + n]
                close_ids = struct.unpack_from(">HH", payload, 7 + n)
                assert 7 + n + 4 == len(payload)
                events.append(("close", ch, code, text, close_ids))
            else:
                events.append(("method", ch, codec.decode_method(payload).name))
        else:
            events.append(("frame", ch, ftype))
        pos = end + 1
    return events


def check_answer(stream: bytes, events: list[tuple]) -> str:
    """The outcome's kind after checking it is one a hostile stream may get."""
    if stream[:8] not in ACCEPTED_HEADERS and len(stream) >= 8:
        assert events == [("header", PROTOCOL_HEADER)], events
        return "header"
    closes = [e for e in events if e[0] == "close" and e[1] == 0]
    assert len(closes) <= 1, closes
    for event in events:
        if event[0] == "close":
            _, ch, code, text, _ids = event
            assert code in SENSIBLE_CODES, event
            assert text.startswith(REPLY_NAMES[code].encode()), event
    if closes:
        # Nothing but Close-Ok (to a crossing Close) after the connection's Close.
        after = events[events.index(closes[0]) + 1 :]
        assert all(e[:3] == ("method", 0, "Connection.CloseOk") for e in after), after
        return f"close-{closes[0][2]}"
    return "no-close"


def run_in_process(stream: bytes, pieces: list[bytes]) -> str:
    conn = Connection(FuzzHandler(None))  # type: ignore[arg-type]
    conn.handler.conn = conn
    out: list[bytes] = []
    for piece in pieces:
        conn.receive_data(piece)
        out += conn.data_to_send()
        if conn.state is State.CLOSED:
            break
    kind = check_answer(stream, parse_answer(b"".join(out)))
    if conn.state is State.CLOSING:
        assert kind.startswith("close-")
        # The client's Close-Ok (ends it, unless it lands in a partial frame left pending).
        conn.receive_data(m(0, commands.Connection.CloseOk()))
    elif conn.state is State.CLOSED:
        assert conn.close_transport
        if kind == "no-close":
            kind = "dropped"
    else:
        kind = "incomplete"  # a valid prefix: the peer just stops here
    conn.connection_lost(None)
    return kind


# ================================================================ in-process
def test_hostile_streams_in_process(error_log: ErrorLog) -> None:
    gen = StreamGenerator(SEED)
    outcomes: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    for index in range(IN_PROCESS_STREAMS):
        kind, stream = gen.stream()
        pieces = gen.splits(stream)
        try:
            outcome = run_in_process(stream, pieces)
            assert not error_log.records, error_log.text()
        except AssertionError as exc:
            raise AssertionError(f"stream {index} ({kind}): {stream.hex()}\n{exc}") from None
        outcomes[outcome] += 1
        by_kind.setdefault(kind, Counter())[outcome] += 1
    # The generator reaches every way of ending: each code, the header, dropped sockets.
    for expected in ("header", "dropped", "close-501", "close-503", "close-504", "close-505",
                     "close-530", "close-540", "close-541", "close-403"):  # fmt: skip
        assert outcomes[expected] > 0, (expected, outcomes)
    # Most streams end in an answer. The rest hold no error the server can see
    # yet (a frame still short of its declared size, or traffic that is valid
    # after all: a corrupted table that still parses, a publish whose random
    # properties happen to be good); the client's hang-up ends those.
    assert outcomes["incomplete"] < IN_PROCESS_STREAMS * 0.25, (outcomes, by_kind)


def test_splitting_does_not_change_the_answer() -> None:
    """The same stream, whole or in pieces, gets the same bytes back."""
    gen = StreamGenerator(SEED + 1)
    for _ in range(1500):
        _kind, stream = gen.stream()
        answers = []
        for pieces in ([stream], gen.splits(stream), [stream[i : i + 1] for i in range(len(stream))]):
            conn = Connection(FuzzHandler(None))  # type: ignore[arg-type]
            conn.handler.conn = conn
            out = b""
            for piece in pieces:
                conn.receive_data(piece)
                out += b"".join(conn.data_to_send())
            answers.append((out, conn.state))
        assert answers[0] == answers[1] == answers[2], stream.hex()


@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    prefix_len=st.integers(0, 400),
    garbage=st.binary(min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 500), max_size=12),
)
def test_valid_prefix_then_garbage(prefix_len: int, garbage: bytes, cuts: list[int]) -> None:
    """Any cut of a valid session followed by garbage, split anywhere, is answered sanely."""
    valid = handshake(channels=2) + VALID_SESSION
    stream = valid[: max(8, prefix_len)] + garbage
    points = sorted({c for c in cuts if 0 < c < len(stream)})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    error_log = ErrorLog()
    logger = logging.getLogger("warrenmq.amqp")
    logger.addHandler(error_log)
    try:
        run_in_process(stream, pieces)
    finally:
        logger.removeHandler(error_log)
    assert not error_log.records, error_log.text()


VALID_SESSION = (
    m(1, commands.Queue.Declare(queue="q", arguments={"x-max-length": 10, "x-args": {"a": [1, "b"]}}))
    + m(1, commands.Basic.Consume(queue="q"))
    + m(1, commands.Basic.Publish(routing_key="q"))
    + header_frame(1, 11, commands.Basic.Properties(content_type="text/plain", headers={"h": 1}))
    + body_frame(1, b"hello")
    + body_frame(1, b" world")
    + m(1, commands.Basic.Ack(1, False))
    + m(2, commands.Queue.Declare(queue="missing"))
    + m(2, commands.Channel.CloseOk())
)


# ===================================================================== TCP
def tcp_stream(port: int, pieces: list[bytes]) -> tuple[bytes, bool]:
    """Send pieces as separate writes, half-close, read until the server hangs up.

    Returns (bytes read, whether the connection was reset): a server that
    closes with unread input resets the connection, which counts as a
    dropped socket (RabbitMQ's answer to many of these too).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    received = b""
    reset = False
    try:
        try:
            for piece in pieces:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN: the server hung up first
            reset = True
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, reset
            received += chunk
    finally:
        sock.close()


class GoodClient:
    """pika, consuming what it publishes through the echo handler."""

    def __init__(self, port: int) -> None:
        params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0, blocked_connection_timeout=None)
        self.conn = pika.BlockingConnection(params)
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()
        self.ch.queue_declare("good")
        self.got: list[bytes] = []
        self.ch.basic_consume("good", lambda ch, method, props, body: self.got.append(body),
                              auto_ack=True)  # fmt: skip
        self.sent = 0

    def round_trip(self) -> None:
        self.sent += 1
        body = f"message {self.sent}".encode()
        self.ch.basic_publish("", "good", body, pika.BasicProperties(headers={"n": self.sent}))
        deadline = time.monotonic() + 10
        while len(self.got) < self.sent:
            assert time.monotonic() < deadline, "the good client's message did not come back"
            self.conn.process_data_events(time_limit=0.05)
        assert self.got[-1] == body

    def close(self) -> None:
        self.conn.close()


def test_hostile_streams_over_tcp_with_a_good_client(error_log: ErrorLog) -> None:
    gen = StreamGenerator(SEED + 2)
    streams = [gen.stream()[1] for _ in range(TCP_STREAMS)]
    plans = [(s, gen.splits(s)) for s in streams]
    outcomes: Counter[str] = Counter()
    with ServerThread(handler_factory=FuzzEchoHandler) as server:
        good = GoodClient(server.port)
        try:
            good.round_trip()
            with ThreadPoolExecutor(8) as pool:
                for start in range(0, len(plans), TCP_BATCH):
                    batch = plans[start : start + TCP_BATCH]
                    futures = [pool.submit(tcp_stream, server.port, pieces) for _s, pieces in batch]
                    while not all(f.done() for f in futures):
                        good.round_trip()  # concurrently with the hostile streams
                    for (stream, _pieces), future in zip(batch, futures, strict=True):
                        received, reset = future.result()
                        try:
                            outcome = check_tcp_answer(stream, received, reset)
                        except AssertionError as exc:
                            raise AssertionError(f"stream {stream.hex()}:\n{exc}") from None
                        outcomes[outcome] += 1
                    good.round_trip()
                    assert not error_log.records, error_log.text()
            good.round_trip()
            assert server.thread.is_alive()
        finally:
            good.close()
        # Still serving: a fresh client gets through the whole handshake.
        fresh = GoodClient(server.port)
        fresh.round_trip()
        fresh.close()
    assert not error_log.records, error_log.text()
    assert outcomes["header"] and sum(v for k, v in outcomes.items() if k.startswith("close-"))


def check_tcp_answer(stream: bytes, received: bytes, reset: bool) -> str:
    if reset:
        # Whatever arrived before the reset is still well-formed.
        cut = complete_prefix(received)
        parse_answer(received[:cut])
        return "reset"
    return check_answer(stream, parse_answer(received))


def complete_prefix(data: bytes) -> int:
    """The length of the whole frames (and header) at the start of data."""
    pos = 8 if data.startswith(b"AMQP") and len(data) >= 8 else 0
    while len(data) - pos >= 7:
        size = struct.unpack_from(">I", data, pos + 3)[0]
        if len(data) < pos + size + 8:
            break
        pos += size + 8
    return pos
