"""Prefetch end to end with pika: exactly N unacked deliveries in flight, as RabbitMQ counts them.

basic.qos with global=false limits each consumer created after it;
global=true limits the channel as a whole (both may apply at once). Each
check waits for the deliveries, then asks the queue how many messages are
still ready: a broker that over-delivers shows it there too.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import pika.exceptions
import pytest

DEADLINE = 10.0


class Recorder:
    def __init__(self) -> None:
        self.tags: list[int] = []
        self.bodies: list[bytes] = []

    def __call__(self, _ch, method, _props, body) -> None:
        self.tags.append(method.delivery_tag)
        self.bodies.append(body)


def filled_queue(conn, names, n: int):
    ch = conn.channel()
    ch.confirm_delivery()
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    for i in range(n):
        ch.basic_publish("", q, str(i).encode())
    return ch, q


def settle(conn, ch, q: str, received, expected: int, ready: int, timeout: float = DEADLINE) -> None:
    """Wait for `expected` deliveries in all, then check the queue holds `ready` and no more came."""
    deadline = time.monotonic() + timeout
    while received() < expected or ch.queue_declare(q, passive=True).method.message_count != ready:
        assert received() <= expected, f"{received()} deliveries, expected {expected}"
        assert time.monotonic() < deadline, f"{received()} deliveries, expected {expected}"
        conn.process_data_events(time_limit=0.01)
    conn.process_data_events(time_limit=0)
    assert received() == expected


@contextmanager
def connection_error(code: int, text: str):
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        yield
    assert (info.value.reply_code, info.value.reply_text) == (code, text)


def test_per_consumer_prefetch_keeps_exactly_n_in_flight(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 10)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=3)
    rec = Recorder()
    consumer.basic_consume(q, rec)
    settle(conn, ch, q, lambda: len(rec.tags), 3, 7)
    assert rec.bodies == [b"0", b"1", b"2"]
    consumer.basic_ack(rec.tags[0])
    settle(conn, ch, q, lambda: len(rec.tags), 4, 6)
    consumer.basic_ack(rec.tags[2], multiple=True)  # frees two more
    settle(conn, ch, q, lambda: len(rec.tags), 6, 4)
    consumer.basic_nack(rec.tags[3], requeue=False)  # a nack frees credit too
    settle(conn, ch, q, lambda: len(rec.tags), 7, 3)
    assert rec.bodies == [str(i).encode() for i in range(7)]


def test_per_consumer_prefetch_applies_to_each_consumer(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 10)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=2, global_qos=False)
    first, second = Recorder(), Recorder()
    consumer.basic_consume(q, first)
    consumer.basic_consume(q, second)
    settle(conn, ch, q, lambda: len(first.tags) + len(second.tags), 4, 6)
    assert (len(first.tags), len(second.tags)) == (2, 2)


def test_global_prefetch_is_shared_by_the_channel(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 10)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=3, global_qos=True)
    first, second = Recorder(), Recorder()
    consumer.basic_consume(q, first)
    consumer.basic_consume(q, second)
    total = lambda: len(first.tags) + len(second.tags)  # noqa: E731
    settle(conn, ch, q, total, 3, 7)
    some = first if first.tags else second
    consumer.basic_ack(some.tags[0])
    settle(conn, ch, q, total, 4, 6)


def test_global_and_per_consumer_limits_together(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 10)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=2, global_qos=False)
    consumer.basic_qos(prefetch_count=3, global_qos=True)
    first, second = Recorder(), Recorder()
    consumer.basic_consume(q, first)
    consumer.basic_consume(q, second)
    settle(conn, ch, q, lambda: len(first.tags) + len(second.tags), 3, 7)
    assert max(len(first.tags), len(second.tags)) == 2


def test_global_prefetch_is_per_channel(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 10)
    recs = []
    for _ in range(2):
        consumer = conn.channel()
        consumer.basic_qos(prefetch_count=2, global_qos=True)
        rec = Recorder()
        consumer.basic_consume(q, rec)
        recs.append(rec)
    settle(conn, ch, q, lambda: sum(len(r.tags) for r in recs), 4, 6)
    assert [len(r.tags) for r in recs] == [2, 2]


def test_prefetch_applies_to_consumers_created_after_it(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 5)
    consumer = conn.channel()
    early = Recorder()
    consumer.basic_consume(q, early)
    settle(conn, ch, q, lambda: len(early.tags), 5, 0)
    consumer.basic_qos(prefetch_count=1)
    for i in range(5, 8):
        ch.basic_publish("", q, str(i).encode())
    settle(conn, ch, q, lambda: len(early.tags), 8, 0)  # still unlimited


def test_no_ack_consumers_ignore_prefetch(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 10)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    rec = Recorder()
    consumer.basic_consume(q, rec, auto_ack=True)
    settle(conn, ch, q, lambda: len(rec.tags), 10, 0)


def test_basic_get_ignores_prefetch(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 3)
    ch.basic_qos(prefetch_count=1, global_qos=True)
    got = [ch.basic_get(q)[2] for _ in range(3)]
    assert got == [b"0", b"1", b"2"]


def test_global_prefetch_counts_consumer_deliveries_only(connect, names):
    conn = connect()
    ch, q = filled_queue(conn, names, 10)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=2, global_qos=True)
    held = [consumer.basic_get(q)[0] for _ in range(2)]  # two basic.get deliveries, unacked
    assert all(held)
    rec = Recorder()
    consumer.basic_consume(q, rec)
    settle(conn, ch, q, lambda: len(rec.tags), 2, 6, timeout=2.0)


def test_prefetch_size_is_540(connect):
    conn = connect()
    with connection_error(540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)"):
        conn.channel().basic_qos(prefetch_size=1000, prefetch_count=1)
