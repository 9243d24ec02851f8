"""Where messages go: the partition of their key, read back from the partitions' logs on disk."""

from __future__ import annotations

from collections import defaultdict

import pika
from support.partitions import keyed_body, keyed_messages, parse_body, pump_until

from warrenmq.broker.partitioning import partition_of

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def _publish_keyed(ch, exchange: str, messages: list[tuple[str, int]]) -> None:
    ch.confirm_delivery()
    for key, seq in messages:
        ch.basic_publish(exchange, key, keyed_body(key, seq), PERSISTENT)


def test_a_routing_key_always_lands_in_the_same_partition(broker, connect, names):
    q, x = names("q"), names("x")
    ch = connect().channel()
    ch.exchange_declare(x, "topic")
    ch.queue_declare(q, durable=True, arguments={"x-partitions": 5})
    ch.queue_bind(q, x, "#")
    messages = keyed_messages(60, 900)
    _publish_keyed(ch, x, messages)

    seen = defaultdict(list)
    for partition in range(5):
        for record in broker.dump(q, partition):
            key, seq = parse_body(record["body_preview"].encode())
            assert record["routing_key"] == key
            assert partition_of(key.encode(), 5) == partition, key
            seen[key].append(seq)
    # Every message is in its key's partition, in publish order.
    expected = defaultdict(list)
    for key, seq in messages:
        expected[key].append(seq)
    assert seen == expected
    assert len({partition_of(k.encode(), 5) for k in expected}) == 5  # all partitions in use


def test_a_partition_key_header_places_messages_whatever_their_routing_key(broker, connect, names):
    q = names("q")
    ch = connect().channel()
    ch.queue_declare(q, durable=True, arguments={"x-partitions": 4, "x-partition-key": "customer"})
    ch.confirm_delivery()
    customers = ["c-1", "c-2", "c-3", "c-4", "c-5", "c-6", 7, b"c-8"]
    for i in range(80):
        customer = customers[i % len(customers)]
        props = pika.BasicProperties(delivery_mode=2, headers={"customer": customer, "i": i})
        ch.basic_publish("", q, f"{i}".encode(), props)  # the default exchange: the routing key is q
    ch.basic_publish("", q, b"no-header", PERSISTENT)

    placed = {}
    for partition in range(4):
        for record in broker.dump(q, partition):
            headers = record["properties"].get("headers", {})
            placed[record["body_preview"]] = (partition, headers.get("customer"))
    assert len(placed) == 81
    for i in range(80):
        customer = customers[i % len(customers)]
        text = customer.decode() if isinstance(customer, bytes) else str(customer)
        assert placed[str(i)][0] == partition_of(text.encode(), 4), (i, customer)
    # Without the header, a message goes by its routing key.
    assert placed["no-header"][0] == partition_of(q.encode(), 4)


def test_one_consumer_gets_each_key_in_order(connect, names):
    q, x = names("q"), names("x")
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q, arguments={"x-partitions": 8})
    messages = keyed_messages(40, 2000)
    for key in {key for key, _ in messages}:
        ch.queue_bind(q, x, key)
    _publish_keyed(ch, x, messages)

    got = defaultdict(list)
    ch.basic_qos(prefetch_count=50)

    def on_message(channel, method, _props, body):
        key, seq = parse_body(body)
        got[key].append(seq)
        channel.basic_ack(method.delivery_tag)

    ch.basic_consume(q, on_message)
    pump_until(conn, lambda: sum(map(len, got.values())) == len(messages))
    assert all(seqs == list(range(len(seqs))) for seqs in got.values())
    assert sum(map(len, got.values())) == len(messages)
