"""The connection state machine: bytes in, handler calls out; commands in, bytes out.

`Connection` does no I/O. `receive_data` takes whatever the socket gave,
splits it into frames (across any fragmentation), checks each frame, runs
the handshake, the channel state machines and content assembly, and calls
the handler. Everything it has to send is appended to `out`; the transport
adapter writes it with one `writelines` per event-loop turn. `wakeup` is
called when `out` goes from empty to non-empty, so sends made outside
`receive_data` (deliveries, confirms) are flushed too.

The hot frames (Basic.Publish + content, Basic.Ack/Nack/Reject) are parsed
inline with the fast codec; everything else is read by the codec into pamqp
commands.

Every protocol error is answered as RabbitMQ answers it: the same reply
code and text, class and method ids, hard or soft, and the same choice
between a Close that waits for Close-Ok, a Close followed by hanging up
(the framing itself is broken), and hanging up without a word (errors
before Tune-Ok is done, and the inputs on which RabbitMQ's connection
process crashes: unknown method ids, unreadable field tables).
"""

from __future__ import annotations

import enum
import logging
import platform
import struct
from collections.abc import Callable
from typing import Any

from pamqp import commands

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
    PRECONDITION_FAILED,
    PROTOCOL_HEADER,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
)
from .errors import (
    AMQPError,
    ChannelError,
    ConnectionError,
    erl_binary_w,
    frame_error_text,
    unexpected_frame_text,
)
from .handler import ConnectionHandler

log = logging.getLogger("warrenmq.amqp")

_unpack_frame_header = codec.unpack_frame_header
_unpack_u32 = codec.unpack_u32
_unpack_header_frame = struct.Struct(">BHIHHQ").unpack_from
_parse_publish = codec.parse_publish
_unpack_header_fixed = codec.unpack_header_fixed
_parse_tag_bits = codec.parse_tag_bits
_check_properties = codec.check_properties

_ACKS = frozenset({BASIC_ACK, BASIC_NACK, BASIC_REJECT})
# The 0-9-1 header, and the 0-9 one RabbitMQ also takes (and speaks 0-9-1 to).
ACCEPTED_HEADERS = frozenset({PROTOCOL_HEADER, b"AMQP\x01\x01\x00\x09"})
# RabbitMQ's hard limit on a content body (a 501 above it, whatever max_message_size says).
MAX_MESSAGE_SIZE = 512 * 1024 * 1024

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
        self.auth_mechanism: str | None = None
        self.vhost: str | None = None
        self.out: list[bytes] = []
        # Set when the transport should close once `out` is written.
        self.close_transport = False
        self.close_reason: AMQPError | None = None
        self.blocked = False
        self.transport_protocol: Any = None  # set by the asyncio adapter
        self.name = "?"  # the peer, for log lines (set by the adapter)
        self._buf = b""
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._need = 0
        self._after_publish = 0
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
        return ch is not None and ch.running

    # ========================================================== closing
    def close_channel(self, channel: int, error: AMQPError) -> None:
        """Close a channel from the server side (e.g. its queue went away)."""
        ch = self.channels.get(channel)
        if ch is None or ch.closing or self.state >= State.CLOSING:
            return
        ch.start_closing()
        if ch.expect == AWAIT_BODY:
            ch.discard = True
            ch.parts = []
        self._emit(
            codec.encode_close(
                channel, error.code, error.reply_bytes, error.class_id, error.method_id
            )
        )

    def close(self, error: AMQPError, wait_for_close_ok: bool = True) -> None:
        """Close the connection with a reply code (320 CONNECTION_FORCED at shutdown)."""
        if self.state >= State.CLOSING:
            return
        self.close_reason = error
        if self.state < State.AWAIT_OPEN:
            # Until Tune-Ok is done RabbitMQ answers no error: it hangs up.
            # (A refused login with authentication_failure_close is sent by _start_ok.)
            self._finish()
            return
        self._emit(
            codec.encode_close(0, error.code, error.reply_bytes, error.class_id, error.method_id)
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
            log.warning("connection %s closed by an error: %d %s", self.name, exc.code, exc.reply_text)
            self.close(exc)
        else:
            log.warning("channel error on connection %s, channel %d: %d %s",
                        self.name, channel, exc.code, exc.reply_text)  # fmt: skip
            self.close_channel(channel, exc)

    # ============================================================ heartbeats
    def heartbeat_tick(self, reading: bool = True) -> bool:
        """Call every heartbeat/2 seconds; False means the client went silent (close it).

        reading=False: the server itself is not reading from the client (its
        socket is full, or backpressure), so unread heartbeats are not silence.
        """
        if self.state >= State.CLOSED:
            return False
        if not self.heartbeat:
            return True
        if self._received_since_tick or not reading:
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
            if len(data) < 8:
                self._buf = data  # RabbitMQ reads all 8 bytes before it answers
                return
            if data[:8] not in ACCEPTED_HEADERS:
                log.info("refusing a client that did not send the AMQP 0-9-1 header: %r", data[:8])
                self._emit(PROTOCOL_HEADER)
                self._finish()
                return
            data = data[8:]
            self._send_start()
        try:
            self._frames(data)
        except Exception:
            log.exception("internal error reading frames")
            self.close(ConnectionError(INTERNAL_ERROR, ""), wait_for_close_ok=False)
            self._finish()  # the stream cannot be trusted any more, even while closing

    def _frames(self, buf: bytes) -> None:
        """Split buf into frames and handle each; keep an incomplete tail.

        The frames of open channels (publishes, their content, acks) are
        handled inline; everything else goes through `_frame`.
        """
        pos = 0
        n = len(buf)
        channels = self.channels
        while n - pos >= 7:
            state = self.state
            if state is State.CLOSED:
                return
            ftype, ch_no, size = _unpack_frame_header(buf, pos)
            if size > self.frame_max:
                # RabbitMQ lets a frame's payload reach frame_max (not frame_max - 8).
                reason = ("frame_too_large", str(size), str(self.frame_max - 8))
                self._fatal_frame_error(frame_error_text(ftype, b"", reason))
                return
            end = pos + 7 + size
            if end >= n:
                self._keep(buf, pos, end + 1)
                return
            if buf[end] != FRAME_END:
                reason = ("invalid_frame_end_marker", str(buf[end]))
                self._fatal_frame_error(frame_error_text(ftype, buf[pos + 7 : end], reason))
                return
            start = pos + 7
            pos = end + 1
            if state is State.OPEN and ch_no:
                ch = channels.get(ch_no)
                if ch is not None:
                    if ftype == FRAME_BODY:
                        self._body(ch, buf[start:end])
                        continue
                    if ftype == FRAME_METHOD and size >= 4 and ch.expect == AWAIT_METHOD:
                        if ch.opened and not ch.closing:
                            method_index = _unpack_u32(buf, start)[0]
                            if method_index == BASIC_PUBLISH:
                                try:
                                    publish = _parse_publish(buf, start + 4, end)
                                except codec.UndecodableMethod as exc:
                                    self._cannot_decode(exc, method_index)
                                    continue
                                if not publish[3] and self._whole_publish(ch, publish, buf, pos, n):
                                    pos = self._after_publish
                                    continue
                                ch.method_index = BASIC_PUBLISH
                                ch.publish = publish
                                ch.expect = AWAIT_HEADER
                                continue
                            if method_index in _ACKS:
                                self._ack(ch, method_index, buf, start, end)
                                continue
                    elif ftype == FRAME_HEADER and size >= 12:
                        self._header(ch, buf, start, end)
                        continue
            self._frame(ftype, ch_no, buf[start:end])
        if pos < n:
            self._buf = buf[pos:]

    def _whole_publish(
        self, ch: Channel, publish: tuple[str, str, bool, bool], buf: bytes, pos: int, n: int
    ) -> bool:
        """A publish whose header and body frames follow in buf, handled in one go.

        Only the plain, well-formed case (content header then one body frame
        of exactly the declared size, good properties, under the size limits)
        is taken here; anything else returns False and the frames go through
        the general content-assembly path, which answers every error as
        RabbitMQ does. On success `_after_publish` is the position after it.
        """
        if n - pos < 19:
            return False
        ftype, ch_no, size, class_id, weight, body_size = _unpack_header_frame(buf, pos)
        header_end = pos + 7 + size
        if (
            ftype != FRAME_HEADER
            or ch_no != ch.number
            or size < 12
            or size > self.frame_max
            or header_end >= n
            or buf[header_end] != FRAME_END
            or class_id != BASIC
            or weight
            or body_size > self.max_message_size
        ):
            return False
        props = buf[pos + 19 : header_end]
        body_pos = header_end + 1
        if body_size:
            if n - body_pos < 7:
                return False
            ftype, ch_no, size = _unpack_frame_header(buf, body_pos)
            body_end = body_pos + 7 + size
            if (
                ftype != FRAME_BODY
                or ch_no != ch.number
                or size != body_size
                or size > self.frame_max
                or body_end >= n
                or buf[body_end] != FRAME_END
            ):
                return False
            body = buf[body_pos + 7 : body_end]
            after = body_end + 1
        else:
            body = b""
            after = body_pos
        if not _check_properties(props):
            return False
        self._after_publish = after
        self._on_publish(ch.number, publish, props, body)
        return True

    def _on_publish(
        self, ch_no: int, publish: tuple[str, str, bool, bool], props: bytes, body: bytes
    ) -> None:
        """Hand a whole, well-formed publish to the handler; answer what it raises."""
        exchange, routing_key, mandatory, immediate = publish
        try:
            self.handler.on_publish(ch_no, exchange, routing_key, mandatory, immediate, props, body)
        except AMQPError as exc:
            if not exc.class_id:
                exc.class_id, exc.method_id = 60, 40
            self._fail(exc, ch_no)
        except Exception:
            log.exception("internal error handling basic.publish on channel %d", ch_no)
            self._internal_error()

    def _ack(self, ch: Channel, method_index: int, buf: bytes, start: int, end: int) -> None:
        """Basic.Ack / Nack / Reject on an open channel, parsed in place."""
        try:
            tag, bits = _parse_tag_bits(buf, start + 4, end)
            if method_index == BASIC_ACK:
                self.handler.on_ack(ch.number, tag, bool(bits & 1))
            elif method_index == BASIC_NACK:
                self.handler.on_nack(ch.number, tag, bool(bits & 1), bool(bits & 2))
            else:
                self.handler.on_reject(ch.number, tag, bool(bits & 1))
        except codec.UndecodableMethod as exc:
            self._cannot_decode(exc, method_index)
        except AMQPError as exc:
            if not exc.class_id:
                exc.class_id, exc.method_id = method_index >> 16, method_index & 0xFFFF
            self._fail(exc, ch.number)
        except Exception:
            log.exception("internal error handling %s on channel %d", _ids(method_index), ch.number)
            self._internal_error()

    def _keep(self, buf: bytes, pos: int, frame_end: int) -> None:
        """Hold an incomplete frame; a large one is collected in pieces."""
        tail = buf[pos:]
        if frame_end - pos > 65536:
            self._pending = [tail]
            self._pending_len = len(tail)
            self._need = frame_end - pos
        else:
            self._buf = tail

    # ------------------------------------------------------- frame dispatch
    def _frame(self, ftype: int, ch_no: int, payload: bytes) -> None:
        """Any frame off the inline paths, handled as RabbitMQ's reader does for the state."""
        state = self.state
        if state is State.CLOSING:
            # Waiting for Close-Ok: only channel 0's Close / Close-Ok count.
            if ch_no == 0 and ftype == FRAME_METHOD and len(payload) >= 4:
                self._closing_method(payload)
            return
        kind = _frame_kind(ftype, payload)
        if ch_no == 0:
            if kind == "method":
                self._method0(payload)
            elif kind in ("header", "body"):
                self._protocol_error(UNEXPECTED_FRAME, unexpected_frame_text(ftype, payload))
            elif kind != "heartbeat":
                self._protocol_error(FRAME_ERROR, frame_error_text(ftype, payload, "unknown_frame"))
            return
        if state is not State.OPEN:
            self._protocol_error(UNEXPECTED_FRAME, unexpected_frame_text(ftype, payload))
        elif kind is None:
            self._protocol_error(FRAME_ERROR, frame_error_text(ftype, payload, "unknown_frame"))
        elif kind == "heartbeat":
            self._protocol_error(UNEXPECTED_FRAME, unexpected_frame_text(ftype, payload))
        elif kind == "method" and not self._known_method(payload):
            return
        else:
            ch = self._channel_for(ch_no)
            if ch is None:
                return
            if kind == "method":
                self._channel_method_frame(ch, payload)
            elif kind == "header":
                self._header(ch, payload, 0, len(payload))
            else:
                self._body(ch, payload)

    def _known_method(self, payload: bytes) -> bool:
        """False (and the socket dropped) for an undefined class/method id, as RabbitMQ's reader dies."""
        try:
            codec.method_layout(_unpack_u32(payload, 0)[0])
        except codec.UnknownMethod as exc:
            self._drop(f"unknown method {exc}")
            return False
        return True

    def _channel_for(self, ch_no: int) -> Channel | None:
        """The channel of a frame; a first frame brings a channel number into being."""
        ch = self.channels.get(ch_no)
        if ch is None:
            count = len(self.channels)
            if self.channel_max and count >= self.channel_max:
                self._protocol_error(
                    NOT_ALLOWED,
                    f"number of channels opened ({count}) has reached the "
                    f"negotiated channel_max ({self.channel_max})",
                )
                return None
            ch = self.channels[ch_no] = Channel(ch_no)
        return ch

    # ------------------------------------------------------------- errors
    def _protocol_error(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        """A connection error in a well-framed stream: close and wait for Close-Ok."""
        error = ConnectionError(code, text, class_id, method_id)
        log.warning("closing connection %s: %d %s", self.name, error.code, error.reply_text)
        self.close(error)

    def _fatal_frame_error(self, text: str) -> None:
        """The framing itself is broken: answer once, read nothing more, hang up."""
        if self.state is State.CLOSING:
            self._finish()  # already closing: RabbitMQ just logs it and hangs up
            return
        error = ConnectionError(FRAME_ERROR, text)
        log.warning("closing connection %s: %d %s", self.name, error.code, error.reply_text)
        self.close(error, wait_for_close_ok=False)

    def _cannot_decode(self, exc: codec.UndecodableMethod, method_index: int) -> None:
        self._protocol_error(
            FRAME_ERROR,
            f"cannot decode {erl_binary_w(exc.arguments)}",
            method_index >> 16,
            method_index & 0xFFFF,
        )

    def _drop(self, reason: str) -> None:
        """Hang up without a word: what RabbitMQ's connection does when its reader crashes."""
        log.warning("dropping connection %s: %s", self.name, reason)
        self._finish()

    def _internal_error(self) -> None:
        """541 "INTERNAL_ERROR", as RabbitMQ answers when a channel (or channel 0's decoding) crashes."""
        self.close(ConnectionError(INTERNAL_ERROR, ""))

    # ------------------------------------------------------------- methods
    def _decode(self, payload: bytes) -> Any:
        """The method of a payload, or None when an error was answered for it."""
        method_index = _unpack_u32(payload, 0)[0]
        try:
            return codec.decode_method(payload)
        except codec.UnknownMethod as exc:
            self._drop(f"unknown method {exc}")
        except codec.UndecodableMethod as exc:
            self._cannot_decode(exc, method_index)
        except codec.MalformedUTF8 as exc:
            self._protocol_error(FRAME_ERROR, str(exc))
        except codec.BadFieldTable as exc:
            self._drop(f"malformed field table in method {_ids(method_index)}: {exc}")
        return None

    def _method0(self, payload: bytes) -> None:
        """A method on channel 0 (RabbitMQ's handle_method0)."""
        method_index = _unpack_u32(payload, 0)[0]
        try:
            method = codec.decode_method(payload)
        except codec.UnknownMethod as exc:
            self._drop(f"unknown method {exc}")
            return
        except (codec.UndecodableMethod, codec.BadFieldTable) as exc:
            # RabbitMQ's channel-0 decoding fails with a non-AMQP error: 541 once
            # the connection is open, silence before.
            log.info("malformed method %s on channel 0: %s", _ids(method_index), exc)
            if self.state is State.OPEN:
                self._internal_error()
            else:
                self._finish()
            return
        except codec.MalformedUTF8 as exc:
            self._protocol_error(FRAME_ERROR, str(exc), method_index >> 16, method_index & 0xFFFF)
            return
        try:
            self._connection_method(method)
        except AMQPError as exc:
            if not exc.class_id:
                exc.class_id, exc.method_id = method_index >> 16, method_index & 0xFFFF
            self._fail(exc, 0)
        except Exception:
            log.exception("internal error handling %s on channel 0", _ids(method_index))
            self._internal_error()

    def _closing_method(self, payload: bytes) -> None:
        """Channel 0 while we wait for Close-Ok: Close and Close-Ok end it, the rest is dropped."""
        try:
            method = codec.decode_method(payload)
        except codec.UnknownMethod as exc:
            self._drop(f"unknown method {exc}")
            return
        except (codec.UndecodableMethod, codec.MalformedUTF8, codec.BadFieldTable):
            return
        if method.name == "Connection.CloseOk":
            self._finish()
        elif method.name == "Connection.Close":
            self._emit(codec.encode_method(0, commands.Connection.CloseOk()))
            self._finish()

    def _connection_method(self, method: Any) -> None:
        state = self.state
        name = method.name
        if state is State.AWAIT_START_OK and name == "Connection.StartOk":
            self._start_ok(method)
        elif state is State.AWAIT_TUNE_OK and name == "Connection.TuneOk":
            self._tune_ok(method)
        elif state is State.AWAIT_OPEN and name == "Connection.Open":
            self._open(method)
        elif state is State.OPEN and name == "Connection.Close":
            self._emit(codec.encode_method(0, commands.Connection.CloseOk()))
            self._finish()
        elif state is State.OPEN and name == "Connection.UpdateSecret":
            self._emit(codec.encode_method(0, commands.Connection.UpdateSecretOk()))
        else:
            raise ConnectionError(
                CHANNEL_ERROR, f"unexpected method in connection state {_STATE_NAMES[state]}"
            )

    def _channel_method_frame(self, ch: Channel, payload: bytes) -> None:
        """A method frame on a channel, through content assembly (RabbitMQ's command assembler)."""
        if ch.expect != AWAIT_METHOD:
            self._unexpected_in_content(ch)
            return
        method = self._decode(payload)
        if method is None:
            return
        method_index = _unpack_u32(payload, 0)[0]
        if codec.has_content(method_index):
            if method_index == BASIC_PUBLISH:
                ch.begin_content(
                    method_index, method.exchange, method.routing_key, method.mandatory, method.immediate
                )
            else:
                ch.begin_content(method_index)
            return
        try:
            self._channel_command(ch, method)
        except AMQPError as exc:
            if not exc.class_id:
                exc.class_id, exc.method_id = method_index >> 16, method_index & 0xFFFF
            self._fail(exc, ch.number)
        except Exception:
            log.exception("internal error handling %s on channel %d", method.name, ch.number)
            self._internal_error()

    def _channel_command(self, ch: Channel, method: Any) -> None:
        """A whole command on a channel (RabbitMQ's channel process): opening, open or closing."""
        name = method.name
        ch_no = ch.number
        if not ch.opened:
            if name != "Channel.Open":
                raise ConnectionError(CHANNEL_ERROR, "expected 'channel.open'")
            ch.opened = True
            self.handler.channel_opened(ch_no)
            self._emit(codec.encode_method(ch_no, commands.Channel.OpenOk()))
            return
        if name == "Channel.Open":  # even while closing, as RabbitMQ checks it first
            raise ConnectionError(CHANNEL_ERROR, "second 'channel.open' seen")
        if ch.closing:
            # After a channel error everything but Close / Close-Ok is dropped.
            if name == "Channel.CloseOk":
                self._drop_channel(ch_no)
            elif name == "Channel.Close":
                self._emit(codec.encode_method(ch_no, commands.Channel.CloseOk()))
            return
        if name in _CLIENT_METHODS:
            self.handler.on_method(ch_no, method)
        elif name == "Channel.Close":
            self._emit(codec.encode_method(ch_no, commands.Channel.CloseOk()))
            self._drop_channel(ch_no)
        elif name == "Channel.Flow":
            if not method.active:
                raise ConnectionError(NOT_IMPLEMENTED, "active=false")
            self._emit(codec.encode_method(ch_no, commands.Channel.FlowOk(True)))
        elif name == "Access.Request":
            self._emit(codec.encode_raw_method(ch_no, 30, 11, b"\x00\x01"))  # ticket 1
        elif name == "Basic.Ack":
            self.handler.on_ack(ch_no, method.delivery_tag, method.multiple)
        elif name == "Basic.Nack":
            self.handler.on_nack(ch_no, method.delivery_tag, method.multiple, method.requeue)
        elif name == "Basic.Reject":
            self.handler.on_reject(ch_no, method.delivery_tag, method.requeue)
        else:
            # Server-side methods, unsolicited Close-Ok / Flow-Ok, connection methods.
            raise ConnectionError(COMMAND_INVALID, "unimplemented method")

    def _drop_channel(self, ch_no: int) -> None:
        ch = self.channels.pop(ch_no, None)
        if ch is not None and ch.opened:
            self.handler.channel_closed(ch_no)

    # ------------------------------------------------------------- content
    def _unexpected_in_content(self, ch: Channel) -> None:
        """Some other frame where the content header (or a body frame) was due: 505."""
        cls, meth = ch.method_index >> 16, ch.method_index & 0xFFFF
        if ch.expect == AWAIT_HEADER:
            text = f"expected content header for class {cls}, got non content header frame instead"
        else:
            text = "expected content body, got non content body frame instead"
        self._protocol_error(UNEXPECTED_FRAME, text, cls, meth)

    def _header(self, ch: Channel, buf: bytes, start: int, end: int) -> None:
        """A content header frame (at least its 12 fixed bytes) on a channel."""
        if ch.expect != AWAIT_HEADER:
            if ch.expect == AWAIT_METHOD:
                self._protocol_error(
                    UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
                )
            else:
                self._unexpected_in_content(ch)
            return
        class_id, weight, body_size = _unpack_header_fixed(buf, start)
        if class_id != BASIC or weight or body_size > MAX_MESSAGE_SIZE:
            self._bad_header(ch, class_id, weight, body_size)
            return
        if body_size == 0:
            self._content_complete(ch, buf[start + 12 : end], b"")
            return
        ch.props = buf[start + 12 : end]
        ch.remaining = body_size
        ch.expect = AWAIT_BODY
        if not ch.opened or ch.closing:
            ch.discard = True  # dropped when complete; no need to keep it
        elif body_size > self.max_message_size and ch.method_index == BASIC_PUBLISH:
            # Refused when complete (as RabbitMQ does), but never held in memory.
            ch.discard = True
            ch.too_large = body_size

    def _bad_header(self, ch: Channel, class_id: int, weight: int, body_size: int) -> None:
        """The content header of another class, with a weight, or over RabbitMQ's size limit."""
        cls, meth = ch.method_index >> 16, ch.method_index & 0xFFFF
        if weight:
            self._unexpected_in_content(ch)
        elif class_id != cls:
            self._protocol_error(
                UNEXPECTED_FRAME,
                f"expected content header for class {cls}, got one for class {class_id} instead",
                cls,
                meth,
            )
        else:
            self._protocol_error(
                FRAME_ERROR,
                f"content body size {body_size} exceeds maximum allowed size {MAX_MESSAGE_SIZE}",
                cls,
                meth,
            )

    def _body(self, ch: Channel, payload: bytes) -> None:
        """A content body frame on a channel."""
        if ch.expect != AWAIT_BODY:
            if ch.expect == AWAIT_METHOD:
                self._protocol_error(
                    UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
                )
            else:
                self._unexpected_in_content(ch)
            return
        remaining = ch.remaining - len(payload)
        if remaining < 0:
            self._protocol_error(
                FRAME_ERROR,
                "content body frame exceeds remaining content size",
                ch.method_index >> 16,
                ch.method_index & 0xFFFF,
            )
            return
        ch.remaining = remaining
        if remaining:
            if not ch.discard:
                ch.parts.append(payload)
            return
        if ch.parts:
            ch.parts.append(payload)
            body = b"".join(ch.parts)
        else:
            body = payload
        self._content_complete(ch, ch.props, body)

    def _content_complete(self, ch: Channel, props: bytes, body: bytes) -> None:
        """A method with its whole content: a good publish goes to the handler."""
        method_index = ch.method_index
        publish = ch.publish
        immediate = publish[3]
        too_large = ch.too_large
        ch.reset_content()
        if (
            method_index == BASIC_PUBLISH
            and ch.opened
            and not ch.closing
            and not immediate
            and not too_large
            and _check_properties(props)
        ):
            self._on_publish(ch.number, publish, props, body)
        elif not ch.closing:
            self._refuse_content(ch, method_index, publish, too_large)

    def _refuse_content(
        self, ch: Channel, method_index: int, publish: tuple[str, str, bool, bool], too_large: int
    ) -> None:
        """Answer a whole command with content that is not a good publish, as RabbitMQ's channel does."""
        cls, meth = method_index >> 16, method_index & 0xFFFF
        if not ch.opened:
            error: AMQPError = ConnectionError(CHANNEL_ERROR, "expected 'channel.open'", cls, meth)
        elif method_index != BASIC_PUBLISH:
            error = ConnectionError(COMMAND_INVALID, "unimplemented method", cls, meth)
        elif publish[3]:
            error = ConnectionError(NOT_IMPLEMENTED, "immediate=true", cls, meth)
        elif too_large:
            error = ChannelError(
                PRECONDITION_FAILED,
                f"message size {too_large} is larger than configured max size "
                f"{self.max_message_size}",
                cls,
                meth,
            )
        else:
            # RabbitMQ decodes the properties of every publish; its channel
            # crashes on bad ones and the connection answers 541.
            log.info("malformed content header properties on channel %d", ch.number)
            error = ConnectionError(INTERNAL_ERROR, "")
        self._fail(error, ch.number)

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
                raise ConnectionError(SYNTAX_ERROR, f"response {raw!r} invalid")
            username, password = parts[1], parts[2]
        elif mechanism == "AMQPLAIN":
            try:
                table = codec.parse_table(raw)
            except (codec.BadFieldTable, IndexError):
                raise ConnectionError(SYNTAX_ERROR, "malformed AMQPLAIN response") from None
            username = _as_bytes(table.get("LOGIN", b""))
            password = _as_bytes(table.get("PASSWORD", b""))
        else:
            raise ConnectionError(
                COMMAND_INVALID, f"unknown authentication mechanism '{mechanism}'"
            )
        user = username.decode("utf-8", "replace")
        if not self.handler.authenticate(mechanism, user, password.decode("utf-8", "replace")):
            log.warning("connection %s: login refused for user '%s' (%s)", self.name, user, mechanism)
            error = ConnectionError(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {mechanism}. "
                "For details see the broker logfile.",
            )
            self.close_reason = error
            if self.client_capabilities.get("authentication_failure_close"):
                self._emit(codec.encode_close(0, error.code, error.reply_bytes, 0, 0))
            self._finish()
            return
        self.username = user
        self.auth_mechanism = mechanism
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
    """RabbitMQ's rule: not below the minimum, not above (or unlimited past) the server's.

    RabbitMQ hangs up on a failed negotiation without a Close (it logs
    "failed to negotiate connection parameters"); the error still names
    connection.tune, as RabbitMQ's does.
    """
    detail = " (no limit)" if field == "channel_max" and client == 0 else ""
    if client != 0 and client < minimum:
        raise ConnectionError(
            NOT_ALLOWED,
            f"negotiated {field} = {client}{detail} is lower than the minimum allowed value ({minimum})",
            CONNECTION,
            30,
        )
    if server != 0 and (client == 0 or client > server):
        raise ConnectionError(
            NOT_ALLOWED,
            f"negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})",
            CONNECTION,
            30,
        )
    return client


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode("utf-8")


def _ids(method_index: int) -> str:
    return f"{method_index >> 16}.{method_index & 0xFFFF}"


def _frame_kind(ftype: int, payload: bytes) -> str | None:
    """What RabbitMQ's frame analysis makes of a frame; None where it fails (a 501)."""
    if ftype == FRAME_METHOD:
        return "method" if len(payload) >= 4 else None
    if ftype == FRAME_HEADER:
        return "header" if len(payload) >= 12 else None
    if ftype == FRAME_BODY:
        return "body"
    if ftype == FRAME_HEARTBEAT and not payload:
        return "heartbeat"
    return None


# RabbitMQ's names for the connection states, as its reply texts use them.
_STATE_NAMES = {
    State.AWAIT_START_OK: "starting",
    State.AWAIT_TUNE_OK: "tuning",
    State.AWAIT_OPEN: "opening",
    State.OPEN: "running",
}

# Methods a client may send on an open channel, passed to handler.on_method.
# (Channel.Flow, Access.Request and the acknowledgements the wire layer takes
# itself; anything else from a client is 503 "unimplemented method".)
_CLIENT_METHODS = frozenset(
    {
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
        "Confirm.Select",
        "Tx.Select",
        "Tx.Commit",
        "Tx.Rollback",
    }
)

__all__ = ["CAPABILITIES", "Connection", "State", "default_server_properties"]
