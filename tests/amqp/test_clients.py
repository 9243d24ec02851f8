"""Real clients against a server made of the wire layer and the echo test handler.

pika (BlockingConnection), aio-pika and aiormq each connect over TCP on
127.0.0.1 and go through what a user of the client sees: the negotiated
limits and the server's properties, channels opened, closed and reopened,
a publish/consume round trip, a refused login and a refused vhost, channel
and connection errors with their reply codes and texts, a server-initiated
close, and Connection.Blocked / Unblocked. What these clients cannot do
(AMQPLAIN, exact frame sizes, reading a Close they do not expose) is done with
py-amqp or a raw socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from decimal import Decimal

import aio_pika
import aiormq
import pika
import pika.exceptions
import pytest
from aiormq import spec
from pamqp import commands
from pamqp import frame as pframe
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from support.amqp_server import (
    BLOCKED_REASON,
    FORCED_CLOSE_TEXT,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    RawClient,
    ServerThread,
    amqplain_response,
    plain_response,
)

import amqp as py_amqp  # py-amqp (kombu's client), never our amqp/ folder

FRAME_MAX = 65536
CHANNEL_MAX = 100
HEARTBEAT = 30
WATCHDOG = 30  # seconds: a client left waiting is cut off, not hung

CAPABILITIES = (
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
)

LOGIN_REFUSED = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism {}. "
    "For details see the broker logfile."
)
VHOST_REFUSED = "NOT_ALLOWED - access to vhost 'nope' refused for user 'guest'"
MISSING_TEXT = "NOT_FOUND - no queue 'missing' in vhost '/'"
FATAL_TEXT = "INTERNAL_ERROR - the test handler was asked to fail"
FORCED_TEXT = f"CONNECTION_FORCED - {FORCED_CLOSE_TEXT}"

HEADERS = {
    "s": "text",
    "i": 42,
    "neg": -7,
    "big": 2**40,
    "flag": True,
    "dec": Decimal("1.25"),
    "nested": {"k": "v", "n": 1},
    "list": [1, "two", False],
}
CONTENT_TYPE = "application/x-test"
# 204800 bytes: four body frames each way at frame_max 65536.
LARGE = bytes(range(256)) * 800
# (body, message_id), published in this order on one channel.
MESSAGES = [(b"hello \x00\xff world", "m-1"), (LARGE, "m-2"), (b"", "m-3")]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(
        frame_max=FRAME_MAX, channel_max=CHANNEL_MAX, heartbeat=HEARTBEAT, watchdog=WATCHDOG
    ) as srv:
        yield srv


def run(coro, timeout: float = 20):
    """Run one asyncio scenario to its end (no pytest-asyncio here)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def amqp_url(server: ServerThread, password: str = "guest", vhost: str = "", **query) -> str:
    q = "&".join(f"{k}={v}" for k, v in {"heartbeat": HEARTBEAT, **query}.items())
    return f"amqp://guest:{password}@127.0.0.1:{server.port}/{vhost}?{q}"


def server_negotiated(server: ServerThread) -> tuple[int, int, int]:
    """frame_max, channel_max, heartbeat as the server's Connection settled them."""
    conn = server.handler().conn
    return server.call(lambda: (conn.frame_max, conn.channel_max, conn.heartbeat))


def server_channels(server: ServerThread) -> list[int]:
    """The channel numbers the server holds open on the latest connection."""
    conn = server.handler().conn
    return server.call(lambda: sorted(conn.channels))


def check_server_properties(props: dict) -> None:
    assert props["product"] == "warrenmq"
    caps = props["capabilities"]
    assert {cap: caps.get(cap) for cap in CAPABILITIES} == dict.fromkeys(CAPABILITIES, True)


# ====================================================================== pika
@pytest.fixture
def pika_connect(server: ServerThread) -> Iterator:
    opened: list[pika.BlockingConnection] = []

    def connect(password: str = "guest", vhost: str = "/", **params) -> pika.BlockingConnection:
        conn = pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1",
                server.port,
                vhost,
                pika.PlainCredentials("guest", password),
                connection_attempts=1,
                **params,
            )
        )
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        if conn.is_open:
            conn.close()


def pika_roundtrip(ch, queue: str, messages) -> list:
    """Consume from queue, publish messages to it; what came back (the handler echoes)."""
    ch.queue_declare(queue)
    got: list = []
    ch.basic_consume(queue, lambda _ch, m, p, b: got.append((m, p, b)), auto_ack=True)
    for body, message_id in messages:
        props = pika.BasicProperties(
            headers=HEADERS, content_type=CONTENT_TYPE, delivery_mode=2, message_id=message_id
        )
        ch.basic_publish("", queue, body, props)
    for _ in range(100):
        if len(got) >= len(messages):
            break
        ch.connection.process_data_events(0.05)
    return got


class TestPika:
    def test_negotiation(self, server, pika_connect) -> None:
        conn = pika_connect()
        params = conn._impl.params
        assert (params.frame_max, params.channel_max, params.heartbeat) == (
            FRAME_MAX,
            CHANNEL_MAX,
            HEARTBEAT,
        )
        assert server_negotiated(server) == (FRAME_MAX, CHANNEL_MAX, HEARTBEAT)
        check_server_properties(
            {**conn._impl.server_properties, "capabilities": conn._impl.server_capabilities}
        )
        assert conn.basic_nack_supported
        assert conn.consumer_cancel_notify_supported
        assert conn.exchange_exchange_bindings_supported
        assert conn.publisher_confirms_supported

    def test_client_asks_for_less(self, server, pika_connect) -> None:
        """The client's smaller frame_max and channel_max win; heartbeat 0 turns them off."""
        conn = pika_connect(frame_max=8192, channel_max=10, heartbeat=0)
        assert server_negotiated(server) == (8192, 10, 0)
        body = bytes(range(256)) * 100  # 25600 bytes: body frames of 8184 bytes both ways
        got = pika_roundtrip(conn.channel(), "small", [(body, "s-1")])
        assert [b for _m, _p, b in got] == [body]

    def test_channels_open_close_reopen(self, server, pika_connect) -> None:
        conn = pika_connect()
        channels = {n: conn.channel(n) for n in range(1, 6)}
        assert server_channels(server) == [1, 2, 3, 4, 5]
        channels[2].close()
        channels[4].close()
        assert channels[2].is_closed and channels[4].is_closed
        assert server_channels(server) == [1, 3, 5]
        channels[2] = conn.channel(2)
        channels[4] = conn.channel(4)
        assert server_channels(server) == [1, 2, 3, 4, 5]
        for n, ch in channels.items():
            assert ch.queue_declare(f"q{n}").method.queue == f"q{n}"
        channels[3].close()
        assert conn.channel().channel_number == 3  # pika takes the lowest free number
        assert server_channels(server) == [1, 2, 3, 4, 5]

    def test_publish_consume_roundtrip(self, pika_connect) -> None:
        conn = pika_connect()
        got = pika_roundtrip(conn.channel(), "rt", MESSAGES)
        assert [body for _m, _p, body in got] == [body for body, _id in MESSAGES]
        for (method, props, _body), (_, message_id) in zip(got, MESSAGES, strict=True):
            assert (method.exchange, method.routing_key, method.redelivered) == ("", "rt", False)
            assert props.headers == HEADERS
            assert props.content_type == CONTENT_TYPE
            assert props.delivery_mode == 2
            assert props.message_id == message_id
        assert [m.delivery_tag for m, _p, _b in got] == [1, 2, 3]

    def test_one_mebibyte_message_at_the_default_frame_max(self) -> None:
        """Frames of 131072 bytes, each larger than one socket read, both ways."""
        body = bytes(range(256)) * 4096
        with ServerThread(watchdog=WATCHDOG) as srv:
            conn = pika.BlockingConnection(
                pika.ConnectionParameters("127.0.0.1", srv.port, connection_attempts=1)
            )
            try:
                assert conn._impl.params.frame_max == 131072
                got = pika_roundtrip(
                    conn.channel(), "big", [(body, "big-1"), (body[::-1], "big-2")]
                )
            finally:
                conn.close()
        assert [b for _m, _p, b in got] == [body, body[::-1]]
        assert [p.message_id for _m, p, _b in got] == ["big-1", "big-2"]

    def test_client_close(self, server, pika_connect) -> None:
        conn = pika_connect()
        conn.channel()
        conn.close()
        handler = server.handler()
        assert handler.lost.wait(2), "the server did not see the connection end"
        assert handler.conn.close_reason is None

    def test_publisher_confirms(self, pika_connect) -> None:
        conn = pika_connect()
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(3):
            ch.basic_publish("", "q", f"m{i}".encode())  # raises unless confirmed
        assert conn.is_open

    def test_wrong_password(self, pika_connect) -> None:
        with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
            pika_connect(password="wrong")
        assert f"(403) '{LOGIN_REFUSED.format('PLAIN')}'" in str(info.value)

    def test_vhost_refused(self, pika_connect) -> None:
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
            pika_connect(vhost="nope")
        assert f'(530) "{VHOST_REFUSED}"' in str(info.value)

    def test_channel_error_closes_only_that_channel(self, server, pika_connect) -> None:
        conn = pika_connect()
        bad, good = conn.channel(), conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            bad.queue_declare("missing")
        assert (info.value.reply_code, info.value.reply_text) == (404, MISSING_TEXT)
        assert bad.is_closed
        assert good.is_open and conn.is_open
        assert good.queue_declare("still-here").method.queue == "still-here"
        assert server_channels(server) == [good.channel_number]
        again = conn.channel(bad.channel_number)  # the number is free again
        assert again.queue_declare("again").method.queue == "again"

    def test_connection_error(self, server, pika_connect) -> None:
        conn = pika_connect()
        other = conn.channel()
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
            ch.queue_declare("fatal")
        assert (info.value.reply_code, info.value.reply_text) == (541, FATAL_TEXT)
        assert conn.is_closed and other.is_closed
        assert server.handler().lost.wait(2), "the server did not close the socket"

    def test_server_initiated_close(self, server, pika_connect) -> None:
        conn = pika_connect()
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
            ch.queue_declare("shutdown")
        assert (info.value.reply_code, info.value.reply_text) == (320, FORCED_TEXT)
        assert conn.is_closed
        assert server.handler().lost.wait(2), "the server did not close the socket"

    def test_blocked_and_unblocked(self, pika_connect) -> None:
        conn = pika_connect()
        events: list[tuple[str, str | None]] = []
        conn.add_on_connection_blocked_callback(
            lambda _c, frame: events.append(("blocked", frame.method.reason))
        )
        conn.add_on_connection_unblocked_callback(lambda _c, _f: events.append(("unblocked", None)))
        ch = conn.channel()
        ch.queue_declare("block")
        conn.process_data_events(0)
        assert events == [("blocked", BLOCKED_REASON)]
        ch.queue_declare("block")  # already blocked: no second Connection.Blocked
        ch.queue_declare("unblock")
        conn.process_data_events(0)
        assert events == [("blocked", BLOCKED_REASON), ("unblocked", None)]
        ch.queue_declare("unblock")  # not blocked: no second Connection.Unblocked
        conn.process_data_events(0)
        assert len(events) == 2


# ==================================================================== aiormq
async def aiormq_roundtrip(ch, queue: str, messages) -> list:
    await ch.queue_declare(queue)
    got: asyncio.Queue = asyncio.Queue()
    await ch.basic_consume(queue, got.put, no_ack=True)
    for body, message_id in messages:
        props = spec.Basic.Properties(
            headers=HEADERS, content_type=CONTENT_TYPE, delivery_mode=2, message_id=message_id
        )
        await ch.basic_publish(body, routing_key=queue, properties=props)  # waits for the confirm
    return [await got.get() for _ in messages]


class TestAiormq:
    def test_negotiation(self, server) -> None:
        async def scenario():
            conn = await aiormq.connect(amqp_url(server))
            try:
                tune = conn.connection_tune
                assert (tune.frame_max, tune.channel_max, tune.heartbeat) == (
                    FRAME_MAX,
                    CHANNEL_MAX,
                    HEARTBEAT,
                )
                assert server_negotiated(server) == (FRAME_MAX, CHANNEL_MAX, HEARTBEAT)
                check_server_properties(conn.server_properties)
                assert conn.basic_nack and conn.publisher_confirms
                assert conn.exchange_exchange_bindings and conn.consumer_cancel_notify
                # aiormq does not count its channels: the server refuses one too many,
                # whatever its number (RabbitMQ counts channels, not numbers).
                for n in range(1, CHANNEL_MAX + 1):
                    await conn.channel(1000 + n, publisher_confirms=False)
                with pytest.raises(aiormq.exceptions.ConnectionNotAllowed) as info:
                    await conn.channel(1, publisher_confirms=False)
                assert info.value.args == (
                    f"NOT_ALLOWED - number of channels opened ({CHANNEL_MAX}) has reached "
                    f"the negotiated channel_max ({CHANNEL_MAX})",
                )
            finally:
                await conn.close()

        run(scenario())

    def test_channels_open_close_reopen(self, server) -> None:
        async def scenario():
            conn = await aiormq.connect(amqp_url(server))
            try:
                channels = {n: await conn.channel(n) for n in range(1, 6)}
                assert server_channels(server) == [1, 2, 3, 4, 5]
                await channels[2].close()
                await channels[4].close()
                assert server_channels(server) == [1, 3, 5]
                channels[2] = await conn.channel(2)
                channels[4] = await conn.channel(4)
                assert server_channels(server) == [1, 2, 3, 4, 5]
                for n, ch in channels.items():
                    assert (await ch.queue_declare(f"q{n}")).queue == f"q{n}"
                await channels[5].close()
                assert (await conn.channel()).number == 5  # the highest in use + 1
                assert server_channels(server) == [1, 2, 3, 4, 5]
            finally:
                await conn.close()

        run(scenario())

    def test_publish_consume_roundtrip(self, server) -> None:
        async def scenario():
            conn = await aiormq.connect(amqp_url(server))
            try:
                got = await aiormq_roundtrip(await conn.channel(), "rt", MESSAGES)
            finally:
                await conn.close()
            assert [m.body for m in got] == [body for body, _id in MESSAGES]
            for m, (_, message_id) in zip(got, MESSAGES, strict=True):
                assert (m.delivery.exchange, m.delivery.routing_key) == ("", "rt")
                props = m.header.properties
                assert props.headers == HEADERS
                assert props.content_type == CONTENT_TYPE
                assert props.delivery_mode == 2
                assert props.message_id == message_id
            assert [m.delivery.delivery_tag for m in got] == [1, 2, 3]

        run(scenario())

    def test_one_mebibyte_message_at_the_default_frame_max(self) -> None:
        body = bytes(range(256)) * 4096

        async def scenario(port: int):
            conn = await aiormq.connect(f"amqp://guest:guest@127.0.0.1:{port}/")
            try:
                assert conn.connection_tune.frame_max == 131072
                return await aiormq_roundtrip(await conn.channel(), "big", [(body, "big-1")])
            finally:
                await conn.close()

        with ServerThread(watchdog=WATCHDOG) as srv:
            got = run(scenario(srv.port))
        assert [m.body for m in got] == [body]
        assert got[0].header.properties.headers == HEADERS

    def test_wrong_password(self, server) -> None:
        with pytest.raises(aiormq.exceptions.ProbableAuthenticationError) as info:
            run(aiormq.connect(amqp_url(server, password="wrong")))
        assert info.value.args == (LOGIN_REFUSED.format("PLAIN"),)

    def test_vhost_refused(self, server) -> None:
        """aiormq reports the Close it got instead of Open-Ok, without its code and text."""
        with pytest.raises(aiormq.exceptions.InvalidFrameError) as info:
            run(aiormq.connect(amqp_url(server, vhost="nope")))
        assert "got <Connection.Close" in str(info.value)
        # What was in that Close (TestRawSocket reads it off the wire):
        reason = server.handler().conn.close_reason
        assert (reason.code, reason.reply_text) == (530, VHOST_REFUSED)

    def test_channel_error_closes_only_that_channel(self, server) -> None:
        async def scenario():
            conn = await aiormq.connect(amqp_url(server))
            try:
                bad, good = await conn.channel(), await conn.channel()
                with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity) as info:
                    await bad.queue_declare("missing")
                assert info.value.args == (MISSING_TEXT,)
                assert bad.is_closed
                assert not good.is_closed and not conn.is_closed
                assert (await good.queue_declare("still-here")).queue == "still-here"
                assert server_channels(server) == [good.number]
                again = await conn.channel(bad.number)
                assert (await again.queue_declare("again")).queue == "again"
            finally:
                await conn.close()

        run(scenario())

    @pytest.mark.parametrize(
        ("queue", "error", "args"),
        [
            ("fatal", aiormq.exceptions.ConnectionInternalError, (FATAL_TEXT,)),
            ("shutdown", aiormq.exceptions.ConnectionClosed, (320, FORCED_TEXT)),
        ],
    )
    def test_connection_closed_by_server(self, server, queue, error, args) -> None:
        async def scenario():
            conn = await aiormq.connect(amqp_url(server))
            try:
                other = await conn.channel()
                ch = await conn.channel()
                with pytest.raises(error) as info:
                    await ch.queue_declare(queue)
                assert type(info.value) is error and info.value.args == args
                with pytest.raises(error) as closing:
                    await asyncio.wait_for(conn.closing, 2)
                assert closing.value.args == args
                assert conn.is_closed and other.is_closed
            finally:
                await conn.close()

        run(scenario())
        assert server.handler().lost.wait(2), "the server did not close the socket"

    def test_blocked_and_unblocked(self, server, caplog) -> None:
        """aiormq's ready() waits while the connection is blocked."""

        async def scenario():
            conn = await aiormq.connect(amqp_url(server))
            try:
                ch = await conn.channel()
                await asyncio.wait_for(conn.ready(), 1)
                await ch.queue_declare("block")
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(conn.ready(), 0.2)
                await ch.queue_declare("unblock")
                await asyncio.wait_for(conn.ready(), 1)
            finally:
                await conn.close()

        caplog.set_level(logging.WARNING, logger="aiormq.connection")
        run(scenario())
        blocked = [r.getMessage() for r in caplog.records if "was blocked by" in r.getMessage()]
        assert len(blocked) == 1 and blocked[0].endswith(f"'{BLOCKED_REASON}'")


# ================================================================== aio-pika
class TestAioPika:
    def test_negotiation(self, server) -> None:
        async def scenario():
            conn = await aio_pika.connect_robust(amqp_url(server))
            try:
                underlying = conn.transport.connection  # aio-pika's aiormq connection
                tune = underlying.connection_tune
                assert (tune.frame_max, tune.channel_max, tune.heartbeat) == (
                    FRAME_MAX,
                    CHANNEL_MAX,
                    HEARTBEAT,
                )
                assert server_negotiated(server) == (FRAME_MAX, CHANNEL_MAX, HEARTBEAT)
                check_server_properties(underlying.server_properties)
            finally:
                await conn.close()

        run(scenario())

    def test_channels_open_close_reopen(self, server) -> None:
        async def scenario():
            conn = await aio_pika.connect(amqp_url(server))
            try:
                channels = {n: await conn.channel(channel_number=n) for n in range(1, 6)}
                assert server_channels(server) == [1, 2, 3, 4, 5]
                await channels[2].close()
                await channels[4].close()
                assert channels[2].is_closed and channels[4].is_closed
                assert server_channels(server) == [1, 3, 5]
                channels[2] = await conn.channel(channel_number=2)
                channels[4] = await conn.channel(channel_number=4)
                assert server_channels(server) == [1, 2, 3, 4, 5]
                for n, ch in channels.items():
                    assert (await ch.declare_queue(f"q{n}")).name == f"q{n}"
            finally:
                await conn.close()

        run(scenario())

    def test_publish_consume_roundtrip(self, server) -> None:
        async def scenario():
            conn = await aio_pika.connect_robust(amqp_url(server))
            try:
                ch = await conn.channel()
                queue = await ch.declare_queue("rt")
                got: asyncio.Queue = asyncio.Queue()
                await queue.consume(got.put, no_ack=True)
                for body, message_id in MESSAGES:
                    message = aio_pika.Message(
                        body,
                        headers=HEADERS,
                        content_type=CONTENT_TYPE,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message_id,
                    )
                    await ch.default_exchange.publish(message, routing_key="rt")
                return [await got.get() for _ in MESSAGES]
            finally:
                await conn.close()

        got = run(scenario())
        assert [m.body for m in got] == [body for body, _id in MESSAGES]
        for m, (_, message_id) in zip(got, MESSAGES, strict=True):
            assert (m.exchange, m.routing_key, m.redelivered) == ("", "rt", False)
            assert m.headers == HEADERS
            assert m.content_type == CONTENT_TYPE
            assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert m.message_id == message_id
        assert [m.delivery_tag for m in got] == [1, 2, 3]

    def test_wrong_password(self, server) -> None:
        with pytest.raises(aiormq.exceptions.ProbableAuthenticationError) as info:
            run(aio_pika.connect(amqp_url(server, password="wrong")))
        assert info.value.args == (LOGIN_REFUSED.format("PLAIN"),)

    def test_vhost_refused(self, server) -> None:
        """As with aiormq (under it): the Close is reported without its code and text."""
        with pytest.raises(aiormq.exceptions.InvalidFrameError) as info:
            run(aio_pika.connect(amqp_url(server, vhost="nope")))
        assert "got <Connection.Close" in str(info.value)
        # What was in that Close (TestRawSocket reads it off the wire):
        reason = server.handler().conn.close_reason
        assert (reason.code, reason.reply_text) == (530, VHOST_REFUSED)

    def test_channel_error_closes_only_that_channel(self, server) -> None:
        async def scenario():
            conn = await aio_pika.connect(amqp_url(server))
            try:
                bad, good = await conn.channel(), await conn.channel()
                with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity) as info:
                    await bad.declare_queue("missing")
                assert info.value.args == (MISSING_TEXT,)
                assert bad.is_closed and not good.is_closed
                assert (await good.declare_queue("still-here")).name == "still-here"
                assert server_channels(server) == [good.number]
            finally:
                await conn.close()

        run(scenario())

    @pytest.mark.parametrize(
        ("queue", "error", "args"),
        [
            ("fatal", aiormq.exceptions.ConnectionInternalError, (FATAL_TEXT,)),
            ("shutdown", aiormq.exceptions.ConnectionClosed, (320, FORCED_TEXT)),
        ],
    )
    def test_connection_closed_by_server(self, server, queue, error, args) -> None:
        async def scenario():
            conn = await aio_pika.connect(amqp_url(server))
            seen: list[BaseException | None] = []
            conn.close_callbacks.add(lambda _c, exc: seen.append(exc))
            try:
                ch = await conn.channel()
                with pytest.raises(error) as info:
                    await ch.declare_queue(queue)
                assert type(info.value) is error and info.value.args == args
                for _ in range(100):
                    if seen:
                        break
                    await asyncio.sleep(0.01)
                assert len(seen) == 1 and type(seen[0]) is error and seen[0].args == args
                assert ch.is_closed
            finally:
                await conn.close()

        run(scenario())
        assert server.handler().lost.wait(2), "the server did not close the socket"

    def test_blocked_and_unblocked(self) -> None:
        pytest.skip(
            "aio-pika has no hook for Connection.Blocked/Unblocked; aiormq under it "
            "is tested in TestAiormq.test_blocked_and_unblocked"
        )


# ================================================== py-amqp and raw sockets
class TestAmqplain:
    """No client above speaks AMQPLAIN; py-amqp (kombu's) does, and so does a raw socket."""

    def test_py_amqp_good_credentials(self, server) -> None:
        conn = py_amqp.Connection(
            host=f"127.0.0.1:{server.port}",
            userid="guest",
            password="guest",
            login_method="AMQPLAIN",
        )
        try:
            conn.connect()
            assert conn.server_properties["product"] == "warrenmq"
            ch = conn.channel()
            assert ch.queue_declare("amqplain")[0] == "amqplain"
        finally:
            conn.close()
        assert server.handler().conn.username == "guest"

    def test_py_amqp_wrong_password(self, server) -> None:
        conn = py_amqp.Connection(
            host=f"127.0.0.1:{server.port}",
            userid="guest",
            password="wrong",
            login_method="AMQPLAIN",
        )
        try:
            with pytest.raises(py_amqp.exceptions.AccessRefused) as info:
                conn.connect()
        finally:
            conn.collect()
        assert (info.value.reply_code, info.value.reply_text) == (
            403,
            LOGIN_REFUSED.format("AMQPLAIN"),
        )

    def test_raw_good_credentials(self, server) -> None:
        with RawClient(server.port) as raw:
            raw.open(mechanism="AMQPLAIN", response=amqplain_response("guest", "guest"))
            assert "AMQPLAIN" in raw.start.mechanisms.split()
            raw.send_method(1, commands.Channel.Open())
            raw.expect("Channel.OpenOk", 1)
        assert server.handler().conn.username == "guest"

    def test_raw_wrong_password(self, server) -> None:
        with RawClient(server.port) as raw:
            raw.login(
                "AMQPLAIN",
                amqplain_response("guest", "wrong"),
                capabilities={"authentication_failure_close": True},
            )
            frames = raw.read_until_closed()
        assert [f[0] for f in frames] == [FRAME_METHOD]
        close = frames[0][2]
        assert (close.name, close.reply_code, close.reply_text) == (
            "Connection.Close",
            403,
            LOGIN_REFUSED.format("AMQPLAIN"),
        )

    def test_raw_wrong_password_without_failure_close_capability(self, server) -> None:
        """A client that did not ask for authentication_failure_close is just disconnected."""
        with RawClient(server.port) as raw:
            raw.login("PLAIN", plain_response("guest", "wrong"))
            assert raw.read_until_closed() == []


class TestRawSocket:
    """What the clients above cannot show: the Close they hide, exact frame sizes."""

    def test_vhost_refused_close(self, server) -> None:
        with RawClient(server.port) as raw:
            raw.handshake(vhost="nope")
            close = raw.expect("Connection.Close", 0)
            assert (close.reply_code, close.reply_text) == (530, VHOST_REFUSED)
            assert (close.class_id, close.method_id) == (10, 40)  # connection.open
            raw.send_method(0, commands.Connection.CloseOk())
            assert raw.read_until_closed() == []

    @pytest.mark.parametrize("announces", [True, False])
    def test_blocked_only_for_clients_that_announce_it(self, server, announces) -> None:
        with RawClient(server.port) as raw:
            raw.open(capabilities={"connection.blocked": announces})
            raw.send_method(1, commands.Channel.Open())
            raw.expect("Channel.OpenOk", 1)
            for queue in ("block", "unblock"):
                raw.send_method(1, commands.Queue.Declare(queue=queue))
            if announces:
                expected = ["Connection.Blocked", "Queue.DeclareOk"]
                expected += ["Connection.Unblocked", "Queue.DeclareOk"]
            else:
                expected = ["Queue.DeclareOk", "Queue.DeclareOk"]
            methods = [raw.read_method()[1] for _ in expected]
            assert [m.name for m in methods] == expected
            if announces:
                assert methods[0].reason == BLOCKED_REASON

    def test_server_close_without_close_ok(self, server) -> None:
        """A client that never answers the server's Close is hung up on after a few seconds."""
        with RawClient(server.port, timeout=8) as raw:
            raw.open()
            raw.send_method(1, commands.Channel.Open())
            raw.expect("Channel.OpenOk", 1)
            raw.send_method(1, commands.Queue.Declare(queue="shutdown"))
            close = raw.expect("Connection.Close", 0)
            assert (close.reply_code, close.reply_text) == (320, FORCED_TEXT)
            assert (close.class_id, close.method_id) == (0, 0)  # not caused by a method
            asked = time.monotonic()
            # Anything but Close / Close-Ok is ignored now: no answer to this.
            raw.send_method(1, commands.Queue.Declare(queue="ignored"))
            assert raw.read_until_closed() == []
            assert 1 <= time.monotonic() - asked <= 6
        assert server.handler().declared == ["shutdown"]

    def test_frames_respect_a_small_frame_max(self, server) -> None:
        """With frame_max 4096 both ways, a 20000-byte message travels in 4088-byte pieces."""
        body = bytes(range(200)) * 100
        with RawClient(server.port) as raw:
            raw.open(frame_max=4096)
            assert server_negotiated(server)[0] == 4096
            raw.send_method(1, commands.Channel.Open())
            raw.expect("Channel.OpenOk", 1)
            raw.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="c"))
            raw.expect("Basic.ConsumeOk", 1)
            frames = [commands.Basic.Publish(exchange="", routing_key="q")]
            frames.append(ContentHeader(0, len(body), commands.Basic.Properties(message_id="x")))
            frames += [ContentBody(body[i : i + 4088]) for i in range(0, len(body), 4088)]
            raw.send(b"".join(pframe.marshal(f, 1) for f in frames))
            raw.frame_sizes.clear()
            deliver = raw.expect("Basic.Deliver", 1)
            assert (deliver.consumer_tag, deliver.routing_key) == ("c", "q")
            ftype, _ch, header = raw.read_frame()
            assert ftype == FRAME_HEADER and header.body_size == len(body)
            assert header.properties.message_id == "x"
            received = b""
            while len(received) < len(body):
                ftype, _ch, part = raw.read_frame()
                assert ftype == FRAME_BODY
                received += part.value
        assert received == body
        assert max(raw.frame_sizes) == 4096
        assert len(raw.frame_sizes) == 2 + 5  # deliver, header, five body frames
