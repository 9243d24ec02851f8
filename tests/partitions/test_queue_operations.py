"""basic.get, purge, delete and the per-partition queue features of a partitioned queue."""

from __future__ import annotations

import time
import urllib.error
from collections import Counter, defaultdict
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
from support.partitions import keyed_body, parse_body, pump_until

from warrenmq.broker.partitioning import partition_of


def _fill(ch, q: str, keys: list[str], per_key: int, properties=None) -> None:
    """per_key messages for each key, published through a fanout exchange bound to q."""
    x = f"{q}.in"
    ch.exchange_declare(x, "fanout")
    ch.queue_bind(q, x)
    ch.confirm_delivery()
    for seq in range(per_key):
        for key in keys:
            ch.basic_publish(x, key, keyed_body(key, seq), properties)


def _keys_in_partitions(count: int, partitions: int) -> list[str]:
    """count keys, one in each partition first, so every partition has messages."""
    by_partition: dict[int, str] = {}
    k = 0
    while len(by_partition) < partitions:
        by_partition.setdefault(partition_of(f"key-{k}".encode(), partitions), f"key-{k}")
        k += 1
    extra = [f"extra-{i}" for i in range(count - partitions)]
    return list(by_partition.values()) + extra


def test_basic_get_takes_from_the_partitions_in_turn_and_settles_in_the_right_one(connect, names):
    q = names("q")
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-partitions": 4})
    keys = _keys_in_partitions(4, 4)
    _fill(ch, q, keys, 3)

    first = [ch.basic_get(q) for _ in range(4)]
    # One message from each partition in turn, each the head of its partition.
    assert sorted(parse_body(body) for _m, _p, body in first) == sorted((k, 0) for k in keys)
    assert first[-1][0].message_count == 8
    # Requeue two, ack one, reject one: each reaches the partition it came from.
    (m0, _, b0), (m1, _, b1), (m2, _, b2), (m3, _, b3) = first
    ch.basic_nack(m0.delivery_tag, requeue=True)
    ch.basic_reject(m1.delivery_tag, requeue=True)
    ch.basic_ack(m2.delivery_tag)
    ch.basic_reject(m3.delivery_tag, requeue=False)
    left = []
    while True:
        method, _props, body = ch.basic_get(q, auto_ack=True)
        if method is None:
            break
        left.append((parse_body(body), method.redelivered))
    per_key = defaultdict(list)
    for (key, seq), redelivered in left:
        per_key[key].append((seq, redelivered))
    # Requeued messages come back first in their partition, flagged; the others were settled.
    assert per_key[parse_body(b0)[0]] == [(0, True), (1, False), (2, False)]
    assert per_key[parse_body(b1)[0]] == [(0, True), (1, False), (2, False)]
    assert per_key[parse_body(b2)[0]] == [(1, False), (2, False)]
    assert per_key[parse_body(b3)[0]] == [(1, False), (2, False)]
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.queue_delete(q)


def test_purge_empties_every_partition_and_keeps_unacked(connect, names):
    q = names("q")
    ch = connect().channel()
    ch.queue_declare(q, arguments={"x-partitions": 3})
    _fill(ch, q, _keys_in_partitions(6, 3), 5)
    method, _props, _body = ch.basic_get(q)
    assert ch.queue_purge(q).method.message_count == 29
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.basic_reject(method.delivery_tag, requeue=True)  # the unacked one survived the purge
    assert ch.queue_declare(q, passive=True).method.message_count == 1
    ch.queue_delete(q)


def test_delete_counts_every_partition_and_a_new_queue_of_the_name_starts_empty(broker, connect, names):
    q = names("q")
    ch = connect().channel()
    ch.queue_declare(q, durable=True, arguments={"x-partitions": 4})
    _fill(ch, q, _keys_in_partitions(8, 4), 4, pika.BasicProperties(delivery_mode=2))
    assert ch.queue_delete(q).method.message_count == 32
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare(q, passive=True)
    ch = connect().channel()
    assert ch.queue_declare(q, durable=True, arguments={"x-partitions": 2}).method.message_count == 0
    broker.restart()  # no state of the deleted partitions comes back
    ch = connect().channel()
    assert ch.queue_declare(q, durable=True, arguments={"x-partitions": 2}).method.message_count == 0
    ch.queue_delete(q)


def test_each_partition_expires_and_dead_letters_as_the_queue(connect, names):
    q, dlx, dead = names("q"), names("dlx"), names("dead")
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dead)
    ch.queue_bind(dead, dlx)
    ch.queue_declare(q, arguments={"x-partitions": 4, "x-message-ttl": 50, "x-dead-letter-exchange": dlx})
    keys = _keys_in_partitions(8, 4)
    _fill(ch, q, keys, 2)
    got = []
    ch.basic_consume(dead, lambda c, m, p, b: got.append((parse_body(b), p.headers["x-death"][0])),
                     auto_ack=True)  # fmt: skip
    pump_until(conn, lambda: len(got) == 16)
    assert sorted(key for (key, _seq), _death in got) == sorted(keys * 2)
    assert {(death["queue"], death["reason"]) for _body, death in got} == {(q, "expired")}
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_max_length_holds_per_partition(connect, names):
    q = names("q")
    ch = connect().channel()
    ch.queue_declare(q, arguments={"x-partitions": 2, "x-max-length": 3})
    keys = _keys_in_partitions(2, 2)
    _fill(ch, q, keys, 5)  # five per partition; each keeps its newest three
    assert ch.queue_declare(q, passive=True).method.message_count == 6
    left = Counter()
    while True:
        method, _props, body = ch.basic_get(q, auto_ack=True)
        if method is None:
            break
        key, seq = parse_body(body)
        assert seq >= 2
        left[key] += 1
    assert left == {keys[0]: 3, keys[1]: 3}


def test_an_unused_partitioned_queue_expires_whole(broker, connect, names):
    q = names("q")
    ch = connect().channel()
    ch.queue_declare(q, arguments={"x-partitions": 3, "x-expires": 200})
    _fill(ch, q, _keys_in_partitions(3, 3), 1)
    deadline = time.monotonic() + 10
    while True:  # asked through the management API, which does not count as a use
        try:
            broker.api(f"/api/queues/%2F/{quote(q, safe='')}")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            break
        assert time.monotonic() < deadline, "the queue did not expire"
        time.sleep(0.05)


def test_an_exclusive_partitioned_queue_goes_with_its_connection(connect, names):
    q = names("q")
    owner = connect()
    owner.channel().queue_declare(q, exclusive=True, arguments={"x-partitions": 2})
    other = connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        other.basic_get(q)
    assert info.value.reply_code == 405
    owner.close()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        connect().channel().queue_declare(q, passive=True)
    assert info.value.reply_code == 404


def test_an_auto_delete_partitioned_queue_goes_with_its_last_consumer(connect, names):
    q = names("q")
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True, arguments={"x-partitions": 2})
    tag = ch.basic_consume(q, lambda *_: None)
    ch.basic_cancel(tag)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        connect().channel().queue_declare(q, passive=True)
    assert info.value.reply_code == 404
