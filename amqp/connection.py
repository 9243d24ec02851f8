"""The connection state machine: bytes in, handler calls out; commands in, bytes out.

`Connection` does no I/O. `receive_data` takes whatever the socket gave,
splits it into frames (across any fragmentation), checks each frame, runs
the handshake, the channel state machines and content assembly, and calls
the handler. Everything it has to send is appended to `out`; the transport
adapter writes it with one `writelines` per event-loop turn. `wakeup` is
called when `out` goes from empty to non-empty, so sends made outside
`receive_data` (deliveries, confirms) are flushed too.

The hot frames (Basic.Publish + content, Basic.Ack/Nack/Reject) are parsed
inline with the fast codec; everything else goes through pamqp.
"""

from __future__ import annotations

import enum
import logging
import platform
import struct
from collections.abc import Callable
from typing import Any

from pamqp import commands
from pamqp import decode as pdecode
from pamqp.exceptions import UnmarshalingException

from . import codec
from .channel import AWAIT_BODY, AWAIT_HEADER, AWAIT_METHOD, Channel
from .constants import (
    ACCESS_REFUSED,
    BASIC,
    BASIC_ACK,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_REJECT,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION,
    DEFAULT_CHANNEL_MAX,
    DEFAULT_FRAME_MAX,
    DEFAULT_HEARTBEAT,
    FRAME_BODY,
    FRAME_END,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PROTOCOL_HEADER,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
)
from .errors import AMQPError, ChannelError, ConnectionError
from .handler import ConnectionHandler

log = logging.getLogger("warrenmq.amqp")

_unpack_frame_header = codec.unpack_frame_header
_unpack_u32 = codec.unpack_u32
_parse_publish = codec.parse_publish
_parse_content_header = codec.parse_content_header
_parse_tag_bits = codec.parse_tag_bits

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}


def default_server_properties(version: str = "0.1.0") -> dict[str, Any]:
    return {
        "product": "warrenmq",
        "version": version,
        "platform": f"Python {platform.python_version()}",
        "copyright": "the warrenmq authors",
        "information": "An AMQP 0-9-1 broker on a partitioned append-only log",
        "capabilities": dict(CAPABILITIES),
    }


class State(enum.IntEnum):
    AWAIT_PROTOCOL_HEADER = 0
    AWAIT_START_OK = 1
    AWAIT_TUNE_OK = 2
    AWAIT_OPEN = 3
    OPEN = 4
    CLOSING = 5  # we sent Connection.Close and wait for Close-Ok
    CLOSED = 6  # nothing more is read; the transport should close


class _FrameError(Exception):
    """A frame that breaks the framing itself: the byte stream cannot be trusted."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class Connection:
    """One client connection's protocol state; see the module docstring."""

    def __init__(
        self,
        handler: ConnectionHandler | None = None,
        *,
        frame_max: int = DEFAULT_FRAME_MAX,
        channel_max: int = DEFAULT_CHANNEL_MAX,
        heartbeat: int = DEFAULT_HEARTBEAT,
        max_message_size: int = 128 * 1024 * 1024,
        server_properties: dict[str, Any] | None = None,
        wakeup: Callable[[], None] | None = None,
    ) -> None:
        self.handler = handler or ConnectionHandler()
        self.server_frame_max = frame_max
        self.server_channel_max = channel_max
        self.server_heartbeat = heartbeat
        self.max_message_size = max_message_size
        self.server_properties = server_properties or default_server_properties()
        self.wakeup = wakeup
        self.state = State.AWAIT_PROTOCOL_HEADER
        # Negotiated values (until Tune-Ok: the minimum frame size).
        self.frame_max = FRAME_MIN_SIZE
        self.channel_max = channel_max
        self.heartbeat = 0
        self.channels: dict[int, Channel] = {}
        self.client_properties: dict[str, Any] = {}
        self.client_capabilities: dict[str, Any] = {}
        self.username: str | None = None
        self.vhost: str | None = None
        self.out: list[bytes] = []
        # Set when the transport should close once `out` is written.
        self.close_transport = False
        self.close_reason: AMQPError | None = None
        self.blocked = False
        self.transport_protocol: Any = None  # set by the asyncio adapter
        self._buf = b""
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._need = 0
        self._received_since_tick = True
        self._sent_since_tick = False
        self._silent_ticks = 0

    # ================================================================ output
    def _emit(self, data: bytes) -> None:
        out = self.out
        if not out and self.wakeup is not None:
            self.wakeup()
        out.append(data)
        self._sent_since_tick = True

    def _emit_many(self, parts: list[bytes]) -> None:
        out = self.out
        if not out and self.wakeup is not None:
            self.wakeup()
        out += parts
        self._sent_since_tick = True

    def data_to_send(self) -> list[bytes]:
        """Take everything queued for the socket."""
        out = self.out
        self.out = []
        return out

    def send_method(self, channel: int, method: Any) -> None:
        """Send a method (pamqp command); dropped for a channel that is not open."""
        if channel and not self._channel_open(channel):
            return
        self._emit(codec.encode_method(channel, method))

    def send_deliver(
        self,
        channel: int,
        consumer_tag: bytes,
        delivery_tag: int,
        redelivered: bool,
        exchange_rk: bytes,
        properties: bytes,
        body: bytes,
    ) -> None:
        """Basic.Deliver with its content (consumer_tag, exchange_rk pre-encoded short strings)."""
        self._emit_many(
            codec.encode_deliver(
                channel,
                consumer_tag,
                delivery_tag,
                redelivered,
                exchange_rk,
                properties,
                body,
                self.frame_max,
            )
        )

    def send_content_method(
        self, channel: int, method: Any, properties: bytes, body: bytes
    ) -> None:
        """A content-carrying method (Basic.Return, Basic.Get-Ok) with raw properties."""
        if not self._channel_open(channel):
            return
        parts = [codec.encode_method(channel, method)]
        parts += codec.encode_content(channel, properties, body, self.frame_max)
        self._emit_many(parts)

    def send_confirm(self, channel: int, delivery_tag: int, multiple: bool, ack: bool = True) -> None:
        """A publisher confirm: Basic.Ack (or Nack) of a publish sequence number."""
        if not self._channel_open(channel):
            return
        if ack:
            self._emit(codec.encode_ack(channel, delivery_tag, multiple))
        else:
            self._emit(codec.encode_nack(channel, delivery_tag, multiple))

    def send_blocked(self, reason: str) -> None:
        """Connection.Blocked, to clients that announced the capability."""
        if not self.blocked and self.client_capabilities.get("connection.blocked"):
            self.blocked = True
            self._emit(codec.encode_method(0, commands.Connection.Blocked(reason)))

    def send_unblocked(self) -> None:
        if self.blocked:
            self.blocked = False
            self._emit(codec.encode_method(0, commands.Connection.Unblocked()))

    def _channel_open(self, channel: int) -> bool:
        ch = self.channels.get(channel)
        return ch is not None and not ch.closing

    # ========================================================== closing
    def close_channel(self, channel: int, error: AMQPError) -> None:
        """Close a channel from the server side (e.g. its queue went away)."""
        ch = self.channels.get(channel)
        if ch is None or ch.closing or self.state >= State.CLOSING:
            return
        ch.start_closing()
        self._emit(
            codec.encode_method(
                channel,
                commands.Channel.Close(
                    error.code, error.reply_text, error.class_id, error.method_id
                ),
            )
        )

    def close(self, error: AMQPError, wait_for_close_ok: bool = True) -> None:
        """Close the connection with a reply code (320 CONNECTION_FORCED at shutdown)."""
        if self.state >= State.CLOSING:
            return
        self.close_reason = error
        if self.state <= State.AWAIT_START_OK and error.code != ACCESS_REFUSED:
            # Before Start-Ok a client cannot read a Close; just hang up.
            self._finish()
            return
        self._emit(
            codec.encode_method(
                0,
                commands.Connection.Close(
                    error.code, error.reply_text, error.class_id, error.method_id
                ),
            )
        )
        if wait_for_close_ok:
            self.state = State.CLOSING
        else:
            self._finish()

    def _finish(self) -> None:
        self.state = State.CLOSED
        self.close_transport = True
        self._buf = b""
        self._pending = []

    def _fail(self, exc: AMQPError, channel: int) -> None:
        """Answer an error raised while handling a frame of `channel`."""
        if exc.hard or channel == 0:
            if not exc.hard:  # a soft code on channel 0 is a connection error too
                exc = ConnectionError(exc.code, exc.text, exc.class_id, exc.method_id)
            log.info("closing connection: %s", exc.reply_text)
            self.close(exc)
        else:
            log.debug("closing channel %d: %s", channel, exc.reply_text)
            self.close_channel(channel, exc)

    # ============================================================ heartbeats
    def heartbeat_tick(self) -> bool:
        """Call every heartbeat/2 seconds; False means the client went silent (close it)."""
        if self.state >= State.CLOSED:
            return False
        if not self.heartbeat:
            return True
        if self._received_since_tick:
            self._silent_ticks = 0
        else:
            self._silent_ticks += 1
            if self._silent_ticks >= 4:  # two whole intervals without a frame
                log.warning("missed heartbeats from client, timeout: %ds", self.heartbeat)
                self._finish()
                return False
        self._received_since_tick = False
        if not self._sent_since_tick:
            self._emit(codec.HEARTBEAT_FRAME)
        self._sent_since_tick = False
        return True

    # ================================================================= input
    def receive_data(self, data: bytes) -> None:
        """Process bytes from the socket; may call the handler and queue output."""
        state = self.state
        if state >= State.CLOSED or not data:
            return
        self._received_since_tick = True
        if self._need:
            # Waiting for the rest of a large frame: collect without copying.
            self._pending.append(data)
            self._pending_len += len(data)
            if self._pending_len < self._need:
                return
            data = b"".join(self._pending)
            self._pending = []
            self._pending_len = 0
            self._need = 0
        elif self._buf:
            data = self._buf + data
            self._buf = b""
        if state == State.AWAIT_PROTOCOL_HEADER:
            if len(data) < 8 and PROTOCOL_HEADER.startswith(data):
                self._buf = data  # a header split across reads
                return
            if data[:8] != PROTOCOL_HEADER:
                self._emit(PROTOCOL_HEADER)
                self._finish()
                return
            data = data[8:]
            self._send_start()
        try:
            self._frames(data)
        except _FrameError as exc:
            self._frame_error(exc.code, exc.text)
        except Exception:
            log.exception("internal error reading frames")
            self.close(ConnectionError(INTERNAL_ERROR, "internal error"), wait_for_close_ok=False)

    def _frame_error(self, code: int, text: str) -> None:
        error = ConnectionError(code, text)
        log.info("closing connection: %s", error.reply_text)
        self.close(error, wait_for_close_ok=False)

    def _frames(self, buf: bytes) -> None:
        """Split buf into frames and handle each; keep an incomplete tail."""
        pos = 0
        n = len(buf)
        channels = self.channels
        while n - pos >= 7:
            if self.state >= State.CLOSED:
                return
            ftype, ch_no, size = _unpack_frame_header(buf, pos)
            if size > self.frame_max - 8:
                raise _FrameError(
                    FRAME_ERROR,
                    f"frame size {size} is larger than negotiated maximum {self.frame_max - 8}",
                )
            end = pos + 7 + size
            if end >= n:
                self._keep(buf, pos, end + 1)
                return
            if buf[end] != FRAME_END:
                raise _FrameError(
                    FRAME_ERROR, f"frame end byte 0x{buf[end]:02x}, expected 0x{FRAME_END:02x}"
                )
            start = pos + 7
            pos = end + 1
            if ftype == FRAME_METHOD:
                if size < 4:
                    raise _FrameError(FRAME_ERROR, f"method frame of {size} bytes")
                ch = channels.get(ch_no)
                if ch is not None and ch.expect == AWAIT_METHOD and not ch.closing:
                    method_id = _unpack_u32(buf, start)[0]
                    try:
                        if method_id == BASIC_PUBLISH:
                            exchange, rk, mandatory, immediate = _parse_publish(buf, start + 4, end)
                            ch.begin_content(exchange, rk, mandatory, immediate)
                            continue
                        if method_id == BASIC_ACK:
                            tag, bits = _parse_tag_bits(buf, start + 4, end, 80)
                            self.handler.on_ack(ch_no, tag, bool(bits & 1))
                            continue
                        if method_id == BASIC_NACK:
                            tag, bits = _parse_tag_bits(buf, start + 4, end, 120)
                            self.handler.on_nack(ch_no, tag, bool(bits & 1), bool(bits & 2))
                            continue
                        if method_id == BASIC_REJECT:
                            tag, bits = _parse_tag_bits(buf, start + 4, end, 90)
                            self.handler.on_reject(ch_no, tag, bool(bits & 1))
                            continue
                    except AMQPError as exc:
                        if not exc.class_id:
                            exc.class_id, exc.method_id = method_id >> 16, method_id & 0xFFFF
                        self._fail(exc, ch_no)
                        continue
                self._method_frame(ch_no, buf[start:end])
            elif ftype == FRAME_HEADER:
                self._header_frame(ch_no, buf, start, end)
            elif ftype == FRAME_BODY:
                self._body_frame(ch_no, buf[start:end])
            elif ftype == FRAME_HEARTBEAT:
                if ch_no != 0:
                    raise _FrameError(FRAME_ERROR, f"heartbeat frame on channel {ch_no}")
            else:
                raise _FrameError(FRAME_ERROR, f"unknown frame type {ftype}")
        if pos < n:
            self._buf = buf[pos:]

    def _keep(self, buf: bytes, pos: int, frame_end: int) -> None:
        """Hold an incomplete frame; a large one is collected in pieces."""
        tail = buf[pos:]
        if frame_end - pos > 65536:
            self._pending = [tail]
            self._pending_len = len(tail)
            self._need = frame_end - pos
        else:
            self._buf = tail

    # ------------------------------------------------------------- methods
    def _method_frame(self, ch_no: int, payload: bytes) -> None:
        try:
            try:
                method = codec.decode_method(payload)
            except KeyError:
                class_id, method_id = struct.unpack_from(">HH", payload)
                raise ConnectionError(
                    NOT_IMPLEMENTED,
                    f"unknown method class {class_id} method {method_id}",
                    class_id,
                    method_id,
                ) from None
            except UnmarshalingException as exc:
                class_id, method_id = struct.unpack_from(">HH", payload)
                raise ConnectionError(
                    SYNTAX_ERROR, f"malformed {_method_name(payload)}: {exc}", class_id, method_id
                ) from None
            if ch_no == 0:
                self._connection_method(method)
            else:
                self._channel_method(ch_no, method)
        except AMQPError as exc:
            if not exc.class_id and len(payload) >= 4:
                exc.class_id, exc.method_id = struct.unpack_from(">HH", payload)
            self._fail(exc, ch_no)
        except Exception:
            log.exception("internal error handling %s on channel %d", _method_name(payload), ch_no)
            self.close(ConnectionError(INTERNAL_ERROR, "internal error"))

    def _connection_method(self, method: Any) -> None:
        state = self.state
        name = method.name
        if state == State.CLOSING:
            if name == "Connection.CloseOk":
                self._finish()
            elif name == "Connection.Close":
                self._emit(codec.encode_method(0, commands.Connection.CloseOk()))
                self._finish()
            return
        if name == "Connection.Close":
            self._emit(codec.encode_method(0, commands.Connection.CloseOk()))
            self._finish()
            return
        if not name.startswith("Connection."):
            raise ConnectionError(
                COMMAND_INVALID, f"{_method_text(name)} is not allowed on channel 0"
            )
        if state == State.AWAIT_START_OK and name == "Connection.StartOk":
            self._start_ok(method)
        elif state == State.AWAIT_TUNE_OK and name == "Connection.TuneOk":
            self._tune_ok(method)
        elif state == State.AWAIT_OPEN and name == "Connection.Open":
            self._open(method)
        elif state == State.OPEN and name == "Connection.CloseOk":
            pass  # a stray Close-Ok: harmless
        elif state == State.OPEN and name == "Connection.UpdateSecret":
            self._emit(codec.encode_method(0, commands.Connection.UpdateSecretOk()))
        else:
            raise ConnectionError(
                COMMAND_INVALID,
                f"{_method_text(name)} is not expected in connection state {state.name.lower()}",
            )

    def _channel_method(self, ch_no: int, method: Any) -> None:
        name = method.name
        if self.state != State.OPEN:
            if self.state == State.CLOSING:
                return  # dropped until Close-Ok
            raise ConnectionError(
                CHANNEL_ERROR, f"channel {ch_no} used before the connection is open"
            )
        if name.startswith("Connection."):
            raise ConnectionError(
                COMMAND_INVALID, f"{_method_text(name)} is only allowed on channel 0"
            )
        ch = self.channels.get(ch_no)
        if ch is None:
            if name != "Channel.Open":
                raise ConnectionError(
                    CHANNEL_ERROR, f"expected 'channel.open' on channel {ch_no}, got {_method_text(name)}"
                )
            if ch_no > self.channel_max:
                raise ConnectionError(
                    CHANNEL_ERROR,
                    f"channel {ch_no} is above the negotiated channel_max {self.channel_max}",
                )
            ch = Channel(ch_no)
            self.channels[ch_no] = ch
            try:
                self.handler.channel_opened(ch_no)
            except AMQPError:
                del self.channels[ch_no]
                raise
            self._emit(codec.encode_method(ch_no, commands.Channel.OpenOk()))
            return
        if ch.closing:
            # After a channel error everything but Close / Close-Ok is dropped.
            if name in ("Channel.CloseOk", "Channel.Close"):
                self._drop_channel(ch_no)
            return
        if ch.expect != AWAIT_METHOD:
            raise ConnectionError(
                UNEXPECTED_FRAME,
                f"expected content header for class 60, got method {_method_text(name)}",
            )
        if name == "Channel.Close":
            self._emit(codec.encode_method(ch_no, commands.Channel.CloseOk()))
            self._drop_channel(ch_no)
        elif name == "Channel.CloseOk":
            pass  # no close of ours was outstanding
        elif name == "Channel.Open":
            raise ConnectionError(CHANNEL_ERROR, f"second 'channel.open' seen on channel {ch_no}")
        elif name in _CLIENT_METHODS:
            self.handler.on_method(ch_no, method)
        else:
            raise ConnectionError(
                COMMAND_INVALID, f"{_method_text(name)} is not sent by clients"
            )

    def _drop_channel(self, ch_no: int) -> None:
        if self.channels.pop(ch_no, None) is not None:
            self.handler.channel_closed(ch_no)

    # ------------------------------------------------------------- content
    def _header_frame(self, ch_no: int, buf: bytes, start: int, end: int) -> None:
        ch = self.channels.get(ch_no)
        if ch is None or self.state != State.OPEN:
            if self.state == State.CLOSING:
                return
            self._frame_error_soft(CHANNEL_ERROR, f"content header on channel {ch_no}, which is not open")
            return
        if ch.closing:
            return
        if ch.expect != AWAIT_HEADER:
            self._frame_error_soft(UNEXPECTED_FRAME, "expected method frame, got content header instead")
            return
        try:
            class_id, body_size, props = _parse_content_header(buf, start, end)
        except AMQPError as exc:
            self._fail(exc, ch_no)
            return
        if class_id != BASIC:
            self._frame_error_soft(
                UNEXPECTED_FRAME, f"content header for class {class_id}, expected class 60"
            )
            return
        if body_size > self.max_message_size:
            ch.reset_content()
            self._fail(
                ChannelError(
                    406,
                    f"message size {body_size} is larger than configured max size {self.max_message_size}",
                    60,
                    40,
                ),
                ch_no,
            )
            return
        if body_size == 0:
            self._publish(ch, props, b"")
            return
        ch.props = props
        ch.remaining = body_size
        ch.expect = AWAIT_BODY

    def _body_frame(self, ch_no: int, payload: bytes) -> None:
        ch = self.channels.get(ch_no)
        if ch is None or self.state != State.OPEN:
            if self.state == State.CLOSING:
                return
            self._frame_error_soft(CHANNEL_ERROR, f"content body on channel {ch_no}, which is not open")
            return
        if ch.closing:
            return
        if ch.expect != AWAIT_BODY:
            self._frame_error_soft(
                UNEXPECTED_FRAME,
                "expected content header for class 60, got content body instead"
                if ch.expect == AWAIT_HEADER
                else "expected method frame, got content body instead",
            )
            return
        ch.remaining -= len(payload)
        if ch.remaining < 0:
            self._frame_error_soft(UNEXPECTED_FRAME, "content body longer than its declared size")
            return
        if ch.remaining:
            ch.parts.append(payload)
            return
        if ch.parts:
            ch.parts.append(payload)
            body = b"".join(ch.parts)
            ch.parts = []
        else:
            body = payload
        self._publish(ch, ch.props, body)

    def _publish(self, ch: Channel, props: bytes, body: bytes) -> None:
        exchange, rk, mandatory, immediate = ch.publish
        ch.reset_content()
        try:
            self.handler.on_publish(ch.number, exchange, rk, mandatory, immediate, props, body)
        except AMQPError as exc:
            if not exc.class_id:
                exc.class_id, exc.method_id = 60, 40
            self._fail(exc, ch.number)
        except Exception:
            log.exception("internal error handling basic.publish on channel %d", ch.number)
            self.close(ConnectionError(INTERNAL_ERROR, "internal error"))

    def _frame_error_soft(self, code: int, text: str) -> None:
        """A protocol error in a well-framed stream: close and wait for Close-Ok."""
        error = ConnectionError(code, text)
        log.info("closing connection: %s", error.reply_text)
        self.close(error)

    # ------------------------------------------------------------ handshake
    def _send_start(self) -> None:
        self.state = State.AWAIT_START_OK
        self._emit(
            codec.encode_method(
                0,
                commands.Connection.Start(
                    version_major=0,
                    version_minor=9,
                    server_properties=self.server_properties,
                    mechanisms="PLAIN AMQPLAIN",
                    locales="en_US",
                ),
            )
        )

    def _start_ok(self, method: Any) -> None:
        self.client_properties = method.client_properties or {}
        caps = self.client_properties.get("capabilities")
        self.client_capabilities = caps if isinstance(caps, dict) else {}
        mechanism = method.mechanism
        response = method.response
        raw = response.encode("utf-8", "surrogateescape") if isinstance(response, str) else response
        if mechanism == "PLAIN":
            parts = raw.split(b"\x00")
            if len(parts) != 3:
                raise ConnectionError(ACCESS_REFUSED, "malformed PLAIN response")
            username, password = parts[1], parts[2]
        elif mechanism == "AMQPLAIN":
            try:
                _n, table = pdecode.field_table(struct.pack(">I", len(raw)) + raw)
            except Exception:
                raise ConnectionError(ACCESS_REFUSED, "malformed AMQPLAIN response") from None
            username = _as_bytes(table.get("LOGIN", b""))
            password = _as_bytes(table.get("PASSWORD", b""))
        else:
            raise ConnectionError(
                COMMAND_INVALID, f"unknown authentication mechanism '{mechanism}'"
            )
        user = username.decode("utf-8", "replace")
        if not self.handler.authenticate(mechanism, user, password.decode("utf-8", "replace")):
            log.warning("login refused for user '%s' (%s)", user, mechanism)
            error = ConnectionError(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {mechanism}. "
                "For details see the broker logfile.",
            )
            if self.client_capabilities.get("authentication_failure_close"):
                self.close(error, wait_for_close_ok=False)
            else:
                self.close_reason = error
                self._finish()
            return
        self.username = user
        self.state = State.AWAIT_TUNE_OK
        self._emit(
            codec.encode_method(
                0,
                commands.Connection.Tune(
                    channel_max=self.server_channel_max,
                    frame_max=self.server_frame_max,
                    heartbeat=self.server_heartbeat,
                ),
            )
        )

    def _tune_ok(self, method: Any) -> None:
        frame_max = _negotiate("frame_max", method.frame_max, self.server_frame_max, FRAME_MIN_SIZE)
        channel_max = _negotiate("channel_max", method.channel_max, self.server_channel_max, 1)
        self.frame_max = frame_max or self.server_frame_max or 2**32 - 1
        self.channel_max = channel_max or self.server_channel_max or 65535
        self.heartbeat = method.heartbeat
        self.state = State.AWAIT_OPEN

    def _open(self, method: Any) -> None:
        self.handler.open_vhost(method.virtual_host)
        self.vhost = method.virtual_host
        self.state = State.OPEN
        self._emit(codec.encode_method(0, commands.Connection.OpenOk()))
        self.handler.connection_opened()

    # ------------------------------------------------------------ lifecycle
    def connection_lost(self, exc: BaseException | None) -> None:
        """The transport is gone: tell the handler once."""
        if self.state != State.CLOSED or not getattr(self, "_lost", False):
            self._lost = True
            self.state = State.CLOSED
            self.handler.connection_lost(exc)

    @property
    def is_open(self) -> bool:
        return self.state == State.OPEN


def _negotiate(field: str, client: int, server: int, minimum: int) -> int:
    """RabbitMQ's rule: not below the minimum, not above (or unlimited past) the server's."""
    if client != 0 and client < minimum:
        raise ConnectionError(
            NOT_ALLOWED,
            f"negotiated {field} = {client} is lower than the minimum allowed value ({minimum})",
            CONNECTION,
            31,
        )
    if server != 0 and (client == 0 or client > server):
        raise ConnectionError(
            NOT_ALLOWED,
            f"negotiated {field} = {client} is higher than the maximum allowed value ({server})",
            CONNECTION,
            31,
        )
    return client


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode("utf-8")


def _method_text(name: str) -> str:
    """'Queue.DeclareOk' -> 'queue.declare_ok', RabbitMQ's spelling in reply texts."""
    cls, _, meth = name.partition(".")
    snake = "".join("_" + c.lower() if c.isupper() else c for c in meth).lstrip("_")
    return f"'{cls.lower()}.{snake}'"


def _method_name(payload: bytes) -> str:
    if len(payload) < 4:
        return "method"
    class_id, method_id = struct.unpack_from(">HH", payload)
    return f"method {class_id}.{method_id}"


# Methods a client may send on an open channel, passed to handler.on_method.
_CLIENT_METHODS = frozenset(
    {
        "Channel.Flow",
        "Channel.FlowOk",
        "Exchange.Declare",
        "Exchange.Delete",
        "Exchange.Bind",
        "Exchange.Unbind",
        "Queue.Declare",
        "Queue.Bind",
        "Queue.Unbind",
        "Queue.Purge",
        "Queue.Delete",
        "Basic.Qos",
        "Basic.Consume",
        "Basic.Cancel",
        "Basic.Get",
        "Basic.Recover",
        "Basic.RecoverAsync",
        "Basic.CancelOk",
        "Confirm.Select",
        "Tx.Select",
        "Tx.Commit",
        "Tx.Rollback",
    }
)

__all__ = ["CAPABILITIES", "Connection", "State", "default_server_properties"]
