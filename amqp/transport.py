"""The asyncio adapter: sockets in and out of a Connection, timers, and flow control.

Thin on purpose. It feeds received bytes to the Connection, writes what the
Connection queued with one `writelines` per event-loop turn (everything the
handler sent while one chunk was processed, or in one turn from elsewhere),
runs the heartbeat and handshake timers, closes the socket when the
Connection says so, and stops reading from a client whose socket cannot take
more output until it drains.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from .connection import Connection, State
from .handler import ConnectionHandler

log = logging.getLogger("warrenmq.amqp")

HANDSHAKE_TIMEOUT = 10.0
CLOSE_OK_TIMEOUT = 3.0
WRITE_BUFFER_HIGH = 1024 * 1024

HandlerFactory = Callable[[Connection], ConnectionHandler]


class AMQPProtocol(asyncio.Protocol):
    """One client socket; see the module docstring."""

    def __init__(self, handler_factory: HandlerFactory, **connection_options: Any) -> None:
        self.handler_factory = handler_factory
        self.connection_options = connection_options
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.peer: str = "?"
        self._flush_scheduled = False
        self._read_pauses: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Traffic counts (socket reads and writes, and their bytes), for the management API.
        self.recv_cnt = self.recv_oct = self.send_cnt = self.send_oct = 0

    # ------------------------------------------------------------- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self.conn = Connection(wakeup=self._schedule_flush, **self.connection_options)
        handler = self.handler_factory(self.conn)
        handler.connection = self.conn
        self.conn.handler = handler
        self.conn.transport_protocol = self  # for the broker: peer, read pauses
        self.conn.name = self.peer
        self._timers["handshake"] = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        self.recv_cnt += 1
        self.recv_oct += len(data)
        conn = self.conn
        was_open = conn.state
        conn.receive_data(data)
        if conn.state != was_open and conn.state >= State.AWAIT_OPEN:
            self._after_handshake_step()
        self._flush()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self.conn is not None:
            try:
                self.conn.connection_lost(exc)
            except Exception:
                log.exception("error in the connection_lost handler of %s", self.peer)

    def pause_writing(self) -> None:
        self.pause_reading("write-buffer")
        self.conn.handler.on_writable(False)

    def resume_writing(self) -> None:
        self.resume_reading("write-buffer")
        self.conn.handler.on_writable(True)

    # -------------------------------------------------------------- output
    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        conn = self.conn
        try:
            conn.handler.before_write()
        except Exception:
            log.exception("error in the before_write handler of %s", self.peer)
        out = conn.data_to_send()
        if out:
            self.send_cnt += 1
            self.send_oct += sum(map(len, out))
            transport.writelines(out)
        if conn.close_transport:
            transport.close()
        elif conn.state == State.CLOSING and "close-ok" not in self._timers:
            self._timers["close-ok"] = self.loop.call_later(CLOSE_OK_TIMEOUT, transport.close)

    # ---------------------------------------------------------- read pauses
    def pause_reading(self, reason: str) -> None:
        """Stop reading for a reason (write buffer full, broker backpressure, alarms)."""
        if not self._read_pauses and self.transport is not None:
            self.transport.pause_reading()
        self._read_pauses.add(reason)

    def resume_reading(self, reason: str) -> None:
        """Drop one reason; reading resumes when none is left."""
        if reason in self._read_pauses:
            self._read_pauses.discard(reason)
            if not self._read_pauses and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    @property
    def reading_paused(self) -> bool:
        return bool(self._read_pauses)

    # --------------------------------------------------------------- timers
    def _after_handshake_step(self) -> None:
        conn = self.conn
        if conn.state == State.OPEN:
            timer = self._timers.pop("handshake", None)
            if timer is not None:
                timer.cancel()
        if conn.heartbeat and "heartbeat" not in self._timers:
            self._timers["heartbeat"] = self.loop.call_later(conn.heartbeat / 2, self._heartbeat)

    def _heartbeat(self) -> None:
        conn = self.conn
        if not conn.heartbeat_tick(reading=not self._read_pauses):
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        self._flush()
        self._timers["heartbeat"] = self.loop.call_later(conn.heartbeat / 2, self._heartbeat)

    def _handshake_expired(self) -> None:
        self._timers.pop("handshake", None)
        if self.conn.state < State.OPEN and self.transport is not None:
            log.warning("closing %s: handshake not finished in %gs", self.peer, HANDSHAKE_TIMEOUT)
            self.transport.close()


async def start_server(
    handler_factory: HandlerFactory,
    host: str = "127.0.0.1",
    port: int = 5672,
    **connection_options: Any,
) -> asyncio.Server:
    """Listen for AMQP clients; every connection gets a handler from handler_factory."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: AMQPProtocol(handler_factory, **connection_options), host, port
    )
