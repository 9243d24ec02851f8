"""Where a stream consumer starts (x-stream-offset), what it is delivered, and how acks count.

Messages are published one batch each (confirms, waiting for each) unless a
test publishes in one transaction, which the broker appends as one batch.
Absence is shown by order, never by waiting: deliveries come in offset
order, so when a later message arrives first, an earlier one was skipped.
"""

from __future__ import annotations

import asyncio
import datetime
import time

import aio_pika
import pika
import pytest
from support.streams import (
    consume,
    declare_stream,
    publish,
    publish_together,
    pump_until,
    round_trip,
)

BODIES = [f"m{i}" for i in range(5)]


@pytest.fixture
def stream(connect, names) -> str:
    """A stream holding m0..m4 at offsets 0..4, each message its own batch, header i = index."""
    q = names()
    ch = connect().channel()
    declare_stream(ch, q)
    publish(ch, q, BODIES)
    return q


def test_first_reads_everything_with_offset_headers(connect, stream):
    conn = connect()
    got = consume(conn, conn.channel(), stream, offset="first", wait_for=5)
    assert got.bodies == BODIES
    assert got.offsets == [0, 1, 2, 3, 4]
    assert [d.headers for d in got.got] == [{"i": i, "x-stream-offset": i} for i in range(5)]
    assert not any(d.redelivered for d in got.got)
    assert [d.tag for d in got.got] == [1, 2, 3, 4, 5]


def test_an_offset_reads_from_there(connect, stream):
    conn = connect()
    got = consume(conn, conn.channel(), stream, offset=3, wait_for=2)
    assert (got.bodies, got.offsets) == (["m3", "m4"], [3, 4])


def test_an_offset_below_the_start_reads_from_the_start(connect, stream):
    conn = connect()
    got = consume(conn, conn.channel(), stream, offset=-1, wait_for=5)
    assert got.offsets == [0, 1, 2, 3, 4]


def test_an_offset_past_the_end_waits_for_that_offset(connect, stream):
    conn = connect()
    got = consume(conn, conn.channel(), stream, offset=6)
    publish(connect().channel(), stream, ["m5", "m6", "m7"])
    pump_until(conn, lambda: len(got.got) >= 2)
    assert (got.bodies, got.offsets) == (["m6", "m7"], [6, 7])


@pytest.mark.parametrize("offset", ["next", None])
def test_next_reads_only_what_is_published_afterwards(connect, stream, offset):
    conn = connect()
    got = consume(conn, conn.channel(), stream, offset=offset)
    publish(connect().channel(), stream, ["m5"])
    pump_until(conn, lambda: len(got.got) >= 1)
    assert (got.bodies, got.offsets) == (["m5"], [5])


def test_last_reads_the_last_batch(connect, stream):
    conn = connect()
    got = consume(conn, conn.channel(), stream, offset="last", wait_for=1)
    assert (got.bodies, got.offsets) == (["m4"], [4])
    publish(connect().channel(), stream, ["m5"])
    pump_until(conn, lambda: len(got.got) == 2)
    assert got.offsets == [4, 5]


@pytest.mark.warrenmq_only  # RabbitMQ may write a transaction's messages in more than one chunk
def test_last_reads_every_message_of_a_batch(connect, stream):
    publish_together(connect().channel(), stream, ["t0", "t1", "t2"])  # one turn: one batch, 5..7
    conn = connect()
    got = consume(conn, conn.channel(), stream, offset="last", wait_for=3)
    assert (got.bodies, got.offsets) == (["t0", "t1", "t2"], [5, 6, 7])


def test_an_interval_reads_what_was_published_within_it(connect, names):
    q = names()
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, q)
    publish(ch, q, ["old0", "old1"])
    time.sleep(2.5)  # the old messages are now more than 2 s old
    publish(ch, q, ["new0", "new1"])
    got = consume(conn, conn.channel(), q, offset="2s", wait_for=2)
    assert (got.bodies, got.offsets) == (["new0", "new1"], [2, 3])
    everything = consume(conn, conn.channel(), q, offset="1h", wait_for=4)
    assert everything.offsets == [0, 1, 2, 3]


def test_a_timestamp_reads_from_the_first_message_at_or_after_it(names, broker, run):
    """aio-pika sends a datetime as an AMQP timestamp (seconds)."""
    q = names()

    async def scenario() -> list[tuple[str, int]]:
        conn = await aio_pika.connect(broker.url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            await ch.declare_queue(q, durable=True, arguments={"x-queue-type": "stream"})
            for body in ("before0", "before1"):
                await ch.default_exchange.publish(aio_pika.Message(body.encode()), routing_key=q)
            moment = int(time.time()) + 1
            while time.time() < moment + 0.05:  # every message from here on is at or after moment
                await asyncio.sleep(0.05)
            for body in ("after0", "after1"):
                await ch.default_exchange.publish(aio_pika.Message(body.encode()), routing_key=q)
            reader = await conn.channel()
            await reader.set_qos(prefetch_count=10)
            queue = await reader.get_queue(q, ensure=False)
            got: list[tuple[str, int]] = []
            done = asyncio.Event()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                got.append((message.body.decode(), message.headers["x-stream-offset"]))
                await message.ack()
                if len(got) == 2:
                    done.set()

            start = datetime.datetime.fromtimestamp(moment, tz=datetime.UTC)
            await queue.consume(on_message, arguments={"x-stream-offset": start})
            await done.wait()
            return got

    assert run(scenario()) == [("after0", 2), ("after1", 3)]


def test_a_timestamp_after_every_message_waits_for_new_ones(connect, stream):
    conn = connect()
    later = datetime.datetime.fromtimestamp(int(time.time()) - 3600, tz=datetime.UTC)
    got = consume(conn, conn.channel(), stream, offset=later, wait_for=5)
    assert got.offsets == [0, 1, 2, 3, 4]


def test_consumers_read_independently(connect, stream):
    conn = connect()
    slow_ch, fast_ch = conn.channel(), conn.channel()
    slow = consume(conn, slow_ch, stream, offset="first", prefetch=2, wait_for=2)
    fast = consume(conn, fast_ch, stream, offset="first", prefetch=10, wait_for=5)
    for d in fast.got:
        fast_ch.basic_ack(d.tag)
    assert fast.offsets == [0, 1, 2, 3, 4]
    round_trip(fast_ch, stream)
    assert slow.offsets == [0, 1]  # its credit is its own: the other's acks gave it none
    slow_ch.basic_ack(slow.got[1].tag, multiple=True)
    pump_until(conn, lambda: len(slow.got) == 4)
    assert slow.offsets == [0, 1, 2, 3]


def test_two_consumers_on_one_channel_each_get_every_message(names, broker, run):
    q = names()

    async def scenario() -> tuple[list[int], list[int]]:
        conn = await aio_pika.connect(broker.url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            queue = await ch.declare_queue(q, durable=True, arguments={"x-queue-type": "stream"})
            for i in range(6):
                await ch.default_exchange.publish(aio_pika.Message(f"m{i}".encode()), routing_key=q)
            await ch.set_qos(prefetch_count=3)
            seen: dict[str, list[int]] = {"a": [], "b": []}
            done = asyncio.Event()

            def on(name: str):  # noqa: ANN202
                async def handler(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                    seen[name].append(message.headers["x-stream-offset"])
                    await message.ack()
                    if len(seen["a"]) == len(seen["b"]) == 6:
                        done.set()

                return handler

            await queue.consume(on("a"), arguments={"x-stream-offset": "first"})
            await queue.consume(on("b"), arguments={"x-stream-offset": 0})
            await done.wait()
            return seen["a"], seen["b"]

    assert run(scenario()) == (list(range(6)), list(range(6)))


@pytest.mark.rabbitmq4  # RabbitMQ 3.x closes the connection: 540, not supported by stream queues
@pytest.mark.parametrize("settle", ["nack_requeue", "nack", "reject_requeue", "recover"])
def test_nack_reject_and_recover_only_return_credit(connect, stream, settle):
    conn = connect()
    ch = conn.channel()
    got = consume(conn, ch, stream, offset="first", prefetch=2, wait_for=2)
    first = got.got[0]
    if settle == "nack_requeue":
        ch.basic_nack(first.tag, requeue=True)
    elif settle == "nack":
        ch.basic_nack(first.tag, requeue=False)
    elif settle == "reject_requeue":
        ch.basic_reject(first.tag, requeue=True)
    else:
        ch.basic_recover(requeue=True)
    pump_until(conn, lambda: len(got.got) >= 3)
    assert got.offsets[:3] == [0, 1, 2]  # the next one, nothing again
    assert not any(d.redelivered for d in got.got)


def test_a_cancelled_consumer_gets_nothing_more(connect, stream):
    conn = connect()
    ch = conn.channel()
    got = consume(conn, ch, stream, offset="first", prefetch=1, wait_for=1, tag="leaving")
    ch.basic_cancel("leaving")
    ch.basic_ack(got.got[0].tag)
    other = consume(conn, conn.channel(), stream, offset=4, wait_for=1)
    assert other.offsets == [4]
    assert got.offsets == [0]


def test_publishing_through_an_exchange_with_confirms(connect, names):
    q, x = names("s"), names("x")
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, q)
    ch.exchange_declare(x, "fanout")
    ch.queue_bind(q, x)
    ch.confirm_delivery()
    ch.basic_publish(x, "any", b"via-exchange", pika.BasicProperties(delivery_mode=1))
    got = consume(conn, conn.channel(), q, offset="first", wait_for=1)
    assert got.got[0].body == "via-exchange"
    assert got.got[0].offset == 0
    ch.exchange_delete(x)


def test_every_offset_specification_with_aio_pika(stream, broker, run):
    """The same stream read from each kind of x-stream-offset, as aio-pika sends it."""
    published = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(seconds=10)
    cases = {
        "first": ("first", BODIES),
        "offset": (3, BODIES[3:]),
        "last": ("last", BODIES[4:]),
        "interval": ("1h", BODIES),
        "timestamp": (published, BODIES),  # an AMQP timestamp before every message
    }

    async def read(offset: object, count: int) -> list[tuple[str, int]]:
        conn = await aio_pika.connect(broker.url)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=10)
            queue = await ch.get_queue(stream, ensure=False)
            got: list[tuple[str, int]] = []
            done = asyncio.Event()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                got.append((message.body.decode(), message.headers["x-stream-offset"]))
                await message.ack()
                if len(got) == count:
                    done.set()

            await queue.consume(on_message, arguments={"x-stream-offset": offset})
            await asyncio.wait_for(done.wait(), 10)
            return got

    async def read_next() -> list[tuple[str, int]]:
        """`next` (the default): nothing of what is there, then what comes."""
        conn = await aio_pika.connect(broker.url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            await ch.set_qos(prefetch_count=10)
            queue = await ch.get_queue(stream, ensure=False)
            got: list[tuple[str, int]] = []
            done = asyncio.Event()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                got.append((message.body.decode(), message.headers["x-stream-offset"]))
                await message.ack()
                done.set()

            await queue.consume(on_message, arguments={"x-stream-offset": "next"})
            await ch.default_exchange.publish(aio_pika.Message(b"m5"), routing_key=stream)
            await asyncio.wait_for(done.wait(), 10)
            return got

    for name, (offset, bodies) in cases.items():
        got = run(read(offset, len(bodies)))
        expected = [(body, BODIES.index(body)) for body in bodies]
        assert got == expected, name
    assert run(read_next()) == [("m5", 5)]
