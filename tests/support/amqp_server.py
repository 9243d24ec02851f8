"""A server made of the wire layer and a small test handler, in a background thread.

The handler knows no queues: it answers the few methods the tests use, and
echoes every publish back as a delivery on the same channel, so real clients
can exercise the whole wire layer (handshake, channels, content, heartbeats,
errors) without the broker.

Queue.Declare of a few special names makes the handler do something instead
of declaring:

    missing   a channel error, 404 NOT_FOUND
    fatal     a connection error, 541 INTERNAL_ERROR
    shutdown  a server-initiated Connection.Close, 320 CONNECTION_FORCED
    block     Connection.Blocked("low on memory"), then Declare-Ok
    unblock   Connection.Unblocked, then Declare-Ok
    flood     Declare-Ok, then large deliveries to the channel's consumer, one
              per event-loop turn, until the socket's write buffer is full

`RawClient` speaks the protocol over a plain blocking socket, for what the
client libraries cannot do (go silent, stop reading, AMQPLAIN).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pamqp import commands, encode
from pamqp import frame as pframe

from warrenmq.amqp import ChannelError, ConnectionError, ConnectionHandler, start_server
from warrenmq.amqp.codec import encode_short

FORCED_CLOSE_TEXT = "broker forced connection closure with reason 'shutdown'"
BLOCKED_REASON = "low on memory"
NO_PROPERTIES = b"\x00\x00"  # a content header's property flags, none set


class EchoHandler(ConnectionHandler):
    """guest/guest on vhost '/'; 'queue.declare' answers; publishes come back as deliveries."""

    # The flood: body size of each delivery, and a safety limit on their number.
    flood_body_size = 256 * 1024
    flood_limit = 400

    def __init__(self, conn) -> None:
        self.conn = conn
        self.consumers: dict[int, bytes] = {}
        self.delivery_tags: dict[int, int] = {}
        self.acks: list[tuple[int, int, bool]] = []
        self.confirming: dict[int, int] = {}
        # What the tests look at (read them through ServerThread.call).
        self.declared: list[str] = []
        self.writable_events: list[bool] = []
        self.writable = True
        self.flood_sent = 0
        self.flooding = False
        self.lost = threading.Event()

    def authenticate(self, mechanism: str, username: str, password: str) -> bool:
        return (username, password) == ("guest", "guest")

    def open_vhost(self, vhost: str) -> None:
        if vhost != "/":
            raise ConnectionError(530, f"access to vhost '{vhost}' refused for user 'guest'")

    def on_method(self, channel: int, method: Any) -> None:
        name = method.name
        if name == "Queue.Declare":
            self.declared.append(method.queue)
            if method.queue == "missing":
                raise ChannelError(404, f"no queue '{method.queue}' in vhost '/'")
            if method.queue == "fatal":
                raise ConnectionError(541, "the test handler was asked to fail")
            if method.queue == "shutdown":
                self.conn.close(ConnectionError(320, FORCED_CLOSE_TEXT))
                return
            if method.queue == "block":
                self.conn.send_blocked(BLOCKED_REASON)
            elif method.queue == "unblock":
                self.conn.send_unblocked()
            self.conn.send_method(
                channel, commands.Queue.DeclareOk(method.queue or "amq.gen-x", 0, 0)
            )
            if method.queue == "flood":
                self.flooding = True
                self._flood_step(channel)
        elif name == "Basic.Consume":
            tag = method.consumer_tag or "ctag-1"
            self.consumers[channel] = encode_short(tag)
            self.conn.send_method(channel, commands.Basic.ConsumeOk(tag))
        elif name == "Basic.Qos":
            self.conn.send_method(channel, commands.Basic.QosOk())
        elif name == "Confirm.Select":
            self.confirming[channel] = 0
            if not method.nowait:
                self.conn.send_method(channel, commands.Confirm.SelectOk())
        elif name == "Basic.Cancel":
            self.consumers.pop(channel, None)
            self.conn.send_method(channel, commands.Basic.CancelOk(method.consumer_tag))

    def on_publish(self, channel, exchange, routing_key, mandatory, immediate, properties, body):
        if channel in self.confirming:
            self.confirming[channel] += 1
            self.conn.send_confirm(channel, self.confirming[channel], False)
        self._deliver(channel, exchange, routing_key, properties, body)

    def _deliver(self, channel, exchange, routing_key, properties, body) -> bool:
        ctag = self.consumers.get(channel)
        if ctag is None:
            return False
        tag = self.delivery_tags.get(channel, 0) + 1
        self.delivery_tags[channel] = tag
        self.conn.send_deliver(
            channel, ctag, tag, False, encode_short(exchange) + encode_short(routing_key),
            properties, body,
        )  # fmt: skip
        return True

    def _flood_step(self, channel: int) -> None:
        """One large delivery per event-loop turn (the output is flushed in between)."""
        if not (self.writable and self.conn.is_open and self.flood_sent < self.flood_limit):
            self.flooding = False
            return
        seq = self.flood_sent + 1
        body = struct.pack(">Q", seq) + bytes([seq % 251]) * (self.flood_body_size - 8)
        if not self._deliver(channel, "", "flood", NO_PROPERTIES, body):
            self.flooding = False
            return
        self.flood_sent = seq
        asyncio.get_running_loop().call_soon(self._flood_step, channel)

    def on_ack(self, channel: int, delivery_tag: int, multiple: bool) -> None:
        self.acks.append((channel, delivery_tag, multiple))

    def on_writable(self, writable: bool) -> None:
        self.writable = writable
        self.writable_events.append(writable)

    def channel_closed(self, channel: int) -> None:
        self.consumers.pop(channel, None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set()


class ServerThread:
    """Runs start_server(EchoHandler) on 127.0.0.1 with an ephemeral port.

    `handlers` lists the handler of every connection, in the order they came;
    `call` runs a function on the server's event loop (where the handlers and
    connections live) and returns its result.
    """

    def __init__(
        self, handler_factory=EchoHandler, *, watchdog: float | None = None, **options: Any
    ) -> None:
        self.handler_factory = handler_factory
        self.options = options
        # After `watchdog` seconds every client socket is aborted, so that a client
        # waiting for an answer that never comes fails instead of hanging the run.
        self.watchdog = watchdog
        self.watchdog_fired = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.handlers: list[Any] = []

    def _make_handler(self, conn) -> Any:
        handler = self.handler_factory(conn)
        self.handlers.append(handler)
        return handler

    def __enter__(self) -> ServerThread:
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            start_server(self._make_handler, "127.0.0.1", 0, **self.options), self.loop
        )
        self.server = fut.result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        if self.watchdog is not None:
            self.loop.call_soon_threadsafe(self._arm_watchdog)
        return self

    def _arm_watchdog(self) -> None:
        self._watchdog_timer = self.loop.call_later(self.watchdog, self._watchdog_expired)

    def _watchdog_expired(self) -> None:
        self.watchdog_fired = True
        self._abort_clients()

    def _abort_clients(self) -> None:
        for handler in self.handlers:
            proto = getattr(getattr(handler, "conn", None), "transport_protocol", None)
            transport = getattr(proto, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.abort()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10) -> Any:
        """fn(*args) on the server's loop thread; its result (or exception)."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def handler(self, index: int = -1, timeout: float = 5.0) -> Any:
        """The handler of a connection (the latest by default), once it exists."""
        deadline = time.monotonic() + timeout
        while len(self.handlers) <= (index if index >= 0 else -index - 1):
            if time.monotonic() > deadline:
                raise TimeoutError("no such connection reached the server")
            time.sleep(0.01)
        return self.handlers[index]

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            self.server.close_clients() if hasattr(self.server, "close_clients") else None
            # Before 3.13 Server.close leaves the accepted sockets open: close them.
            self._abort_clients()
            timer = getattr(self, "_watchdog_timer", None)
            if timer is not None:
                timer.cancel()
            await asyncio.sleep(0)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        if self.watchdog_fired and exc[0] is None:
            raise AssertionError(f"the test outlived the server's {self.watchdog}s watchdog")


# ---------------------------------------------------------------- raw client
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
HEARTBEAT = struct.pack(">BHI", FRAME_HEARTBEAT, 0, 0) + b"\xce"


def start_ok_frame(
    mechanism: str, response: bytes, capabilities: dict[str, Any] | None = None
) -> bytes:
    """Connection.Start-Ok built by hand: pamqp only takes a str response."""
    props = {"product": "warrenmq-tests raw client", "capabilities": capabilities or {}}
    payload = (
        struct.pack(">HH", 10, 11)
        + encode.field_table(props)
        + encode.short_string(mechanism)
        + struct.pack(">I", len(response))
        + response
        + encode.short_string("en_US")
    )
    return struct.pack(">BHI", FRAME_METHOD, 0, len(payload)) + payload + b"\xce"


def amqplain_response(login: str, password: str) -> bytes:
    """AMQPLAIN's response: a field table without its leading length."""
    return encode.field_table({"LOGIN": login, "PASSWORD": password})[4:]


def plain_response(login: str, password: str) -> bytes:
    return b"\x00" + login.encode() + b"\x00" + password.encode()


class RawClient:
    """AMQP 0-9-1 over a blocking socket: frames written and read by hand."""

    def __init__(self, port: int, *, rcvbuf: int | None = None, timeout: float = 5.0) -> None:
        # `timeout` bounds each wait for a frame (heartbeats do not extend it).
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the TCP window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()
        self.frame_sizes: list[int] = []  # whole frame sizes read, in order

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- writing
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_method(self, channel: int, method: Any) -> None:
        self.sock.sendall(pframe.marshal(method, channel))

    # ------------------------------------------------------------- reading
    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buf += chunk

    def read_frame(self) -> tuple[int, int, Any]:
        """(frame type, channel, pamqp frame); EOFError when the server hangs up."""
        self._fill(7)
        ftype, channel, size = struct.unpack_from(">BHI", self.buf)
        self._fill(8 + size)
        whole = bytes(self.buf[: 8 + size])
        del self.buf[: 8 + size]
        assert whole[-1] == 0xCE, f"bad frame end byte {whole[-1]:#x}"
        self.frame_sizes.append(len(whole))
        if ftype == FRAME_HEARTBEAT:
            return ftype, channel, None
        _n, ch, value = pframe.unmarshal(whole)
        return ftype, ch, value

    def read_method(self, skip_heartbeats: bool = True) -> tuple[int, Any]:
        """The next method frame as (channel, method)."""
        deadline = time.monotonic() + self.timeout
        while True:
            ftype, channel, value = self.read_frame()
            if ftype == FRAME_HEARTBEAT and skip_heartbeats:
                if time.monotonic() > deadline:
                    raise TimeoutError("only heartbeats, no method frame")
                continue
            assert ftype == FRAME_METHOD, f"expected a method frame, got type {ftype}"
            return channel, value

    def expect(self, name: str, channel: int | None = None) -> Any:
        ch, method = self.read_method()
        assert method.name == name, f"expected {name}, got {method.name}: {vars(method)}"
        if channel is not None:
            assert ch == channel
        return method

    def read_until_closed(self) -> list[tuple[int, int, Any]]:
        """Every frame until the server closes the socket (within `timeout`)."""
        deadline = time.monotonic() + self.timeout
        frames = []
        while True:
            try:
                frames.append(self.read_frame())
            except (EOFError, ConnectionResetError):
                return frames
            if time.monotonic() > deadline:
                raise TimeoutError(f"still open after {self.timeout}s; frames: {frames}")

    # ----------------------------------------------------------- handshake
    def handshake(
        self,
        *,
        heartbeat: int = 0,
        frame_max: int | None = None,
        channel_max: int | None = None,
        vhost: str = "/",
        mechanism: str = "PLAIN",
        response: bytes | None = None,
        capabilities: dict[str, Any] | None = None,
    ) -> commands.Connection.Tune:
        """Header, Start-Ok, Tune-Ok, Open; returns the server's Tune (Open-Ok not read)."""
        self.login(mechanism, response, capabilities)
        tune = self.expect("Connection.Tune", 0)
        self.send_method(
            0,
            commands.Connection.TuneOk(
                channel_max=tune.channel_max if channel_max is None else channel_max,
                frame_max=tune.frame_max if frame_max is None else frame_max,
                heartbeat=heartbeat,
            ),
        )
        self.send_method(0, commands.Connection.Open(virtual_host=vhost))
        return tune

    def login(
        self,
        mechanism: str = "PLAIN",
        response: bytes | None = None,
        capabilities: dict[str, Any] | None = None,
    ) -> None:
        """The protocol header, then Start-Ok for Start (kept as `self.start`)."""
        self.send(b"AMQP\x00\x00\x09\x01")
        self.start = self.expect("Connection.Start", 0)
        if response is None:
            response = plain_response("guest", "guest")
        self.send(start_ok_frame(mechanism, response, capabilities))

    def open(self, **kwargs: Any) -> commands.Connection.Tune:
        """The whole handshake, through Open-Ok."""
        tune = self.handshake(**kwargs)
        self.expect("Connection.OpenOk", 0)
        return tune
