"""kombu (Celery's transport) over py-amqp, end to end.

What Celery does with a broker: declare a durable direct exchange and queue,
publish JSON tasks persistently with confirms, consume with prefetch and
ack, requeue and reject, SimpleQueue, purge and delete. Below kombu, the
py-amqp channel it hands out is used for what kombu itself does not reach:
server-named consumer tags, the cancel notification, the last-declared-queue
shortcut, and the reply codes py-amqp turns into its exception classes.
"""

from __future__ import annotations

import contextlib
import re
import time

import kombu
import pytest
from kombu import Consumer, Exchange, Producer, Queue

import amqp as py_amqp  # py-amqp, kombu's client library (never our amqp/ folder)

DEADLINE = 10.0


@pytest.fixture
def kombu_connect(broker):
    opened = []

    def connect(**options) -> kombu.Connection:
        conn = kombu.Connection(broker.url, **options)
        conn.connect()
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.release()


def drain_until(conn: kombu.Connection, predicate) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the broker")
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.05)


def ready(conn: kombu.Connection, name: str) -> int:
    ch = conn.channel()
    try:
        return ch.queue_declare(name, passive=True).message_count
    finally:
        ch.close()


def wait_ready(conn: kombu.Connection, name: str, n: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while ready(conn, name) != n:
        assert time.monotonic() < deadline, f"{name} never held {n} ready messages"
        time.sleep(0.005)


# ============================================================ Celery-like
def test_celery_style_task_round_trip(kombu_connect, names):
    conn = kombu_connect(transport_options={"confirm_publish": True})
    exchange = Exchange(names("tasks"), type="direct", durable=True)
    queue = Queue(names("celery"), exchange, routing_key="celery", durable=True)
    producer = Producer(conn.channel(), exchange=exchange, serializer="json")
    for i in range(3):
        producer.publish({"task": "add", "args": [i, i]}, routing_key="celery", declare=[queue],
                         delivery_mode=2, headers={"id": f"t{i}"})  # fmt: skip
    got = []

    def on_message(body, message):
        got.append((body, message.headers["id"], message.delivery_info["routing_key"],
                    message.delivery_info["exchange"], message.properties["delivery_mode"]))  # fmt: skip
        message.ack()

    with Consumer(
        conn.channel(), queues=[queue], callbacks=[on_message], accept=["json"]
    ) as consumer:
        consumer.qos(prefetch_count=1)
        drain_until(conn, lambda: len(got) == 3)
    assert got == [
        ({"task": "add", "args": [i, i]}, f"t{i}", "celery", exchange.name, 2) for i in range(3)
    ]
    assert ready(conn, queue.name) == 0
    queue(conn.channel()).delete()
    exchange(conn.channel()).delete()


def test_exchange_types_with_kombu_objects(kombu_connect, names):
    conn = kombu_connect(transport_options={"confirm_publish": True})
    ch = conn.channel()
    fanout = Exchange(names("fanout"), type="fanout", durable=False, auto_delete=False)
    topic = Exchange(names("topic"), type="topic", durable=False)
    headers = Exchange(names("headers"), type="headers", durable=False)
    q_fan = Queue(names("fan"), fanout, exclusive=True)
    q_topic = Queue(names("topic-q"), topic, routing_key="*.error", exclusive=True)
    q_headers = Queue(
        names("hdr"), headers, binding_arguments={"x-match": "all", "kind": "a"}, exclusive=True
    )
    for q in (q_fan, q_topic, q_headers):
        q(ch).declare()
    producer = Producer(ch)
    producer.publish(b"f", exchange=fanout, routing_key="ignored", serializer="raw")
    producer.publish(b"t1", exchange=topic, routing_key="disk.error")
    producer.publish(b"t2", exchange=topic, routing_key="disk.info")
    producer.publish(b"h1", exchange=headers, routing_key="", headers={"kind": "a"})
    producer.publish(b"h2", exchange=headers, routing_key="", headers={"kind": "b"})

    def bodies(q):
        out = []
        while (m := q(ch).get(no_ack=True)) is not None:
            out.append(m.body)
        return out

    assert bodies(q_fan) == [b"f"]
    assert bodies(q_topic) == [b"t1"]
    assert bodies(q_headers) == [b"h1"]


def test_simple_queue(kombu_connect, names):
    conn = kombu_connect()
    with conn.SimpleQueue(names("simple"), queue_opts={"exclusive": True}) as sq:
        for i in range(3):
            sq.put({"n": i})
        deadline = time.monotonic() + DEADLINE
        while sq.qsize() != 3:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        first = sq.get(timeout=DEADLINE)
        assert first.payload == {"n": 0}
        first.requeue()
        second = sq.get(timeout=DEADLINE)
        assert second.payload == {"n": 1}
        second.reject()  # dropped
        rest = [sq.get(timeout=DEADLINE) for _ in range(2)]
        # {"n": 2} was already on its way to this consumer; the requeued {"n": 0} follows it.
        assert [(m.payload, m.delivery_info["redelivered"]) for m in rest] == [({"n": 2}, False),
                                                                              ({"n": 0}, True)]  # fmt: skip
        for m in rest:
            m.ack()
        with pytest.raises(sq.Empty):
            sq.get(block=False)
        assert ready(conn, sq.queue.name) == 0


def test_prefetch_and_requeue_order(kombu_connect, names):
    conn = kombu_connect(transport_options={"confirm_publish": True})
    queue = Queue(names("q"), exclusive=True)
    producer = Producer(conn.channel())
    producer.publish(b"x", routing_key=queue.name, declare=[queue])  # declare first
    queue(conn.channel()).purge()
    for i in range(6):
        producer.publish(str(i).encode(), routing_key=queue.name)
    got = []
    consumer_ch = conn.channel()
    with Consumer(consumer_ch, queues=[queue], on_message=got.append, prefetch_count=2):
        drain_until(conn, lambda: len(got) == 2)
        wait_ready(conn, queue.name, 4)
        assert [m.body for m in got] == [b"0", b"1"]
        got[0].requeue()  # back to the head, redelivered
        drain_until(conn, lambda: len(got) == 3)
        assert (got[2].body, got[2].delivery_info["redelivered"]) == (b"0", True)
        got[1].ack()
        got[2].ack()
        drain_until(conn, lambda: len(got) == 5)
        assert [m.body for m in got[3:]] == [b"2", b"3"]


def test_get_purge_and_delete(kombu_connect, names):
    conn = kombu_connect(transport_options={"confirm_publish": True})
    ch = conn.channel()
    queue = Queue(names("q"), durable=False)(ch)
    queue.declare()
    producer = Producer(ch)
    for i in range(4):
        producer.publish(str(i).encode(), routing_key=queue.name)
    message = queue.get(no_ack=False)
    assert (message.body, message.delivery_info["message_count"]) == (b"0", 3)
    assert queue.purge() == 3
    message.requeue()
    wait_ready(conn, queue.name, 1)
    with pytest.raises(py_amqp.exceptions.PreconditionFailed) as info:
        queue.delete(if_empty=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        f"PRECONDITION_FAILED - queue '{queue.name}' in vhost '/' not empty",
    )
    ch = conn.channel()
    queue = queue(ch)
    queue.delete()
    with pytest.raises(py_amqp.exceptions.NotFound):
        queue.queue_declare(passive=True)


def test_mandatory_return_arrives_before_the_confirm(kombu_connect, names):
    conn = kombu_connect(transport_options={"confirm_publish": True})
    returned = []

    def on_return(exc, exchange, routing_key, message):
        returned.append((exc.reply_code, exc.reply_text, routing_key, message.body))

    producer = Producer(conn.channel(), on_return=on_return)
    nowhere = names("nowhere")
    producer.publish(b"lost", routing_key=nowhere, mandatory=True, serializer="raw")
    # publish returned after the ack; the return was read while waiting for it
    assert returned == [(312, "NO_ROUTE", nowhere, b"lost")]


# ========================================================= py-amqp channel
def test_server_named_consumer_tag_and_cancel_notification(kombu_connect, names):
    conn = kombu_connect()
    ch = conn.default_channel  # py-amqp's Channel
    q = names("q")
    ch.queue_declare(q)
    cancelled = []
    tag = ch.basic_consume(q, callback=lambda m: None, on_cancel=cancelled.append)
    assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag)
    other = conn.channel()
    other.queue_delete(q)
    drain_until(conn, lambda: cancelled)
    assert cancelled == [tag]


def test_empty_queue_name_means_the_last_declared(kombu_connect, names):
    conn = kombu_connect()
    ch = conn.channel()
    q, x = names("q"), names("x")
    ch.queue_declare(q, exclusive=True, auto_delete=False)
    ch.exchange_declare(x, "direct", auto_delete=False)
    ch.queue_bind("", x, "")  # the last declared queue, and its name as the binding key
    ch.basic_publish_confirm(py_amqp.Message(b"via-x"), x, q, mandatory=True)
    assert ch.basic_get("", no_ack=True).body == b"via-x"
    ch.basic_publish_confirm(py_amqp.Message(b"again"), x, q)
    assert ch.queue_purge("") == 1
    ch.queue_unbind("", x, "")
    with pytest.raises(py_amqp.exceptions.ChannelError) as info:
        ch.basic_publish_confirm(py_amqp.Message(b"lost"), x, q, mandatory=True)
    assert (info.value.reply_code, info.value.reply_text) == (312, "NO_ROUTE")
    assert ch.queue_delete("") == 0
    fresh = conn.channel()
    with pytest.raises(py_amqp.exceptions.NotFound) as info:
        fresh.queue_purge("")  # no queue declared on this channel
    assert (info.value.reply_code, info.value.reply_text) == (
        404,
        "NOT_FOUND - no previously declared queue",
    )
    fresh = conn.channel()
    with pytest.raises(py_amqp.exceptions.NotFound) as info:
        fresh.queue_declare("", passive=True)  # a passive declare does not make up a name
    assert info.value.reply_text == "NOT_FOUND - no queue '' in vhost '/'"


def test_deliveries_of_a_deleted_queue_can_still_be_acked(kombu_connect, names):
    conn = kombu_connect(transport_options={"confirm_publish": True})
    ch = conn.channel()
    q = names("q")
    ch.queue_declare(q, auto_delete=False)
    Producer(ch).publish(b"x", routing_key=q)
    message = ch.basic_get(q)
    ch.queue_delete(q)
    ch.basic_ack(message.delivery_tag)
    ch.queue_declare("", exclusive=True)  # no error came back
    with pytest.raises(py_amqp.exceptions.PreconditionFailed) as info:
        ch.basic_ack(message.delivery_tag)  # but only once
        ch.queue_declare("", exclusive=True)
    assert (
        info.value.reply_text
        == f"PRECONDITION_FAILED - unknown delivery tag {message.delivery_tag}"
    )


def test_reused_consumer_tag_is_530(kombu_connect, names):
    conn = kombu_connect()
    ch = conn.default_channel
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    ch.basic_consume(q, consumer_tag="dup", callback=lambda m: None)
    with pytest.raises(py_amqp.exceptions.NotAllowed) as info:
        ch.basic_consume(q, consumer_tag="dup", callback=lambda m: None)
    assert (info.value.reply_code, info.value.reply_text) == (
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 'dup'",
    )


@pytest.mark.parametrize(
    ("attempt", "error", "code", "text"),
    [
        (lambda ch, n: ch.queue_declare(n("missing"), passive=True), py_amqp.exceptions.NotFound, 404,
         "NOT_FOUND - no queue '{missing}' in vhost '/'"),
        (lambda ch, n: (ch.basic_publish(py_amqp.Message(b"x"), n("missing"), "k"), ch.queue_declare("", exclusive=True)),
         py_amqp.exceptions.NotFound, 404, "NOT_FOUND - no exchange '{missing}' in vhost '/'"),
        (lambda ch, n: ch.exchange_declare("amq." + n("x"), "direct"), py_amqp.exceptions.AccessRefused, 403,
         "ACCESS_REFUSED - exchange name 'amq.{x}' contains reserved prefix 'amq.*'"),
        (lambda ch, n: ch.exchange_delete(""), py_amqp.exceptions.AccessRefused, 403,
         "ACCESS_REFUSED - operation not permitted on the default exchange"),
        (lambda ch, n: ch.queue_declare(n("q"), exclusive=True, auto_delete=True),
         py_amqp.exceptions.PreconditionFailed, 406,
         "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '{q}' in vhost '/': "
         "received 'true' but current is 'false'"),
        (lambda ch, n: ch.queue_declare(n("q"), arguments={"x-message-ttl": "1"}), py_amqp.exceptions.PreconditionFailed,
         406, "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': \"expected integer, got longstr\""),
        (lambda ch, n: (ch.basic_reject(9, requeue=False), ch.queue_declare("", exclusive=True)),
         py_amqp.exceptions.PreconditionFailed, 406, "PRECONDITION_FAILED - unknown delivery tag 9"),
    ],
)  # fmt: skip
def test_channel_errors_as_py_amqp_exceptions(kombu_connect, names, attempt, error, code, text):
    conn = kombu_connect()
    ch = conn.channel()
    if "inequivalent" in text:
        ch.queue_declare(names("q"), exclusive=True, auto_delete=False)  # py-amqp's default is True
    with pytest.raises(error) as info:
        attempt(ch, names)
    formatted = text.format(missing=names("missing"), x=names("x"), q=names("q"))
    assert (info.value.reply_code, info.value.reply_text) == (code, formatted)
    assert conn.connected
    conn.channel().queue_declare("", exclusive=True)  # the connection goes on


def test_exclusive_queue_from_another_connection_is_405(kombu_connect, names):
    owner, other = kombu_connect(), kombu_connect()
    q = names("q")
    Queue(q, exclusive=True)(owner.channel()).declare()
    with pytest.raises(py_amqp.exceptions.ResourceLocked) as info:
        other.channel().basic_get(q)
    assert info.value.reply_code == 405


@pytest.mark.parametrize("what", ["immediate", "prefetch_size", "recover", "flow"])
def test_not_implemented_is_540(kombu_connect, names, what):
    conn = kombu_connect()
    ch = conn.channel()
    texts = {"immediate": "immediate=true", "prefetch_size": "prefetch_size!=0 (5)",
             "recover": "requeue=false", "flow": "active=false"}  # fmt: skip
    with pytest.raises(py_amqp.exceptions.AMQPNotImplementedError) as info:
        if what == "immediate":
            ch.basic_publish(py_amqp.Message(b"x"), "", names("q"), immediate=True)
            ch.queue_declare("", exclusive=True)
        elif what == "prefetch_size":
            ch.basic_qos(5, 1, False)
        elif what == "recover":
            ch.basic_recover(requeue=False)  # py-amqp does not wait for Recover-Ok
            ch.queue_declare("", exclusive=True)
        else:
            ch.flow(False)
    assert (info.value.reply_code, info.value.reply_text) == (
        540,
        f"NOT_IMPLEMENTED - {texts[what]}",
    )
