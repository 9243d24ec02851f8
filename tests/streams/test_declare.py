"""Declaring a stream: what RabbitMQ refuses (codes and texts), what it accepts, what it reports."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from support.streams import STREAM, declare_stream, publish, pump_until, round_trip


def declare_refusal(connect: Any, name: str, *, durable: bool = True, exclusive: bool = False,
                    auto_delete: bool = False, **arguments: Any) -> tuple[int, str]:  # fmt: skip
    ch = connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(name, durable=durable, exclusive=exclusive, auto_delete=auto_delete,
                         arguments={**STREAM, **arguments})  # fmt: skip
    return info.value.reply_code, info.value.reply_text


@pytest.mark.parametrize(
    ("flags", "prop"),
    [
        ({"durable": False}, "non-durable"),
        ({"exclusive": True}, "exclusive-owner"),
        ({"auto_delete": True}, "auto-delete"),
        ({"exclusive": True, "auto_delete": True}, "auto-delete"),  # checked in this order
        ({"exclusive": True, "durable": False}, "exclusive-owner"),
    ],
)
def test_a_stream_is_durable_shared_and_kept(connect, names, flags, prop):
    q = names()
    assert declare_refusal(connect, q, **flags) == (
        406, f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{q}' in vhost '/'"
    )


def test_a_stream_is_never_server_named(connect):
    ch = connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("", durable=True, arguments=STREAM)
    assert (info.value.reply_code, info.value.reply_text) == (
        406, "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("x-message-ttl", 1000),
        ("x-message-ttl", -5),  # refused as a stream's, not checked as a TTL
        ("x-dead-letter-exchange", "dlx"),
        ("x-dead-letter-routing-key", "k"),
        ("x-max-priority", 5),
        ("x-expires", 10_000),
        ("x-overflow", "reject-publish"),
        ("x-max-length", 10),
        ("x-single-active-consumer", True),
        ("x-delivery-limit", 3),
        ("x-queue-mode", "lazy"),
    ],
)
def test_arguments_of_other_queue_types_are_refused(connect, names, key, value):
    q = names()
    assert declare_refusal(connect, q, **{key: value}) == (
        406,
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/' "
        "of queue type rabbit_stream_queue",
    )


def test_the_first_refused_argument_in_the_table_is_named(connect, names):
    q = names()
    code, text = declare_refusal(connect, q, **{"x-expires": 5, "x-message-ttl": 5})
    assert (code, text) == (406, f"PRECONDITION_FAILED - invalid arg 'x-expires' for queue '{q}' "
                                 "in vhost '/' of queue type rabbit_stream_queue")  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("x-max-age", "1x", "invalid_max_age"),
        ("x-max-age", "0s", "invalid_max_age"),
        ("x-max-age", "1.5h", "invalid_max_age"),
        ("x-max-age", "1d", "invalid_max_age"),
        ("x-max-age", 5, "{unacceptable_type,signedint}"),
        ("x-max-length-bytes", "a", '"expected integer, got longstr"'),
        ("x-max-length-bytes", -1, "{value_negative,-1}"),
        ("x-stream-max-segment-size-bytes", -5, "{value_negative,-5}"),
        ("x-initial-cluster-size", 0, "{value_zero,0}"),
        ("x-queue-leader-locator", "bogus", "invalid_queue_locator_arg"),
    ],
)
def test_the_streams_own_arguments_are_checked(connect, names, key, value, reason):
    q = names()
    assert declare_refusal(connect, q, **{key: value}) == (
        406, f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/': {reason}"
    )


def test_own_arguments_are_checked_before_other_types_arguments(connect, names):
    q = names()
    code, text = declare_refusal(connect, q, **{"x-message-ttl": 5, "x-max-length-bytes": "a"})
    assert text == (f"PRECONDITION_FAILED - invalid arg 'x-max-length-bytes' for queue '{q}' "
                    "in vhost '/': \"expected integer, got longstr\"")  # fmt: skip


def test_segment_size_has_an_upper_bound(connect, names):
    code, text = declare_refusal(connect, names(), **{"x-stream-max-segment-size-bytes": 3_000_000_001})
    assert (code, text) == (406, "PRECONDITION_FAILED - Exceeded max value for x-stream-max-segment-size-bytes")


def test_accepted_arguments(connect, names):
    ch = connect().channel()
    accepted = {
        "x-max-age": "7D", "x-max-length-bytes": 1_000_000, "x-stream-max-segment-size-bytes": 3_000_000_000,
        "x-initial-cluster-size": 3, "x-queue-leader-locator": "balanced", "x-some-plugin-arg": 1,
    }  # fmt: skip
    for i, (key, value) in enumerate(accepted.items()):
        q = names(f"s{i}")
        ok = ch.queue_declare(q, durable=True, arguments={**STREAM, key: value}).method
        assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
    for unit in "YMDhms":
        declare_stream(ch, names(f"age{unit}"), **{"x-max-age": f"2{unit}"})


def test_redeclare_compares_the_stream_arguments(connect, names):
    q = names()
    ch = connect().channel()
    declare_stream(ch, q, **{"x-max-age": "1h"})
    declare_stream(ch, q, **{"x-max-age": "1h"})  # the same: fine
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        declare_stream(ch, q, **{"x-max-age": "2h"})
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '{q}' in vhost '/': "
        "received '2h' but current is '1h'"
    )
    ch = connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, durable=True)
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{q}' in vhost '/': "
        "received none but current is the value 'stream' of type 'longstr'"
    )


def test_declare_ok_counts_every_message_and_no_consumer(connect, names):
    """RabbitMQ reports the messages in the stream (from a sample that may lag) and 0 consumers."""
    q = names()
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, q)
    publish(ch, q, ["a", "b", "c"])
    reader = conn.channel()
    reader.basic_qos(prefetch_count=1)
    reader.basic_consume(q, lambda *_: None, arguments={"x-stream-offset": "first"})  # holds one unacked
    other = connect().channel()
    counts: list[Any] = []

    def reports_three() -> bool:
        counts.append(round_trip(other, q))
        return counts[-1].message_count == 3

    pump_until(conn, reports_three, timeout=15)
    assert counts[-1].consumer_count == 0
    again = ch.queue_declare(q, durable=True, arguments=STREAM).method
    assert (again.message_count, again.consumer_count) == (3, 0)
