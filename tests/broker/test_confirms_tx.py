"""Publisher confirms and transactions end to end (pika, aiormq, and raw frames for ordering).

Confirms: every publish is acked, routed or not; a mandatory publish that
routes nowhere comes back as basic.return 312 NO_ROUTE before the ack that
covers it. Transactions: publishes and acks take effect at tx.commit and
are dropped by tx.rollback; the errors are RabbitMQ's.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import aiormq
import pika
import pika.exceptions
import pytest
from pamqp import commands
from pamqp import frame as pframe
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from support.amqp_server import RawClient

DEADLINE = 10.0


@contextmanager
def channel_error(code: int, text: str | None = None):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        yield info
    assert (info.value.reply_code, info.value.reply_text if text else None) == (code, text)


def ready(conn, q: str) -> int:
    return conn.channel().queue_declare(q, passive=True).method.message_count


def wait_ready(conn, q: str, n: int) -> None:
    deadline = time.monotonic() + DEADLINE
    ch = conn.channel()
    while ch.queue_declare(q, passive=True).method.message_count != n:
        assert time.monotonic() < deadline, f"{q} never held {n} ready messages"
        conn.sleep(0.005)
    ch.close()


# ============================================================== confirms
def test_every_publish_is_confirmed(connect, names):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    q = names("q")
    ch.queue_declare(q, durable=True)
    for i in range(20):  # pika returns from each publish only once it is acked
        ch.basic_publish("", q, str(i).encode(), pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("", names("nowhere"), b"unroutable, not mandatory: acked too")
    assert ready(conn, q) == 20
    ch.queue_delete(q)


def test_mandatory_unroutable_is_returned_before_its_confirm_pika(connect, names):
    ch = connect().channel()
    ch.confirm_delivery()
    nowhere = names("nowhere")
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        ch.basic_publish("", nowhere, b"lost", mandatory=True)
    (returned,) = info.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key, returned.body) == (
        "",
        nowhere,
        b"lost",
    )


def test_mandatory_unroutable_is_returned_before_its_confirm_aiormq(broker, names, run):
    async def scenario():
        conn = await aiormq.connect(broker.url)
        try:
            ch = await conn.channel(publisher_confirms=True)
            q = names("q")
            await ch.queue_declare(q, exclusive=True)
            props = aiormq.spec.Basic.Properties(message_id="m1")
            ok = await ch.basic_publish(b"routed", routing_key=q, mandatory=True, properties=props)
            assert isinstance(ok, aiormq.spec.Basic.Ack)
            props = aiormq.spec.Basic.Properties(message_id="m2")
            with pytest.raises(aiormq.exceptions.PublishError) as info:
                # aiormq raises this only when the return beats the ack
                await ch.basic_publish(b"lost", routing_key=names("nowhere"), mandatory=True,
                                       properties=props)  # fmt: skip
            assert (info.value.frame.reply_code, info.value.frame.reply_text) == (312, "NO_ROUTE")
            assert info.value.message.body == b"lost"
        finally:
            await conn.close()

    run(scenario())


def _publish_frames(channel: int, exchange: str, key: str, body: bytes, mandatory: bool) -> bytes:
    return b"".join((
        pframe.marshal(commands.Basic.Publish(exchange=exchange, routing_key=key, mandatory=mandatory), channel),
        pframe.marshal(ContentHeader(0, len(body), commands.Basic.Properties()), channel),
        pframe.marshal(ContentBody(body), channel),
    ))  # fmt: skip


def test_return_precedes_the_ack_on_the_wire(broker, names):
    """Frame order as a client reads it: Return(312) for #2, then acks covering 1..3."""
    q = names("q")
    with RawClient(broker.port) as raw:
        raw.open()
        raw.send_method(1, commands.Channel.Open())
        raw.expect("Channel.OpenOk", 1)
        raw.send_method(1, commands.Queue.Declare(queue=q, exclusive=True))
        raw.expect("Queue.DeclareOk", 1)
        raw.send_method(1, commands.Confirm.Select())
        raw.expect("Confirm.SelectOk", 1)
        raw.send(_publish_frames(1, "", q, b"1", True) + _publish_frames(1, "", names("nowhere"), b"2", True)
                 + _publish_frames(1, "", q, b"3", True))  # fmt: skip
        events = []
        acked = 0
        while acked < 3:
            _ch, method = raw.read_method()
            if method.name == "Basic.Return":
                raw.read_frame(), raw.read_frame()  # its header and body
                events.append(("return", method.reply_code, method.reply_text))
            else:
                assert method.name == "Basic.Ack", method
                events.append(("ack", method.delivery_tag, method.multiple))
                acked = method.delivery_tag if method.multiple else max(acked, method.delivery_tag)
    first_ack_of_2 = next(i for i, e in enumerate(events)
                          if e[0] == "ack" and (e[1] == 2 or e[2] and e[1] >= 2))  # fmt: skip
    assert events.index(("return", 312, "NO_ROUTE")) < first_ack_of_2, events


def test_confirm_select_is_idempotent_and_tags_count_from_one(broker, names, run):
    async def scenario():
        conn = await aiormq.connect(broker.url)
        try:
            ch = await conn.channel(publisher_confirms=True)
            await ch.confirm_delivery()  # again: fine
            q = names("q")
            await ch.queue_declare(q, exclusive=True)
            acks = [await ch.basic_publish(str(i).encode(), routing_key=q) for i in range(3)]
            assert all(isinstance(a, aiormq.spec.Basic.Ack) for a in acks)
            assert max(a.delivery_tag for a in acks) == 3
        finally:
            await conn.close()

    run(scenario())


# ========================================================== transactions
def test_tx_publishes_appear_at_commit(connect, names):
    conn = connect()
    ch = conn.channel()
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    ch.tx_select()
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    assert ready(conn, q) == 0
    ch.tx_commit()
    assert ready(conn, q) == 2
    ch.basic_publish("", q, b"3")
    ch.tx_rollback()
    ch.tx_commit()  # an empty transaction
    assert ready(conn, q) == 2
    ch.basic_publish("", q, b"4")
    ch.tx_commit()
    bodies = [conn.channel().basic_get(q, auto_ack=True)[2] for _ in range(3)]
    assert bodies == [b"1", b"2", b"4"]


def test_tx_acks_take_effect_at_commit(connect, names):
    conn = connect()
    pub = conn.channel()
    pub.confirm_delivery()
    q = names("q")
    pub.queue_declare(q, exclusive=True)
    for i in range(3):
        pub.basic_publish("", q, str(i).encode())
    ch = conn.channel()
    ch.tx_select()
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    ch.basic_ack(tags[0])
    ch.tx_rollback()  # the ack is dropped: the message stays unacked
    ch.basic_ack(tags[0])  # and can be acked again
    ch.basic_reject(tags[1], requeue=True)
    assert ready(conn, q) == 0, "nothing settles before the commit"
    ch.tx_commit()
    wait_ready(conn, q, 1)  # the reject requeued b"1"
    method, _p, body = pub.basic_get(q, auto_ack=True)
    assert (body, method.redelivered) == (b"1", True)
    ch.close()  # b"2" was never settled: it comes back; b"0" was acked at the commit
    wait_ready(conn, q, 1)
    method, _p, body = pub.basic_get(q, auto_ack=True)
    assert (body, method.redelivered) == (b"2", True)


def test_tx_mandatory_return_comes_with_the_commit(connect, names):
    conn = connect()
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(
        lambda _ch, method, _p, body: returned.append((method.reply_code, body))
    )
    ch.tx_select()
    ch.basic_publish("", names("nowhere"), b"lost", mandatory=True)
    ch.queue_declare(names("q"), exclusive=True)  # a round trip: no return yet
    conn.process_data_events(time_limit=0)
    assert returned == []
    ch.tx_commit()
    conn.process_data_events(time_limit=0)
    assert returned == [(312, b"lost")]


def test_tx_publish_to_a_missing_exchange_fails_at_once(connect, names):
    conn = connect()
    ch = conn.channel()
    ch.tx_select()
    missing = names("missing")
    with channel_error(404, f"NOT_FOUND - no exchange '{missing}' in vhost '/'"):
        ch.basic_publish(missing, "k", b"x")
        ch.queue_declare(names("q"), exclusive=True)  # before any commit


def test_tx_ack_of_an_unknown_tag_fails_at_once(connect, names):
    conn = connect()
    ch = conn.channel()
    ch.tx_select()
    with channel_error(406, "PRECONDITION_FAILED - unknown delivery tag 5"):
        ch.basic_ack(5)
        ch.queue_declare(names("q"), exclusive=True)  # before any commit


def test_tx_double_ack_fails_at_the_second_ack(connect, names):
    conn = connect()
    ch = conn.channel()
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    ch.tx_select()
    ch.basic_publish("", q, b"x")
    ch.tx_commit()
    tag = ch.basic_get(q)[0].delivery_tag
    ch.basic_ack(tag)
    with channel_error(406, f"PRECONDITION_FAILED - unknown delivery tag {tag}"):
        ch.basic_ack(tag)
        ch.queue_declare(q, passive=True)  # before any commit


@pytest.mark.parametrize(
    ("first", "second", "text"),
    [
        (None, "tx_commit", "PRECONDITION_FAILED - channel is not transactional"),
        (None, "tx_rollback", "PRECONDITION_FAILED - channel is not transactional"),
        (
            "tx_select",
            "confirm_delivery",
            "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
        ),
        (
            "confirm_delivery",
            "tx_select",
            "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
        ),
    ],
)
def test_tx_mode_errors(connect, first, second, text):
    conn = connect()
    ch = conn.channel()
    if first:
        getattr(ch, first)()
    with channel_error(406, text):
        getattr(ch, second)()
    assert conn.is_open


def test_tx_publish_is_routed_when_published_and_delivered_at_commit(connect, names):
    publisher, other = connect().channel(), connect().channel()
    x, routed, late = names("x"), names("routed"), names("late")
    publisher.exchange_declare(x, "fanout")
    for q in (routed, late):
        publisher.queue_declare(q)
    publisher.queue_bind(routed, x)
    publisher.tx_select()
    publisher.basic_publish(x, "", b"m")
    other.queue_bind(late, x)  # bound after the publish: not a destination
    other.exchange_delete(x)  # gone before the commit: the publish stands
    publisher.tx_commit()
    assert other.queue_declare(routed, passive=True).method.message_count == 1
    assert other.queue_declare(late, passive=True).method.message_count == 0
    for q in (routed, late):
        other.queue_delete(q)
