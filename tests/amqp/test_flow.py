"""Flow control at the socket: a consumer that stops reading stops being read.

The handler floods a consumer with 256 KiB deliveries, one per event-loop
turn. When the client stops reading, the server's write buffer fills, the
transport pauses writing, the handler hears `on_writable(False)` and stops,
and the server stops reading that client: a command the client sends
meanwhile is not seen until the client drains its socket. Then writing and
reading resume, the command is answered, and every delivery arrives whole.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator

import pika
import pytest
from pamqp import commands
from support.amqp_server import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    HEARTBEAT,
    RawClient,
    ServerThread,
)

BODY = 256 * 1024


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(heartbeat=0, watchdog=30) as srv:
        yield srv


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def server_state(server: ServerThread, handler) -> dict:
    def read() -> dict:
        return {
            "reading_paused": handler.conn.transport_protocol.reading_paused,
            "writable_events": list(handler.writable_events),
            "flooding": handler.flooding,
            "flood_sent": handler.flood_sent,
            "declared": list(handler.declared),
        }

    return server.call(read)


def check_flood_body(seq: int, body: bytes) -> None:
    assert len(body) == BODY
    assert struct.unpack_from(">Q", body)[0] == seq
    assert body[8:] == bytes([seq % 251]) * (BODY - 8)


def drain_flood(raw: RawClient, flood_sent: int) -> None:
    """Read the flood's Declare-Ok and its deliveries, checking every one."""
    assert raw.expect("Queue.DeclareOk", 1).queue == "flood"
    for seq in range(1, flood_sent + 1):
        deliver = raw.expect("Basic.Deliver", 1)
        assert (deliver.delivery_tag, deliver.routing_key) == (seq, "flood")
        ftype, _ch, header = raw.read_frame()
        assert ftype == FRAME_HEADER and header.body_size == BODY
        body = b""
        while len(body) < BODY:
            ftype, _ch, part = raw.read_frame()
            if ftype == FRAME_HEARTBEAT:
                continue  # may come between frames of a delivery
            assert ftype == FRAME_BODY
            body += part.value
        check_flood_body(seq, body)


def start_flood(server: ServerThread, raw: RawClient, **open_args):
    """Handshake, a consumer on channel 1, and the flood asked for; returns the handler."""
    raw.open(**open_args)
    raw.send_method(1, commands.Channel.Open())
    raw.expect("Channel.OpenOk", 1)
    raw.send_method(1, commands.Basic.Consume(queue="flood", consumer_tag="c"))
    raw.expect("Basic.ConsumeOk", 1)
    handler = server.handler()
    raw.send_method(1, commands.Queue.Declare(queue="flood"))
    # ... and read nothing until the server has given up writing.
    wait_until(lambda: server_state(server, handler)["reading_paused"])
    wait_until(lambda: not server_state(server, handler)["flooding"])
    return handler


def test_server_stops_reading_a_client_that_stops_reading(server) -> None:
    with RawClient(server.port, rcvbuf=32 * 1024, timeout=10) as raw:
        handler = start_flood(server, raw)
        state = server_state(server, handler)
        assert state["writable_events"] == [False]
        assert 0 < state["flood_sent"] < handler.flood_limit
        flood_sent = state["flood_sent"]

        # A command sent now stays in the socket: the server is not reading.
        raw.send_method(1, commands.Queue.Declare(queue="probe"))
        time.sleep(0.3)
        state = server_state(server, handler)
        assert state["declared"] == ["flood"]
        assert state["reading_paused"]

        # Drain: every delivery arrives whole and in order, then the probe's answer.
        drain_flood(raw, flood_sent)
        assert raw.expect("Queue.DeclareOk", 1).queue == "probe"

        state = server_state(server, handler)
        assert not state["reading_paused"]
        assert state["writable_events"] == [False, True]
        assert state["declared"] == ["flood", "probe"]
        assert state["flood_sent"] == flood_sent  # the flood did not restart


def test_pika_consumer_that_stops_processing_events(server) -> None:
    """pika reads the socket only inside its calls: between them it is a slow consumer."""
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", server.port, heartbeat=0, connection_attempts=1)
    )
    try:
        ch = conn.channel()
        got: list[bytes] = []
        ch.basic_consume("flood", lambda _c, _m, _p, body: got.append(body), auto_ack=True)
        handler = server.handler()
        ch.queue_declare("flood")

        wait_until(lambda: server_state(server, handler)["reading_paused"])
        wait_until(lambda: not server_state(server, handler)["flooding"])
        flood_sent = server_state(server, handler)["flood_sent"]
        assert 0 < flood_sent < handler.flood_limit

        deadline = time.monotonic() + 10
        while len(got) < flood_sent and time.monotonic() < deadline:
            conn.process_data_events(0.05)
        assert len(got) == flood_sent
        for seq, body in enumerate(got, 1):
            check_flood_body(seq, body)

        # Writing drained: the server reads this client again and answers it.
        assert ch.queue_declare("after").method.queue == "after"
        state = server_state(server, handler)
        assert not state["reading_paused"]
        assert state["writable_events"] == [False, True]
    finally:
        if conn.is_open:
            conn.close()


def test_heartbeats_unread_while_paused_do_not_count_as_silence() -> None:
    """A client the server stopped reading is not dropped for 'missed' heartbeats.

    The client keeps sending heartbeats while it reads nothing; the server, not
    reading them because its own write buffer is full, must not take that for
    silence (RabbitMQ pauses its heartbeat monitor while it does not read).
    """
    with (
        ServerThread(heartbeat=1, watchdog=30) as server,
        RawClient(server.port, rcvbuf=32 * 1024, timeout=10) as raw,
    ):
        handler = start_flood(server, raw, heartbeat=1)
        # Three heartbeat intervals of heartbeats, nothing read.
        for _ in range(6):
            raw.send(HEARTBEAT)
            time.sleep(0.5)
        raw.send_method(1, commands.Queue.Declare(queue="probe"))
        assert server.call(lambda: handler.conn.is_open), (
            "the server gave up on a client whose heartbeats it was not reading"
        )
        drain_flood(raw, server_state(server, handler)["flood_sent"])
        assert raw.expect("Queue.DeclareOk", 1).queue == "probe"
