"""Who consumes what: every consumer from every partition, or with single active consumer
one owner per partition, shared out, and handed over only once its deliveries are settled."""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import quote

import pika
from support.partitions import keyed_body, parse_body, pump_until

from warrenmq.broker.partitioning import partition_of

PARTITIONS = 4
KEYS = [f"key-{k}" for k in range(24)]
assert {partition_of(key.encode(), PARTITIONS) for key in KEYS} == set(range(PARTITIONS))


class Collector:
    """A pika consumer that keeps what it got and acks only when told."""

    def __init__(self, conn: pika.BlockingConnection, q: str, prefetch: int) -> None:
        self.conn = conn
        self.ch = conn.channel()
        self.ch.basic_qos(prefetch_count=prefetch)
        self.got: list[tuple[str, int, bool, int]] = []  # key, seq, redelivered, delivery tag
        self.tag = self.ch.basic_consume(q, self._on_message)

    def _on_message(self, _ch, method, _props, body) -> None:
        key, seq = parse_body(body)
        self.got.append((key, seq, method.redelivered, method.delivery_tag))

    def sync(self, q: str) -> None:
        """A round trip on this connection: every delivery sent to it before is now in `got`."""
        self.ch.queue_declare(q, passive=True)
        self.conn.process_data_events(time_limit=0)

    def ack_all(self) -> None:
        if self.got:
            self.ch.basic_ack(self.got[-1][3], multiple=True)

    def partitions(self) -> set[int]:
        return {partition_of(key.encode(), PARTITIONS) for key, *_ in self.got}


def _declare(ch, q: str, single_active: bool) -> str:
    x = f"{q}.in"
    ch.exchange_declare(x, "fanout")
    ch.queue_declare(q, arguments={"x-partitions": PARTITIONS, "x-single-active-consumer": single_active})
    ch.queue_bind(q, x)
    return x


def _publish(conn: pika.BlockingConnection, x: str, per_key: int, first_seq: int = 0) -> None:
    """per_key messages for each key, with confirms: once this returns they were dispatched."""
    ch = conn.channel()
    ch.confirm_delivery()
    for seq in range(first_seq, first_seq + per_key):
        for key in KEYS:
            ch.basic_publish(x, key, keyed_body(key, seq))
    ch.close()


def test_prefetch_counts_deliveries_from_every_partition(broker, connect, names):
    q = names("q")
    conn = connect()
    x = _declare(conn.channel(), q, single_active=False)
    _publish(connect(), x, 5)
    consumer = Collector(conn, q, prefetch=6)
    pump_until(conn, lambda: len(consumer.got) == 6)
    consumer.sync(q)
    assert len(consumer.got) == 6  # six in all, not six per partition
    assert broker.api(f"/api/queues/%2F/{quote(q, safe='')}")["messages_unacknowledged"] == 6
    # Acked as it goes, it gets everything, from every partition, each key in order.
    while len(consumer.got) < 5 * len(KEYS):
        consumer.ack_all()
        count = len(consumer.got)
        pump_until(conn, lambda count=count: len(consumer.got) > count)
    assert consumer.partitions() == set(range(PARTITIONS))
    per_key = defaultdict(list)
    for key, seq, _redelivered, _tag in consumer.got:
        per_key[key].append(seq)
    assert all(seqs == list(range(5)) for seqs in per_key.values())


def test_without_single_active_consumer_every_consumer_takes_from_every_partition(connect, names):
    q = names("q")
    conn = connect()
    x = _declare(conn.channel(), q, single_active=False)
    first, second = Collector(conn, q, prefetch=1000), Collector(conn, q, prefetch=1000)
    _publish(connect(), x, 10)
    pump_until(conn, lambda: len(first.got) + len(second.got) == 10 * len(KEYS))
    assert first.partitions() == second.partitions() == set(range(PARTITIONS))


def test_single_active_consumers_share_the_partitions_out(broker, connect, names):
    q = names("q")
    conn = connect()
    x = _declare(conn.channel(), q, single_active=True)
    consumers = [Collector(conn, q, prefetch=1000) for _ in range(PARTITIONS + 1)]
    _publish(connect(), x, 3)
    pump_until(conn, lambda: sum(len(c.got) for c in consumers) == 3 * len(KEYS))
    owned = [c.partitions() for c in consumers]
    # The first four own one partition each; the fifth waits.
    assert all(len(parts) == 1 for parts in owned[:PARTITIONS])
    assert set().union(*owned) == set(range(PARTITIONS)) and owned[PARTITIONS] == set()
    details = broker.api(f"/api/queues/%2F/{quote(q, safe='')}")["consumer_details"]
    status = {d["consumer_tag"]: (d["active"], d["activity_status"]) for d in details}
    assert [status[c.tag] for c in consumers] == [(True, "single_active")] * PARTITIONS + [(False, "waiting")]


def test_a_partition_moves_only_once_its_deliveries_are_acked(connect, names):
    q = names("q")
    conn = connect()
    x = _declare(conn.channel(), q, single_active=True)
    publisher = connect()
    first = Collector(conn, q, prefetch=1000)
    _publish(publisher, x, 2)
    pump_until(conn, lambda: len(first.got) == 2 * len(KEYS))  # held, unacked: from all four partitions

    late = Collector(conn, q, prefetch=1000)  # takes two partitions, once first lets go of them
    _publish(publisher, x, 2, first_seq=2)
    first.sync(q)
    late.sync(q)
    assert late.got == []  # first still holds messages of every partition
    moved = set(range(PARTITIONS)) - {partition_of(k.encode(), PARTITIONS) for k, s, *_ in first.got if s >= 2}
    assert len(moved) == 2  # first got the new messages of the two partitions it keeps, only those

    first.ack_all()
    pump_until(conn, lambda: len(late.got) == sum(1 for k in KEYS if partition_of(k.encode(), 4) in moved) * 2)
    assert late.partitions() == moved
    assert {seq for _k, seq, *_ in late.got} == {2, 3}


def test_a_closed_owner_hands_its_unacked_messages_to_the_next(connect, names):
    q = names("q")
    x = _declare(connect().channel(), q, single_active=True)
    holder_conn, next_conn = connect(), connect()
    holder = Collector(holder_conn, q, prefetch=1000)
    waiting = Collector(next_conn, q, prefetch=1000)  # owns two partitions from the start
    _publish(connect(), x, 3)
    pump_until(holder_conn, lambda: len(holder.got) > 0)
    holder.sync(q)
    held = [(k, s) for k, s, *_ in holder.got]
    holder_conn.close()  # unacked: requeued, and the holder's partitions go to the other
    pump_until(next_conn, lambda: len(waiting.got) == 3 * len(KEYS))
    assert waiting.partitions() == set(range(PARTITIONS))
    redelivered = {(k, s) for k, s, again, _tag in waiting.got if again}
    assert redelivered == set(held)
    per_key = defaultdict(list)
    for key, seq, _again, _tag in waiting.got:
        per_key[key].append(seq)
    assert all(seqs == [0, 1, 2] for seqs in per_key.values())
