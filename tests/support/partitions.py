"""Helpers for partitioned-queue tests: keyed messages, a fast publisher, non-blocking raw consumers.

A keyed message's body is `KEY:SEQ` (its key and its number among that key's
messages), and the key is also its routing key. `RawConsumer` speaks just
enough AMQP over a plain socket to consume with manual acks from one thread
alongside other consumers: `poll()` returns what has arrived without
waiting, so a test can drive a publisher and several consumers in one loop,
in an order it controls, fast enough for a hundred thousand messages.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from pamqp import commands, frame

from support.rawamqp import RawClient

DEADLINE = 10.0  # seconds any wait in these tests may take before it fails
_FRAME = struct.Struct(">BHI")
_DELIVER = b"\x00\x3c\x00\x3c"
_CANCEL_OK = b"\x00\x3c\x00\x1f"
_U64 = struct.Struct(">Q")
_ACK = struct.Struct(">BHIHHQBB")  # a whole Basic.Ack frame, frame-end octet included


class Delivery(NamedTuple):
    tag: int
    redelivered: bool
    key: str
    seq: int


def pump_until(conn: Any, predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Process a pika BlockingConnection's I/O until predicate() holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the broker")
        conn.process_data_events(time_limit=0.02)


def keyed_body(key: str, seq: int) -> bytes:
    return f"{key}:{seq}".encode()


def parse_body(body: bytes) -> tuple[str, int]:
    key, seq = body.decode().rsplit(":", 1)
    return key, int(seq)


def _short(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


def _frame(kind: int, payload: bytes) -> bytes:
    return _FRAME.pack(kind, 1, len(payload)) + payload + b"\xce"


def publish_frames(exchange: str, routing_key: str, body: bytes, persistent: bool = True) -> bytes:
    """The three frames of one Basic.Publish on channel 1, encoded by hand (pamqp is too slow here)."""
    method = b"\x00\x3c\x00\x28\x00\x00" + _short(exchange) + _short(routing_key) + b"\x00"
    header = struct.pack(">HHQHB", 60, 0, len(body), 0x1000, 2 if persistent else 1)
    return _frame(1, method) + _frame(2, header) + _frame(3, body)


def keyed_messages(keys: int, total: int, longest_run: int = 20, seed: int = 7) -> list[tuple[str, int]]:
    """(key, seq) for total messages over keys keys, in publish order.

    Keys come in runs of 1 to longest_run messages (every key first once, in
    a shuffled order, then at random), so a partition often holds several
    messages of one key in a row: what a consumer holds, the next one in
    line would take, were a partition handed over too early.
    """
    rng = random.Random(seed)
    order = list(range(keys))
    rng.shuffle(order)
    counts = [0] * keys
    out: list[tuple[str, int]] = []
    while len(out) < total:
        k = order.pop() if order else rng.randrange(keys)
        for _ in range(min(rng.randint(1, longest_run), total - len(out))):
            out.append((f"key-{k}", counts[k]))
            counts[k] += 1
    return out


class RawPublisher:
    """Publishes keyed messages to an exchange as fast as the socket takes them."""

    def __init__(self, port: int, exchange: str) -> None:
        self.client = RawClient(port)
        self.exchange = exchange

    def publish(self, messages: Iterable[tuple[str, int]], persistent: bool = True) -> None:
        data = b"".join(publish_frames(self.exchange, key, keyed_body(key, seq), persistent)
                        for key, seq in messages)  # fmt: skip
        self.client.sock.sendall(data)

    def close(self) -> None:
        self.client.close()


class RawConsumer:
    """One connection, one channel, one consumer with manual acks; reads without blocking."""

    def __init__(self, port: int, queue: str, prefetch: int, name: str) -> None:
        self.name = name
        client = RawClient(port)
        client.send(1, commands.Basic.Qos(prefetch_count=prefetch))
        client._expect(commands.Basic.QosOk)
        client.send(1, commands.Basic.Consume(queue=queue, consumer_tag=name))
        client._expect(commands.Basic.ConsumeOk)
        self.client = client
        self.sock = client.sock
        self.sock.setblocking(False)
        self.buf = client.buf[client.pos :]
        self.cancelled = False  # Basic.CancelOk came back
        self.closed = False
        self.last_tag = 0
        self._acked_tag = 0

    def poll(self) -> list[Delivery]:
        """The deliveries that have arrived, without waiting."""
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError(f"the broker closed {self.name}'s connection")
                self.buf += chunk
        except BlockingIOError:
            pass
        out: list[Delivery] = []
        buf, pos, end = self.buf, 0, len(self.buf)
        while end - pos >= 7:
            kind, _channel, size = _FRAME.unpack_from(buf, pos)
            frame_end = pos + size + 8
            if frame_end > end:
                break
            start = pos + 7
            if kind == 1 and buf[start : start + 4] == _DELIVER:
                # A deliver, its content header and its one body frame (bodies here are small).
                header_size = _FRAME.unpack_from(buf, frame_end)[2] if end - frame_end >= 7 else -1
                body_at = frame_end + header_size + 8
                if header_size < 0 or end - body_at < 7:
                    break
                body_size = _FRAME.unpack_from(buf, body_at)[2]
                if body_at + body_size + 8 > end:
                    break
                tag_at = start + 5 + buf[start + 4]
                key, seq = parse_body(buf[body_at + 7 : body_at + 7 + body_size])
                out.append(Delivery(_U64.unpack_from(buf, tag_at)[0], bool(buf[tag_at + 8]), key, seq))
                pos = body_at + body_size + 8
                continue
            if kind == 1 and buf[start : start + 4] == _CANCEL_OK:
                self.cancelled = True
            pos = frame_end
        self.buf = buf[pos:]
        if out:
            self.last_tag = out[-1].tag
        return out

    def ack_through(self, tag: int) -> None:
        """Ack every delivery up to tag (one multiple ack); nothing when already done."""
        if tag > self._acked_tag:
            self._send(_ACK.pack(1, 1, 13, 60, 80, tag, 1, 0xCE))
            self._acked_tag = tag

    def ack_all(self) -> None:
        """Ack every delivery received so far."""
        self.ack_through(self.last_tag)

    def cancel(self) -> None:
        self._send(frame.marshal(commands.Basic.Cancel(consumer_tag=self.name), 1))

    def close(self) -> None:
        """Drop the connection: the broker requeues whatever is unacked."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _send(self, data: bytes) -> None:
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)
