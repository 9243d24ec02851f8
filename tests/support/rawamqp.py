"""A minimal blocking AMQP client on a plain socket, for loads no library client can drive fast.

It does the handshake with pamqp, then writes pre-encoded publish frames in
large chunks and counts deliveries with a hand-written frame reader, so a
test can push or drain a million messages in seconds.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from pamqp import body as pbody
from pamqp import commands, frame, header
from pamqp.heartbeat import Heartbeat

FRAME_HEADER = struct.Struct(">BHI")


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self._expect(commands.Connection.Start)
        self.send(0, commands.Connection.StartOk(
            client_properties={"product": "rawamqp"}, mechanism="PLAIN",
            response="\x00guest\x00guest", locale="en_US",
        ))  # fmt: skip
        tune = self._expect(commands.Connection.Tune)
        self.frame_max = tune.frame_max
        self.send(0, commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        self.send(0, commands.Connection.Open("/"))
        self._expect(commands.Connection.OpenOk)
        self.send(1, commands.Channel.Open())
        self._expect(commands.Channel.OpenOk)

    # ----------------------------------------------------------- framing
    def send(self, channel: int, method) -> None:
        self.sock.sendall(frame.marshal(method, channel))

    def _read_frame(self) -> tuple[int, int, bytes]:
        """The next frame; the buffer is consumed by offset, compacted only on refill."""
        while len(self.buf) - self.pos < 7:
            self._fill()
        ftype, channel, size = FRAME_HEADER.unpack_from(self.buf, self.pos)
        while len(self.buf) - self.pos < size + 8:
            self._fill()
        start = self.pos + 7
        payload = self.buf[start : start + size]
        self.pos = start + size + 1
        return ftype, channel, payload

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0

    def read_method(self):
        while True:
            raw = b""
            ftype, channel, payload = self._read_frame()
            raw = FRAME_HEADER.pack(ftype, channel, len(payload)) + payload + b"\xce"
            if ftype == 1:
                return frame.unmarshal(raw)[2]

    def _expect(self, cls):
        method = self.read_method()
        if not isinstance(method, cls):
            raise AssertionError(f"expected {cls.__name__}, got {method!r}")
        return method

    # ------------------------------------------------------------- usage
    def declare(self, queue: str, durable: bool = True, passive: bool = False) -> int:
        """Declare a queue; returns its message count."""
        self.send(1, commands.Queue.Declare(queue=queue, durable=durable, passive=passive))
        return self._expect(commands.Queue.DeclareOk).message_count

    def publish_many(self, queue: str, body: bytes, count: int, persistent: bool = True,
                     chunk: int = 2000) -> None:  # fmt: skip
        """Publish count copies of body to queue (default exchange) as fast as the socket takes them."""
        props = commands.Basic.Properties(delivery_mode=2 if persistent else 1)
        one = (
            frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
            + frame.marshal(header.ContentHeader(0, len(body), props), 1)
            + frame.marshal(pbody.ContentBody(body), 1)
        )
        block = one * chunk
        sent = 0
        while sent + chunk <= count:
            self.sock.sendall(block)
            sent += chunk
        if count - sent:
            self.sock.sendall(one * (count - sent))

    def consume_count(self, queue: str, expected: int, prefetch: int = 0) -> int:
        """Consume with no-ack until `expected` deliveries arrived; returns the count."""
        if prefetch:
            self.send(1, commands.Basic.Qos(prefetch_count=prefetch))
            self._expect(commands.Basic.QosOk)
        self.send(1, commands.Basic.Consume(queue=queue, consumer_tag="raw", no_ack=True))
        self._expect(commands.Basic.ConsumeOk)
        count = 0
        while count < expected:
            ftype, _channel, payload = self._read_frame()
            if ftype == 1 and payload[:4] == b"\x00\x3c\x00\x3c":
                count += 1
            elif ftype == 8:
                self.sock.sendall(frame.marshal(Heartbeat(), 0))
        return count

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(0, commands.Connection.Close(200, "bye", 0, 0))
        self.sock.close()
