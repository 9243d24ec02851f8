"""Consuming end to end with pika: consumers, basic.get, acks, requeue order, recover.

What a consumer sees is checked message by message: consumer tags,
delivery tags, redelivered flags, the order messages come back in after a
requeue, and the errors (406 for a delivery tag that is unknown or already
settled, 530 for a reused consumer tag, 540 for recover without requeue).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import pika
import pika.exceptions
import pytest

DEADLINE = 10.0


@contextmanager
def channel_error(code: int, text: str | None = None):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        yield info
    assert (info.value.reply_code, info.value.reply_text if text else None) == (code, text)


@contextmanager
def connection_error(code: int, text: str | None = None):
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        yield info
    assert (info.value.reply_code, info.value.reply_text if text else None) == (code, text)


def setup_queue(conn, names, n: int = 0, kind: str = "q", **declare):
    """A confirming channel and a fresh queue holding messages b"0" .. b"n-1"."""
    ch = conn.channel()
    ch.confirm_delivery()
    q = names(kind)
    ch.queue_declare(q, **({"exclusive": True} | declare))
    for i in range(n):
        ch.basic_publish("", q, str(i).encode())
    return ch, q


def get_all(ch, q: str, *, auto_ack: bool = False) -> list[tuple[bytes, bool, int]]:
    """Every ready message as (body, redelivered, delivery tag), with basic.get."""
    out = []
    while True:
        method, _props, body = ch.basic_get(q, auto_ack=auto_ack)
        if method is None:
            return out
        out.append((body, method.redelivered, method.delivery_tag))


def ready(ch, q: str) -> int:
    return ch.queue_declare(q, passive=True).method.message_count


def wait_ready(ch, q: str, n: int) -> None:
    """Wait until q holds n ready messages (a requeue reaches the queue asynchronously)."""
    deadline = time.monotonic() + DEADLINE
    while ready(ch, q) != n:
        assert time.monotonic() < deadline, f"{q} never held {n} ready messages"
        ch.connection.sleep(0.005)


class Recorder:
    """A pika consumer callback keeping (consumer tag, body, redelivered, delivery tag)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, bool, int]] = []

    def __call__(self, _ch, method, _props, body) -> None:
        self.got.append((method.consumer_tag, body, method.redelivered, method.delivery_tag))

    @property
    def bodies(self) -> list[bytes]:
        return [g[1] for g in self.got]


# ============================================================== consumers
def test_client_consumer_tags(connect, names, pump):
    """pika names its consumers itself; server-named tags are tested with aiormq and kombu."""
    conn = connect()
    ch, q = setup_queue(conn, names, 2)
    rec = Recorder()
    tag = ch.basic_consume(q, rec, auto_ack=True, consumer_tag="my-tag")
    assert tag == "my-tag"
    pump(conn, lambda: len(rec.got) == 2)
    assert [(t, b) for t, b, _, _ in rec.got] == [("my-tag", b"0"), ("my-tag", b"1")]
    ch.basic_cancel(tag)
    tag = ch.basic_consume(q, rec, auto_ack=True, consumer_tag="my-tag")  # free again after cancel
    ch.basic_publish("", q, b"2")
    pump(conn, lambda: len(rec.got) == 3)
    assert rec.got[2][:2] == ("my-tag", b"2")


def test_same_consumer_tag_on_two_channels_is_fine(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 1)
    conn.channel().basic_consume(q, lambda *a: None, consumer_tag="same")
    ch.basic_consume(q, lambda *a: None, consumer_tag="same")
    assert conn.is_open
    assert ch.queue_declare(q, passive=True).method.consumer_count == 2


def test_no_ack_consumer_settles_on_delivery(connect, names, pump):
    conn = connect()
    ch, q = setup_queue(conn, names, 3)
    rec = Recorder()
    ch2 = conn.channel()
    ch2.basic_consume(q, rec, auto_ack=True)
    pump(conn, lambda: len(rec.got) == 3)
    ch2.close()  # nothing was waiting for an ack: nothing comes back
    assert ready(ch, q) == 0
    assert [g[2] for g in rec.got] == [False] * 3


def test_cancel_stops_deliveries(connect, names, pump):
    conn = connect()
    ch, q = setup_queue(conn, names, 1)
    rec = Recorder()
    tag = ch.basic_consume(q, rec, auto_ack=True)
    pump(conn, lambda: len(rec.got) == 1)
    ch.basic_cancel(tag)
    ch.basic_cancel("never-existed")  # cancelling an unknown tag is not an error
    for _i in range(3):
        ch.basic_publish("", q, b"after")
    assert ready(ch, q) == 3
    assert len(rec.got) == 1


def test_round_robin_between_two_consumers(connect, names, pump):
    conn = connect()
    ch, q = setup_queue(conn, names)
    first, second = Recorder(), Recorder()
    ch_a, ch_b = conn.channel(), conn.channel()
    ch_a.basic_consume(q, first, auto_ack=True)
    ch_b.basic_consume(q, second, auto_ack=True)
    for i in range(10):
        ch.basic_publish("", q, str(i).encode())
    pump(conn, lambda: len(first.got) + len(second.got) == 10)
    assert sorted(first.bodies + second.bodies, key=int) == [str(i).encode() for i in range(10)]
    assert len(first.got) == len(second.got) == 5
    assert {int(b) % 2 for b in first.bodies} in ({0}, {1}), "they take turns"


def test_consumer_is_told_when_its_queue_is_deleted(connect, names, pump):
    conn = connect()
    ch, q = setup_queue(conn, names, 0, exclusive=False)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    other = connect().channel()
    other.queue_delete(q)
    pump(conn, lambda: cancelled)
    assert cancelled == [tag]
    assert ch.is_open
    ch.queue_declare(names("q2"), exclusive=True)  # the channel goes on


def test_exclusive_consumer(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names)
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    text = f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"
    with channel_error(403, text):
        conn.channel().basic_consume(q, lambda *a: None)
    ch2, q2 = setup_queue(conn, names, kind="q2")
    ch2.basic_consume(q2, lambda *a: None)
    with channel_error(403, f"ACCESS_REFUSED - queue '{q2}' in vhost '/' in exclusive use"):
        conn.channel().basic_consume(q2, lambda *a: None, exclusive=True)


# ============================================================= basic.get
def test_basic_get_reports_the_messages_left(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 3)
    seen = []
    for _ in range(3):
        method, props, body = ch.basic_get(q, auto_ack=True)
        seen.append(
            (body, method.message_count, method.redelivered, method.exchange, method.routing_key)
        )
    assert seen == [(b"0", 2, False, "", q), (b"1", 1, False, "", q), (b"2", 0, False, "", q)]
    assert ch.basic_get(q) == (None, None, None)


def test_delivery_tags_count_up_per_channel(connect, names, pump):
    conn = connect()
    ch, q = setup_queue(conn, names, 4)
    tags = [t for _b, _r, t in get_all(ch, q)]
    assert tags == [1, 2, 3, 4]
    ch.basic_publish("", q, b"x")
    rec = Recorder()
    ch.basic_consume(q, rec)
    pump(conn, lambda: rec.got)
    assert rec.got[0][3] == 5


# ================================================================== acks
def test_ack_single_and_multiple(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 5)
    got = get_all(ch, q)
    ch.basic_ack(got[1][2])  # b"1" only
    ch.basic_ack(got[3][2], multiple=True)  # b"0", b"2", b"3"
    ch.close()  # only b"4" was unacked: it comes back
    ch2 = conn.channel()
    wait_ready(ch2, q, 1)
    assert [(b, r) for b, r, _ in get_all(ch2, q, auto_ack=True)] == [(b"4", True)]


def test_ack_multiple_zero_acks_everything(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 3)
    get_all(ch, q)
    ch.basic_ack(0, multiple=True)
    ch.close()
    assert get_all(conn.channel(), q) == []


@pytest.mark.parametrize("how", ["nack", "reject"])
def test_reject_without_requeue_drops(connect, names, how):
    conn = connect()
    ch, q = setup_queue(conn, names, 2)
    got = get_all(ch, q)
    if how == "nack":
        ch.basic_nack(got[0][2], requeue=False)
    else:
        ch.basic_reject(got[0][2], requeue=False)
    ch.close()
    ch2 = conn.channel()
    wait_ready(ch2, q, 1)
    assert [(b, r) for b, r, _ in get_all(ch2, q, auto_ack=True)] == [(b"1", True)]


def test_nack_multiple_requeues_in_original_order(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 5)
    got = get_all(ch, q)
    ch.basic_nack(got[2][2], multiple=True, requeue=True)  # b"0" .. b"2" back
    wait_ready(ch, q, 3)
    again = [(b, r) for b, r, _ in get_all(ch, q, auto_ack=True)]
    assert again == [(b"0", True), (b"1", True), (b"2", True)]


def test_requeued_message_goes_back_to_its_place(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 6)
    got = {}
    for _ in range(4):  # b"0" .. b"3" unacked
        method, _p, body = ch.basic_get(q)
        got[body] = method.delivery_tag
    ch.basic_reject(got[b"2"], requeue=True)
    ch.basic_nack(got[b"0"], requeue=True)
    ch.basic_ack(got[b"1"])
    ch.basic_ack(got[b"3"])
    wait_ready(ch, q, 4)
    rest = [(b, r) for b, r, _ in get_all(ch, q, auto_ack=True)]
    assert rest == [(b"0", True), (b"2", True), (b"4", False), (b"5", False)]


def test_requeued_message_goes_to_a_consumer_first(connect, names, pump):
    conn = connect()
    ch, q = setup_queue(conn, names, 3)
    method, _p, body = ch.basic_get(q)
    assert body == b"0"
    ch.basic_nack(method.delivery_tag, requeue=True)
    wait_ready(ch, q, 3)
    rec = Recorder()
    ch.basic_consume(q, rec, auto_ack=True)
    pump(conn, lambda: len(rec.got) == 3)
    assert [(b, r) for _t, b, r, _d in rec.got] == [(b"0", True), (b"1", False), (b"2", False)]


def test_unacked_messages_return_when_the_channel_closes(connect, names, pump):
    conn = connect()
    ch, q = setup_queue(conn, names, 3)
    consumer_ch = conn.channel()
    rec = Recorder()
    consumer_ch.basic_consume(q, rec)
    pump(conn, lambda: len(rec.got) == 3)
    consumer_ch.basic_ack(rec.got[1][3])
    consumer_ch.close()
    wait_ready(ch, q, 2)
    assert [(b, r) for b, r, _ in get_all(ch, q, auto_ack=True)] == [(b"0", True), (b"2", True)]


def test_basic_recover_redelivers_unacked(connect, names, pump):
    conn = connect()
    ch, q = setup_queue(conn, names, 3)
    rec = Recorder()
    ch.basic_consume(q, rec)
    pump(conn, lambda: len(rec.got) == 3)
    ch.basic_ack(rec.got[0][3])
    ch.basic_recover(requeue=True)
    pump(conn, lambda: len(rec.got) == 5)
    assert [(b, r) for _t, b, r, _d in rec.got[3:]] == [(b"1", True), (b"2", True)]
    assert rec.got[3][3] > rec.got[2][3], "redeliveries get new delivery tags"


def test_basic_recover_without_requeue_is_540(connect, names):
    conn = connect()
    ch, _q = setup_queue(conn, names, 1)
    with connection_error(540, "NOT_IMPLEMENTED - requeue=false"):
        ch.basic_recover(requeue=False)


# ====================================================== delivery tag errors
def test_ack_of_an_unknown_tag_is_406(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 1)
    with channel_error(406, "PRECONDITION_FAILED - unknown delivery tag 99"):
        ch.basic_ack(99)
        ready(ch, q)  # the error arrives by the next round trip
    assert conn.is_open


def test_double_ack_is_406(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 1)
    method, _p, _b = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    with channel_error(406, f"PRECONDITION_FAILED - unknown delivery tag {method.delivery_tag}"):
        ch.basic_ack(method.delivery_tag)
        ready(ch, q)


@pytest.mark.parametrize("how", ["ack", "nack", "reject"])
def test_settling_an_auto_acked_delivery_is_406(connect, names, how):
    conn = connect()
    ch, q = setup_queue(conn, names, 1)
    method, _p, _b = ch.basic_get(q, auto_ack=True)
    with channel_error(406, f"PRECONDITION_FAILED - unknown delivery tag {method.delivery_tag}"):
        if how == "ack":
            ch.basic_ack(method.delivery_tag)
        elif how == "nack":
            ch.basic_nack(method.delivery_tag)
        else:
            ch.basic_reject(method.delivery_tag)
        ready(ch, q)


def test_ack_multiple_of_an_unknown_tag_is_406(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 2)
    get_all(ch, q)
    with channel_error(406, "PRECONDITION_FAILED - unknown delivery tag 7"):
        ch.basic_ack(7, multiple=True)
        ready(ch, q)


def test_a_delivery_tag_belongs_to_its_channel(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 1)
    method, _p, _b = ch.basic_get(q)
    other = conn.channel()
    with channel_error(406, f"PRECONDITION_FAILED - unknown delivery tag {method.delivery_tag}"):
        other.basic_ack(method.delivery_tag)
        other.queue_declare(q, passive=True)


def test_a_channel_closed_by_an_error_requeues_its_unacked_deliveries(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 3)
    consumer = conn.channel()
    got = get_all(consumer, q)
    assert [b for b, _r, _t in got] == [b"0", b"1", b"2"]
    consumer.basic_ack(got[1][2])
    with channel_error(406, "PRECONDITION_FAILED - unknown delivery tag 77"):
        consumer.basic_ack(77)
        consumer.queue_declare(q, passive=True)
    wait_ready(ch, q, 2)
    assert [(b, r) for b, r, _t in get_all(ch, q, auto_ack=True)] == [(b"0", True), (b"2", True)]


def test_nack_multiple_zero_requeues_everything(connect, names):
    conn = connect()
    ch, q = setup_queue(conn, names, 3)
    get_all(ch, q)
    ch.basic_nack(0, multiple=True, requeue=True)
    wait_ready(ch, q, 3)
    assert [(b, r) for b, r, _t in get_all(ch, q, auto_ack=True)] == [(b"0", True), (b"1", True), (b"2", True)]
