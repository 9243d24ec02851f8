"""What a stream refuses when it is read: codes and texts as RabbitMQ's (4.x where they differ)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika
import pytest
from support.streams import declare_stream, publish, pump_until


def refusal(connect: Any, queue: str, action: Callable[[Any], Any]) -> tuple[str, int, str]:
    """('channel' or 'connection', code, text) of what the broker answers to action(channel)."""
    conn = connect()
    ch = conn.channel()
    try:
        action(ch)
        conn.process_data_events(time_limit=0)
        pump_until(conn, lambda: not ch.is_open)  # an asynchronous refusal (basic.ack, say)
        raise AssertionError("not refused")
    except pika.exceptions.ChannelClosedByBroker as exc:
        return "channel", exc.reply_code, exc.reply_text
    except pika.exceptions.ConnectionClosedByBroker as exc:
        return "connection", exc.reply_code, exc.reply_text


@pytest.fixture
def stream(connect, names) -> str:
    q = names()
    ch = connect().channel()
    declare_stream(ch, q)
    publish(ch, q, ["m0", "m1"])
    return q


def test_basic_get_is_not_implemented(connect, stream):
    for no_ack in (False, True):
        assert refusal(connect, stream, lambda ch, a=no_ack: ch.basic_get(stream, auto_ack=a)) == (
            "connection", 540,
            f"NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{stream}' in vhost '/'",
        )  # fmt: skip


def test_queue_purge_is_not_implemented(connect, stream):
    assert refusal(connect, stream, lambda ch: ch.queue_purge(stream)) == (
        "connection", 540,
        f"NOT_IMPLEMENTED - queue.purge not supported by stream queues queue '{stream}' in vhost '/'",
    )  # fmt: skip


def offset_refusal(connect: Any, stream: str, value: Any) -> tuple[str, int, str]:
    def consume(ch: Any) -> None:
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(stream, lambda *_: None, arguments={"x-stream-offset": value})

    return refusal(connect, stream, consume)


@pytest.mark.parametrize(("value", "term"), [("1x", '{longstr,<<"1x">>}'), ("5", '{longstr,<<"5">>}')])
def test_an_unreadable_offset_is_refused(connect, stream, value, term):
    assert offset_refusal(connect, stream, value) == (
        "channel", 406, f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '{stream}' "
                        f"in vhost '/': {{invalid_stream_offset_arg,{term}}}",
    )  # fmt: skip


@pytest.mark.warrenmq_only  # RabbitMQ crashes on these: 541 INTERNAL_ERROR
@pytest.mark.parametrize(("value", "term"), [("bogus", '{longstr,<<"bogus">>}'), (True, "{bool,true}")])
def test_offsets_rabbitmq_crashes_on_are_refused_the_same_way(connect, stream, value, term):
    assert offset_refusal(connect, stream, value) == (
        "channel", 406, f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '{stream}' "
                        f"in vhost '/': {{invalid_stream_offset_arg,{term}}}",
    )  # fmt: skip


def test_consumer_priority_belongs_to_other_queue_types(connect, stream):
    def consume(ch: Any) -> None:
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(stream, lambda *_: None, arguments={"x-priority": 5})

    assert refusal(connect, stream, consume) == (
        "channel", 406, f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{stream}' "
                        "in vhost '/' of queue type rabbit_stream_queue",
    )  # fmt: skip


def test_a_global_limit_in_force_is_not_supported(connect, stream):
    def consume(ch: Any) -> None:
        ch.basic_qos(prefetch_count=10)
        ch.basic_qos(prefetch_count=10, global_qos=True)
        ch.basic_consume(stream, lambda *_: None)

    assert refusal(connect, stream, consume) == (
        "connection", 540, f"NOT_IMPLEMENTED - queue '{stream}' in vhost '/' does not support global qos"
    )


def test_a_per_consumer_limit_set_after_a_global_one_lifts_it(connect, stream):
    """As RabbitMQ's limiter: basic.qos with global=false turns the channel-wide limit off."""
    conn = connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10, global_qos=True)
    ch.basic_qos(prefetch_count=10)
    got = []
    ch.basic_consume(stream, lambda _c, _m, _p, body: got.append(body), arguments={"x-stream-offset": "first"})
    pump_until(conn, lambda: len(got) == 2)
    ch.basic_qos(prefetch_count=5, global_qos=True)  # on a channel already consuming: accepted
    assert ch.queue_declare(stream, passive=True).method.queue == stream


@pytest.mark.rabbitmq4  # RabbitMQ 3.x: "... not set for 'queue 'q' in vhost '/''"
def test_a_prefetch_is_required(connect, stream):
    def consume(ch: Any, global_only: bool) -> None:
        if global_only:
            ch.basic_qos(prefetch_count=10, global_qos=True)
        ch.basic_consume(stream, lambda *_: None)

    for global_only in (False, True):
        assert refusal(connect, stream, lambda ch, g=global_only: consume(ch, g)) == (
            "channel", 406,
            f"PRECONDITION_FAILED - consumer prefetch count is not set for stream queue '{stream}' in vhost '/'",
        )  # fmt: skip


def test_a_prefetch_is_required_whatever_the_wording(connect, stream):
    code = refusal(connect, stream, lambda ch: ch.basic_consume(stream, lambda *_: None))[:2]
    assert code == ("channel", 406)


@pytest.mark.rabbitmq4  # RabbitMQ 3.x: "... supported by stream queues queue 'q' ..."
def test_automatic_acknowledgement_is_not_implemented(connect, stream):
    def consume(ch: Any) -> None:
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(stream, lambda *_: None, auto_ack=True)

    assert refusal(connect, stream, consume) == (
        "connection", 540,
        f"NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queue '{stream}' in vhost '/'",
    )  # fmt: skip


def test_automatic_acknowledgement_is_refused_whatever_the_wording(connect, stream):
    def consume(ch: Any) -> None:
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(stream, lambda *_: None, auto_ack=True)

    assert refusal(connect, stream, consume)[:2] == ("connection", 540)

