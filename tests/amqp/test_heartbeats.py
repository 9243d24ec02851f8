"""Heartbeats over real TCP: idle clients stay connected, a silent one is dropped.

With a 1-second heartbeat the server sends a heartbeat frame every half
interval when it has sent nothing else, counts any frame from the client as
a sign of life, and closes the socket after two whole intervals of silence
(like RabbitMQ, with no Connection.Close). pika, aiormq and aio-pika idle for
three seconds and must still be connected, having received the server's
heartbeats; a raw client that goes silent after the handshake must be dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import aio_pika
import aiormq
import pika
import pytest
from pamqp import commands
from pamqp.heartbeat import Heartbeat
from support.amqp_server import FRAME_HEARTBEAT, RawClient, ServerThread

IDLE = 3.0  # seconds: longer than the two intervals after which a silent client is dropped


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(heartbeat=1, watchdog=30) as srv:
        yield srv


def received_heartbeats(caplog) -> int:
    """Heartbeat frames aiormq logged as received (its reader logs every frame at DEBUG)."""
    return sum(
        1
        for r in caplog.records
        if r.name == "aiormq.connection"
        and r.msg.startswith("Received frame")
        and isinstance(r.args[0], Heartbeat)
    )


def test_pika_idle_connection_stays_open(server) -> None:
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", server.port, connection_attempts=1)
    )
    try:
        assert conn._impl.params.heartbeat == 1  # pika takes the server's proposal
        conn.sleep(IDLE)  # pika does its I/O (and sends heartbeats) while it sleeps
        assert conn.is_open
        assert not server.handler().lost.is_set()
        # Every 0.5 s with nothing else to send: about six in three seconds.
        assert conn._impl._heartbeat_checker._heartbeat_frames_received >= 4
        assert conn.channel().queue_declare("after-idle").method.queue == "after-idle"
    finally:
        if conn.is_open:
            conn.close()


@pytest.mark.parametrize("client", ["aiormq", "aio-pika"])
def test_asyncio_client_idle_connection_stays_open(server, caplog, client) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{server.port}/?heartbeat=1"

    async def scenario() -> None:
        if client == "aiormq":
            conn = await aiormq.connect(url)
            underlying = conn
        else:
            conn = await aio_pika.connect(url)
            underlying = conn.transport.connection
        try:
            assert underlying.connection_tune.heartbeat == 1
            await asyncio.sleep(IDLE)
            assert not underlying.is_closed
            assert not server.handler().lost.is_set()
            channel = await conn.channel()
            if client == "aiormq":
                assert (await channel.queue_declare("after-idle")).queue == "after-idle"
            else:
                assert (await channel.declare_queue("after-idle")).name == "after-idle"
        finally:
            await conn.close()

    caplog.set_level(logging.DEBUG, logger="aiormq.connection")
    asyncio.run(asyncio.wait_for(scenario(), IDLE + 10))
    assert received_heartbeats(caplog) >= 4


def test_silent_client_is_dropped_after_two_intervals() -> None:
    """A raw client with heartbeat 1 goes silent: heartbeats arrive, then the socket closes.

    Beside it, a raw client that turned heartbeats off (0) is silent too and must
    get no heartbeats and keep its connection.
    """
    with (
        ServerThread(heartbeat=60, watchdog=30) as server,
        RawClient(server.port, timeout=8) as silent,
        RawClient(server.port) as no_heartbeats,
    ):
        tune = silent.open(heartbeat=1)  # the client lowers the server's 60
        assert tune.heartbeat == 60
        quiet_since = time.monotonic()
        no_heartbeats.open(heartbeat=0)

        frames = silent.read_until_closed()
        closed_after = time.monotonic() - quiet_since

        assert 1.5 <= closed_after <= 5, f"closed after {closed_after:.2f}s"
        kinds = [ftype for ftype, _ch, _f in frames]
        assert kinds.count(FRAME_HEARTBEAT) >= 2, kinds
        assert set(kinds) == {FRAME_HEARTBEAT}  # and no Connection.Close, like RabbitMQ

        # The other client has been silent as long and is still connected, unbothered.
        no_heartbeats.sock.settimeout(0)
        with pytest.raises(BlockingIOError):
            no_heartbeats.sock.recv(1)
        no_heartbeats.sock.settimeout(5)
        no_heartbeats.send_method(1, commands.Channel.Open())
        no_heartbeats.expect("Channel.OpenOk", 1)
        assert 8 not in no_heartbeats.frame_sizes  # no heartbeat frame, ever

        silent_handler, quiet_handler = server.handlers
        assert silent_handler.lost.is_set() and not quiet_handler.lost.is_set()


def test_client_heartbeats_keep_a_silent_connection_alive(server) -> None:
    """Heartbeat frames alone count as life: a raw client sending only those stays."""
    with RawClient(server.port) as raw:
        raw.open(heartbeat=1)
        deadline = time.monotonic() + IDLE
        received = 0
        while time.monotonic() < deadline:
            raw.send(b"\x08\x00\x00\x00\x00\x00\x00\xce")
            raw.sock.settimeout(0.5)
            try:
                ftype, _ch, _f = raw.read_frame()
                assert ftype == FRAME_HEARTBEAT
                received += 1
            except TimeoutError:
                pass
        raw.sock.settimeout(5)
        raw.send_method(1, commands.Channel.Open())
        raw.expect("Channel.OpenOk", 1)
        assert received >= 2
        assert not server.handler().lost.is_set()
