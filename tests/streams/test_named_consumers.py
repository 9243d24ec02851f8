"""Named consumers: the broker tracks their offsets, and they resume after their last ack.

A consumer whose tag the client chose (pika always chooses one), or that asks
with x-stream-automatic-offset-tracking: true, commits the highest offset it
acked; consuming again with that tag and no x-stream-offset resumes after
it, across clean restarts and kill -9. This is LavinMQ's convention, not
RabbitMQ's (whose AMQP 0-9-1 consumers start at `next`), so these tests run
against warrenmq only.
"""

from __future__ import annotations

from typing import Any

import pika
import pytest
from support.streams import Collector, consume, declare_stream, publish, pump_until, round_trip

pytestmark = pytest.mark.warrenmq_only
BODIES = [f"m{i}" for i in range(6)]


@pytest.fixture
def stream(connect, names) -> str:
    q = names()
    ch = connect().channel()
    declare_stream(ch, q)
    publish(ch, q, BODIES)
    return q


def read_and_ack(connect: Any, stream: str, tag: str, ack: list[int], *, offset: Any = "first",
                 wait_for: int = 6, **arguments: Any) -> Collector:  # fmt: skip
    """Consume as tag, ack the deliveries at the given offsets, wait until the acks are handled."""
    conn = connect()
    ch = conn.channel()
    got = consume(conn, ch, stream, offset=offset, tag=tag, wait_for=wait_for, **arguments)
    for d in got.got:
        if d.offset in ack:
            ch.basic_ack(d.tag)
    round_trip(ch, stream)  # answered after the acks' commits were written
    conn.close()
    return got


def resume(connect: Any, stream: str, tag: str, wait_for: int, **arguments: Any) -> Collector:
    conn = connect()
    return consume(conn, conn.channel(), stream, tag=tag, wait_for=wait_for, **arguments)


def first_after_publish(connect: Any, stream: str, tag: str, **arguments: Any) -> int:
    """Consume as tag without an offset, publish a marker: the offset of the first delivery."""
    conn = connect()
    got = consume(conn, conn.channel(), stream, tag=tag, **arguments)
    publish(connect().channel(), stream, ["marker"])
    pump_until(conn, lambda: bool(got.got))
    return got.got[0].offset


def test_a_named_consumer_resumes_after_its_last_ack(connect, stream):
    read_and_ack(connect, stream, "reader", ack=[0, 1, 2])
    again = resume(connect, stream, "reader", wait_for=3)
    assert (again.bodies, again.offsets) == (["m3", "m4", "m5"], [3, 4, 5])


def test_the_highest_acked_offset_counts(connect, stream):
    conn = connect()
    ch = conn.channel()
    got = consume(conn, ch, stream, offset="first", tag="jumpy", wait_for=6)
    ch.basic_ack(got.got[4].tag)
    ch.basic_ack(got.got[1].tag)  # lower, later: does not move the commit back
    round_trip(ch, stream)
    conn.close()
    assert resume(connect, stream, "jumpy", wait_for=1).offsets == [5]


def test_multiple_acks_commit_their_last_offset(connect, stream):
    conn = connect()
    ch = conn.channel()
    got = consume(conn, ch, stream, offset="first", tag="bulk", wait_for=6)
    ch.basic_ack(got.got[3].tag, multiple=True)
    round_trip(ch, stream)
    conn.close()
    assert resume(connect, stream, "bulk", wait_for=2).offsets == [4, 5]


def test_each_tag_has_its_own_offset(connect, stream):
    read_and_ack(connect, stream, "a", ack=[0])
    read_and_ack(connect, stream, "b", ack=[0, 1, 2, 3])
    assert resume(connect, stream, "a", wait_for=5).offsets == [1, 2, 3, 4, 5]
    assert resume(connect, stream, "b", wait_for=2).offsets == [4, 5]


def test_without_a_commit_a_named_consumer_starts_at_next(connect, stream):
    assert first_after_publish(connect, stream, "newcomer") == 6


def test_an_explicit_offset_wins_and_tracking_goes_on(connect, stream):
    read_and_ack(connect, stream, "rewinder", ack=[0, 1, 2, 3, 4])
    read_and_ack(connect, stream, "rewinder", ack=[0, 1], offset="first")  # back to the start
    assert resume(connect, stream, "rewinder", wait_for=4).offsets == [2, 3, 4, 5]


def test_tracking_can_be_turned_off_for_a_named_tag(connect, stream):
    read_and_ack(connect, stream, "sometimes", ack=[0, 1])
    off = {"x-stream-automatic-offset-tracking": False}
    # Off: the committed offset is neither used nor moved.
    assert first_after_publish(connect, stream, "sometimes", **off) == 6
    read_and_ack(connect, stream, "sometimes", ack=[0, 1, 2, 3, 4, 5, 6], wait_for=7, **off)
    assert resume(connect, stream, "sometimes", wait_for=5).offsets == [2, 3, 4, 5, 6]


def test_tracking_argument_must_be_a_boolean(connect, stream):
    ch = connect().channel()
    ch.basic_qos(prefetch_count=5)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume(stream, lambda *_: None, arguments={"x-stream-automatic-offset-tracking": 1})
    assert (info.value.reply_code, info.value.reply_text) == (
        406, f"PRECONDITION_FAILED - invalid arg 'x-stream-automatic-offset-tracking' for queue "
             f"'{stream}' in vhost '/': {{unacceptable_type,signedint}}",
    )  # fmt: skip


def test_a_deleted_stream_forgets_its_consumers(connect, stream):
    read_and_ack(connect, stream, "forgotten", ack=[0, 1, 2, 3])
    ch = connect().channel()
    ch.queue_delete(stream)
    declare_stream(ch, stream)
    publish(ch, stream, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"])
    # Had the old offset (3) survived, the consumer would resume at 4.
    assert first_after_publish(connect, stream, "forgotten") == 7


@pytest.mark.restarts
def test_resumes_after_a_clean_restart(broker, connect, stream):
    read_and_ack(connect, stream, "steady", ack=[0, 1, 2])
    broker.restart()
    again = resume(connect, stream, "steady", wait_for=3)
    assert (again.bodies, again.offsets) == (["m3", "m4", "m5"], [3, 4, 5])


@pytest.mark.restarts
def test_resumes_after_kill_9(broker, connect, stream):
    read_and_ack(connect, stream, "crashy", ack=[0, 1, 2, 3])
    broker.crash_and_restart()
    again = resume(connect, stream, "crashy", wait_for=2)
    assert (again.bodies, again.offsets) == (["m4", "m5"], [4, 5])
    everything = resume(connect, stream, "someone-else", offset="first", wait_for=6)
    assert everything.bodies == BODIES


@pytest.mark.restarts
def test_an_ack_answered_by_a_delivery_survives_kill_9(broker, connect, stream):
    """The delivery the ack's credit allowed was sent after the commit was written."""
    conn = connect()
    ch = conn.channel()
    got = consume(conn, ch, stream, offset="first", prefetch=1, tag="one-by-one", wait_for=1)
    ch.basic_ack(got.got[0].tag)
    pump_until(conn, lambda: len(got.got) == 2)  # offset 1 came: the commit of 0 is written
    broker.crash_and_restart()
    assert resume(connect, stream, "one-by-one", wait_for=5).offsets == [1, 2, 3, 4, 5]
