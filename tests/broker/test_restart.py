"""What a clean restart keeps: durable entities and persistent messages in durable queues.

The broker is stopped with SIGTERM and started again on the same data
directory. Durable exchanges, queues and bindings (with their settings and
arguments) come back and still route; transient ones are gone. Persistent
messages in durable queues come back in order, those delivered but not
acked marked redelivered; transient messages, and everything in transient
queues, are gone.
"""

from __future__ import annotations

from contextlib import contextmanager

import kombu
import pika
import pika.exceptions
import pytest
from kombu import Consumer, Exchange, Producer, Queue

pytestmark = pytest.mark.restarts

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)


@contextmanager
def channel_error(code: int, text: str | None = None):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        yield info
    assert (info.value.reply_code, info.value.reply_text if text else None) == (code, text)


def exists(conn, kind: str, name: str) -> bool:
    ch = conn.channel()
    try:
        if kind == "queue":
            ch.queue_declare(name, passive=True)
        else:
            ch.exchange_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    ch.close()
    return True


def bodies(ch, q: str) -> list[tuple[bytes, bool]]:
    out = []
    while True:
        method, _props, body = ch.basic_get(q, auto_ack=True)
        if method is None:
            return out
        out.append((body, method.redelivered))


def test_durable_topology_comes_back_and_transient_does_not(broker, connect, names):
    conn = connect()
    ch = conn.channel()
    dx, tx, ae, mid = names("durable-x"), names("transient-x"), names("ae"), names("mid")
    dq, tq, spill = names("durable-q"), names("transient-q"), names("spill")
    ch.exchange_declare(ae, "fanout", durable=True)
    ch.exchange_declare(dx, "topic", durable=True, arguments={"alternate-exchange": ae})
    ch.exchange_declare(mid, "direct", durable=True, internal=True)
    ch.exchange_declare(tx, "fanout", durable=False)
    ch.queue_declare(dq, durable=True, arguments={"x-max-length": 1000})
    ch.queue_declare(spill, durable=True)
    ch.queue_declare(tq, durable=False)
    ch.queue_bind(dq, dx, "a.#")
    ch.queue_bind(tq, dx, "a.#")  # goes with the transient queue
    ch.queue_bind(dq, tx)  # goes with the transient exchange
    ch.exchange_bind(mid, dx, "m.*")
    ch.queue_bind(dq, mid, "m.x")
    ch.queue_bind(spill, ae)
    ch.queue_bind(dq, "amq.topic", f"{dq}.#")  # a predeclared exchange is durable too
    hx = names("headers-x")
    ch.exchange_declare(hx, "headers", durable=True)
    ch.queue_bind(dq, hx, arguments={"x-match": "all", "kind": "pdf", "n": 7})
    auto_x, excl = names("auto-x"), names("exclusive-q")
    ch.exchange_declare(auto_x, "direct", durable=True, auto_delete=True)
    ch.queue_declare(excl, durable=True, exclusive=True)  # exclusive: never durable

    broker.restart()
    conn = connect()
    for kind, name in (("exchange", dx), ("exchange", ae), ("exchange", mid), ("exchange", auto_x),
                       ("queue", dq), ("queue", spill)):  # fmt: skip
        assert exists(conn, kind, name), f"durable {kind} {name} is back"
    for kind, name in (("exchange", tx), ("queue", tq), ("queue", excl)):
        assert not exists(conn, kind, name), f"transient {kind} {name} is gone"
    assert exists(conn, "exchange", "amq.topic")

    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(dx, "a.b", b"bound", mandatory=True)
    ch.basic_publish(dx, "m.x", b"exchange-to-exchange", mandatory=True)
    ch.basic_publish(dx, "other", b"alternate", mandatory=True)
    ch.basic_publish("amq.topic", f"{dq}.t", b"via amq.topic", mandatory=True)
    ch.basic_publish(hx, "", b"headers", pika.BasicProperties(headers={"kind": "pdf", "n": 7}), mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError):  # the binding's arguments came back too
        ch.basic_publish(hx, "", b"x", pika.BasicProperties(headers={"kind": "pdf", "n": 8}), mandatory=True)
    assert bodies(ch, dq) == [
        (b"bound", False),
        (b"exchange-to-exchange", False),
        (b"via amq.topic", False),
        (b"headers", False),
    ]
    assert bodies(ch, spill) == [(b"alternate", False)]

    # The settings came back too: a redeclare must match them.
    ch.exchange_declare(dx, "topic", durable=True, arguments={"alternate-exchange": ae})
    ch.queue_declare(dq, durable=True, arguments={"x-max-length": 1000})
    with channel_error(406, f"PRECONDITION_FAILED - inequivalent arg 'internal' for exchange '{mid}' "
                            "in vhost '/': received 'false' but current is 'true'"):  # fmt: skip
        ch.exchange_declare(mid, "direct", durable=True, internal=False)
    ch = conn.channel()
    with channel_error(406, f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{dq}' "
                            "in vhost '/': received '5' but current is '1000'"):  # fmt: skip
        ch.queue_declare(dq, durable=True, arguments={"x-max-length": 5})
    ch = conn.channel()
    with channel_error(
        403, f"ACCESS_REFUSED - cannot publish to internal exchange '{mid}' in vhost '/'"
    ):
        ch.confirm_delivery()
        ch.basic_publish(mid, "m.x", b"x")
    ch = conn.channel()
    for q in (dq, spill):
        ch.queue_delete(q)
    for x in (dx, ae, mid, auto_x, hx):
        ch.exchange_delete(x)

    broker.restart()  # deletions are durable as well
    conn = connect()
    for kind, name in (("exchange", dx), ("queue", dq)):
        assert not exists(conn, kind, name)


def test_unbinding_is_durable(broker, connect, names):
    conn = connect()
    ch = conn.channel()
    x, q = names("x"), names("q")
    ch.exchange_declare(x, "direct", durable=True)
    ch.queue_declare(q, durable=True)
    ch.queue_bind(q, x, "kept")
    ch.queue_bind(q, x, "dropped")
    ch.queue_unbind(q, x, "dropped")
    broker.restart()
    ch = connect().channel()
    ch.confirm_delivery()
    ch.basic_publish(x, "kept", b"kept")
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "dropped", b"dropped", mandatory=True)
    assert bodies(ch, q) == [(b"kept", False)]
    ch.queue_delete(q)
    ch.exchange_delete(x)


def test_persistent_messages_survive_in_durable_queues_only(broker, connect, names):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    dq, tq = names("durable-q"), names("transient-q")
    ch.queue_declare(dq, durable=True)
    ch.queue_declare(tq, durable=False)
    for i in range(6):
        ch.basic_publish("", dq, f"d{i}".encode(), PERSISTENT if i % 2 == 0 else TRANSIENT)
    ch.basic_publish("", tq, b"in a transient queue", PERSISTENT)
    method, _p, body = ch.basic_get(dq)  # d0, acked before the restart
    assert body == b"d0"
    ch.basic_ack(method.delivery_tag)
    method, _p, body = ch.basic_get(dq)  # d1 (transient), left unacked
    assert body == b"d1"
    method, _p, body = ch.basic_get(dq)  # d2 (persistent), left unacked
    assert body == b"d2"

    broker.restart()
    conn = connect()
    ch = conn.channel()
    ok = ch.queue_declare(dq, durable=True).method
    assert ok.message_count == 2  # d2 (delivered before, not acked) and d4
    assert bodies(ch, dq) == [(b"d2", True), (b"d4", False)]
    assert not exists(conn, "queue", tq)
    ch.queue_delete(dq)


def test_consumed_and_acked_messages_stay_gone(broker, connect, names):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    q = names("q")
    ch.queue_declare(q, durable=True)
    for i in range(50):
        ch.basic_publish("", q, str(i).encode(), PERSISTENT)
    for _ in range(30):
        method, _p, _b = ch.basic_get(q)
        ch.basic_ack(method.delivery_tag)
    broker.restart()
    ch = connect().channel()
    assert [int(b) for b, _r in bodies(ch, q)] == list(range(30, 50))
    broker.restart()  # and what was taken after the first restart stays taken
    ch = connect().channel()
    assert bodies(ch, q) == []
    ch.queue_delete(q)


def test_kombu_persistent_task_survives_restart(broker, names):
    exchange = Exchange(names("tasks"), type="direct", durable=True)
    queue = Queue(names("celery"), exchange, routing_key="celery", durable=True)
    with kombu.Connection(broker.url, transport_options={"confirm_publish": True}) as conn:
        Producer(conn.channel()).publish({"task": "t", "n": 1}, exchange=exchange, routing_key="celery",
                                         declare=[queue], delivery_mode=2, serializer="json")  # fmt: skip
    broker.restart()
    got = []
    with kombu.Connection(broker.url) as conn:

        def on_message(body, message):
            got.append((body, message.delivery_info["redelivered"]))
            message.ack()

        with Consumer(conn.channel(), queues=[queue], callbacks=[on_message], accept=["json"]):
            conn.drain_events(timeout=10)
        assert got == [({"task": "t", "n": 1}, False)]
        queue(conn.channel()).delete()
        exchange(conn.channel()).delete()
