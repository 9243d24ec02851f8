"""Declaring a partitioned queue: what is refused (406, RabbitMQ-style texts), redeclares, counts."""

from __future__ import annotations

import re
from contextlib import contextmanager
from urllib.parse import quote

import pika
import pika.exceptions
import pytest


@contextmanager
def refused(code: int, text: str):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        yield
    assert (info.value.reply_code, info.value.reply_text) == (code, text)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"x-partitions": 0}, "invalid arg 'x-partitions' for queue '{q}' in vhost '/': {{value_zero,0}}"),
        ({"x-partitions": -2}, "invalid arg 'x-partitions' for queue '{q}' in vhost '/': {{value_negative,-2}}"),
        ({"x-partitions": 1025},
         "invalid arg 'x-partitions' for queue '{q}' in vhost '/': {{max_value_exceeded,1025}}"),
        ({"x-partitions": "8"},
         "invalid arg 'x-partitions' for queue '{q}' in vhost '/': \"expected integer, got longstr\""),
        ({"x-partitions": True},
         "invalid arg 'x-partitions' for queue '{q}' in vhost '/': \"expected integer, got bool\""),
        ({"x-partition-key": "customer"},
         "invalid arg 'x-partition-key' for queue '{q}' in vhost '/': partition_key_but_no_partitions"),
        ({"x-partitions": 4, "x-partition-key": 7},
         "invalid arg 'x-partition-key' for queue '{q}' in vhost '/': {{unacceptable_type,signedint}}"),
        ({"x-partitions": 4, "x-overflow": "reject-publish"},
         "invalid arg 'x-overflow' for queue '{q}' in vhost '/': "
         "{{overflow_not_supported_with_partitions,reject-publish}}"),
    ],
    ids=["zero", "negative", "too-many", "text", "bool", "key-alone", "key-not-text", "reject-publish"],
)  # fmt: skip
def test_bad_partition_arguments_are_refused(connect, names, arguments, reason):
    q = names("q")
    ch = connect().channel()
    with refused(406, "PRECONDITION_FAILED - " + reason.format(q=q)):
        ch.queue_declare(q, arguments=arguments)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"x-partitions": 0}, "invalid arg 'x-partitions' for queue '{q}' in vhost '/': {{value_zero,0}}"),
        ({"x-partitions": 1025}, "invalid arg 'x-partitions' for queue '{q}' in vhost '/': "
                                 "{{max_value_exceeded,1025}}"),
        ({"x-partition-key": "k"}, "invalid arg 'x-partition-key' for queue '{q}' in vhost '/': "
                                   "partition_key_but_no_partitions"),
    ],
    ids=["zero", "too-many", "key-alone"],
)  # fmt: skip
def test_a_stream_checks_its_partition_arguments(connect, names, arguments, reason):
    q = names("q")
    ch = connect().channel()
    with refused(406, "PRECONDITION_FAILED - " + reason.format(q=q)):
        ch.queue_declare(q, durable=True, arguments={"x-queue-type": "stream", **arguments})


def test_a_partitioned_stream_is_declared_and_redeclared(connect, names):
    q = names("q")
    ch = connect().channel()
    arguments = {"x-queue-type": "stream", "x-partitions": 4}
    assert ch.queue_declare(q, durable=True, arguments=arguments).method.message_count == 0
    assert ch.queue_declare(q, durable=True, arguments=arguments).method.message_count == 0
    with refused(406, f"PRECONDITION_FAILED - inequivalent arg 'x-partitions' for queue '{q}' in vhost '/': "
                      "received '3' but current is '4'"):  # fmt: skip
        ch.queue_declare(q, durable=True, arguments={"x-queue-type": "stream", "x-partitions": 3})


def test_the_largest_partition_count_is_accepted(connect, names):
    q = names("q")
    ch = connect().channel()
    ch.queue_declare(q, arguments={"x-partitions": 1024})
    ch.queue_delete(q)


def test_a_redeclare_must_ask_for_the_same_partitions(connect, names):
    q = names("q")
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments={"x-partitions": 4, "x-partition-key": "customer"})
    ch.queue_declare(q, durable=True, arguments={"x-partitions": 4, "x-partition-key": "customer"})
    resource = f"queue '{q}' in vhost '/'"
    with refused(406, f"PRECONDITION_FAILED - inequivalent arg 'x-partitions' for {resource}: "
                      "received '8' but current is '4'"):  # fmt: skip
        ch.queue_declare(q, durable=True, arguments={"x-partitions": 8, "x-partition-key": "customer"})
    ch = conn.channel()
    with refused(406, f"PRECONDITION_FAILED - inequivalent arg 'x-partitions' for {resource}: "
                      "received none but current is the value '4' of type 'signedint'"):  # fmt: skip
        ch.queue_declare(q, durable=True)
    ch = conn.channel()
    with refused(406, f"PRECONDITION_FAILED - inequivalent arg 'x-partition-key' for {resource}: "
                      "received 'region' but current is 'customer'"):  # fmt: skip
        ch.queue_declare(q, durable=True, arguments={"x-partitions": 4, "x-partition-key": "region"})
    ch = conn.channel()
    assert ch.queue_declare(q, passive=True).method.queue == q
    ch.queue_delete(q)


def test_declare_ok_counts_every_partition(broker, connect, names):
    q = names("q")
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, arguments={"x-partitions": 4})
    ch.exchange_declare(x := names("x"), "fanout")
    ch.queue_bind(q, x)
    ch.confirm_delivery()
    for i in range(40):
        ch.basic_publish(x, f"key-{i}", b"m")
    held = [ch.basic_get(q)[0] for _ in range(3)]  # three unacked: not counted as ready
    assert all(method is not None for method in held)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(q, lambda *_: None)  # takes one more
    ok = ch.queue_declare(q, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (36, 1)
    info = broker.api(f"/api/queues/%2F/{quote(q, safe='')}")
    assert (info["partitions"], info["messages_ready"], info["messages_unacknowledged"]) == (4, 36, 4)
    assert info["messages"] == 40 and info["consumers"] == 1
    stats = info["message_stats"]
    assert (stats["publish"], stats["get"], stats["deliver"], stats["deliver_get"]) == (40, 3, 1, 4)
    # Unacked bytes: three basic.get deliveries held by the whole, one consumer delivery by a partition.
    assert info["message_bytes_unacknowledged"] == 4
    ch.queue_delete(q)


def test_metrics_sum_the_partitions(broker, connect, names):
    q = names("q")
    ch = connect().channel()
    ch.queue_declare(q, arguments={"x-partitions": 3})
    ch.exchange_declare(x := names("x"), "fanout")
    ch.queue_bind(q, x)
    ch.confirm_delivery()
    for i in range(30):
        ch.basic_publish(x, f"key-{i}", b"m")
    assert ch.basic_get(q)[0] is not None  # one unacked
    text = broker.metrics()

    def sample(name: str) -> float:
        found = re.search(rf'^{name}{{[^}}]*queue="{re.escape(q)}"[^}}]*}} (\S+)$', text, re.M)
        assert found, name
        return float(found.group(1))

    assert sample("rabbitmq_queue_messages_ready") == 29
    assert sample("rabbitmq_queue_messages_unacked") == 1
    assert sample("warrenmq_queue_log_end_offset") == 30
    assert sample("warrenmq_queue_consumer_offset_lag") == 30
    ch.queue_delete(q)


def test_an_unpartitioned_queue_has_no_partitions_key(broker, connect, names):
    q = names("q")
    ch = connect().channel()
    ch.queue_declare(q)
    assert "partitions" not in broker.api(f"/api/queues/%2F/{quote(q, safe='')}")
    ch.queue_delete(q)
