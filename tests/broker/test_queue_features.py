"""Single active consumer, delivery limits and delayed retry, end to end with pika."""

from __future__ import annotations

import time
from pathlib import Path

import pika
import pytest
from support.broker import BrokerProcess


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    proc = BrokerProcess(tmp_path_factory.mktemp("features") / "data").start()
    yield proc
    proc.kill()


@pytest.fixture
def conn(broker: BrokerProcess):
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    yield connection
    if connection.is_open:
        connection.close()


_n = [0]


def fresh(prefix: str) -> str:
    _n[0] += 1
    return f"{prefix}-{_n[0]}"


def pump(conn, until, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.02)


def test_single_active_consumer_gets_everything_and_fails_over(conn) -> None:
    ch = conn.channel()
    queue = fresh("sac")
    ch.queue_declare(queue, arguments={"x-single-active-consumer": True})
    first, second = [], []
    ch_a = conn.channel()
    tag_a = ch_a.basic_consume(queue, lambda c, m, p, b: first.append(b), auto_ack=True)
    ch_b = conn.channel()
    ch_b.basic_consume(queue, lambda c, m, p, b: second.append(b), auto_ack=True)
    for i in range(10):
        ch.basic_publish("", queue, f"{i}".encode())
    pump(conn, lambda: len(first) == 10)
    assert len(first) == 10 and second == [], "only the active consumer may receive"
    ch_a.basic_cancel(tag_a)
    for i in range(10, 15):
        ch.basic_publish("", queue, f"{i}".encode())
    pump(conn, lambda: len(second) == 5)
    assert second == [f"{i}".encode() for i in range(10, 15)]


def test_delivery_limit_counts_returns_and_dead_letters_past_it(conn) -> None:
    ch = conn.channel()
    queue, dead = fresh("limit"), fresh("limit-dead")
    ch.exchange_declare(f"{dead}-x", "fanout")
    ch.queue_declare(dead)
    ch.queue_bind(dead, f"{dead}-x")
    ch.queue_declare(queue, arguments={"x-delivery-limit": 2, "x-dead-letter-exchange": f"{dead}-x"})
    ch.basic_publish("", queue, b"poison", pika.BasicProperties(headers={"h": 1}))
    counts = []
    for _attempt in range(3):
        method, props, _body = ch.basic_get(queue)
        assert method is not None
        counts.append((props.headers or {}).get("x-delivery-count"))
        ch.basic_reject(method.delivery_tag, requeue=True)
    assert counts == [None, 1, 2], "x-delivery-count appears from the second delivery"
    assert ch.basic_get(queue)[0] is None, "past the limit the message leaves the queue"
    method, props, _body = ch.basic_get(dead, auto_ack=True)
    assert method is not None
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
    assert props.headers["h"] == 1


def test_delivery_counts_survive_a_restart(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        ch = conn.channel()
        ch.queue_declare("counted", durable=True, arguments={"x-delivery-limit": 5})
        ch.basic_publish("", "counted", b"m", pika.BasicProperties(delivery_mode=2))
        for _ in range(2):
            method, _props, _body = ch.basic_get("counted")
            ch.basic_nack(method.delivery_tag, requeue=True)
        conn.close()
        broker.stop()
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        method, props, _body = conn.channel().basic_get("counted")
        assert method.redelivered and props.headers["x-delivery-count"] == 2
        conn.close()
    finally:
        broker.kill()


def test_delayed_retry_waits_longer_on_each_failure(conn) -> None:
    ch = conn.channel()
    queue = fresh("retry")
    ch.queue_declare(queue, arguments={
        "x-delayed-retry-type": "failed", "x-delayed-retry-min": 150, "x-delayed-retry-max": 400,
    })  # fmt: skip
    ch.basic_publish("", queue, b"flaky")
    waits = []
    method, _p, _b = ch.basic_get(queue)
    for _attempt in range(3):
        rejected_at = time.monotonic()
        ch.basic_reject(method.delivery_tag, requeue=True)
        assert ch.basic_get(queue)[0] is None, "a failed message waits before it comes back"
        deadline = time.monotonic() + 3
        while True:
            method, _p, _b = ch.basic_get(queue)
            if method is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert method is not None and method.redelivered
        waits.append(time.monotonic() - rejected_at)
    # min x attempts: 150, 300, then capped at 400 ms.
    for wait, expected in zip(waits, (0.15, 0.30, 0.40), strict=True):
        assert expected - 0.02 <= wait <= expected + 0.25, (waits, expected)
    ch.basic_ack(method.delivery_tag)


def test_delayed_retry_of_type_failed_leaves_returned_messages_alone(conn) -> None:
    ch = conn.channel()
    queue = fresh("retry-returned")
    ch.queue_declare(queue, arguments={"x-delayed-retry-type": "failed", "x-delayed-retry-min": 5000})
    ch.basic_publish("", queue, b"m")
    other = conn.channel()
    method, _p, _b = other.basic_get(queue)
    assert method is not None
    other.close()  # returned, not failed: back at once
    method, _p, _b = ch.basic_get(queue)
    assert method is not None and method.redelivered


def test_priority_queue_delivers_higher_priority_first_fifo_within(conn) -> None:
    ch = conn.channel()
    queue = fresh("prio")
    ch.queue_declare(queue, arguments={"x-max-priority": 5})
    sent = [(1, "a"), (5, "b"), (1, "c"), (3, "d"), (5, "e"), (0, "f"), (9, "g")]
    for prio, body in sent:
        ch.basic_publish("", queue, body.encode(), pika.BasicProperties(priority=prio))
    got = []
    while True:
        method, props, body = ch.basic_get(queue)
        if method is None:
            break
        got.append(body.decode())
        if body == b"e" and not method.redelivered:
            ch.basic_nack(method.delivery_tag, requeue=True)  # back to its place in lane 5
        else:
            ch.basic_ack(method.delivery_tag)
        if len(got) > 20:
            break
    # 9 counts as the maximum (5); within a priority, publish order; the requeued "e" comes back first in its lane.
    assert got == ["b", "e", "e", "g", "d", "a", "c", "f"]


def test_priority_order_survives_a_restart(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        ch = conn.channel()
        ch.queue_declare("prio-durable", durable=True, arguments={"x-max-priority": 3})
        for prio, body in [(0, b"low-1"), (3, b"high-1"), (0, b"low-2"), (3, b"high-2")]:
            ch.basic_publish("", "prio-durable", body, pika.BasicProperties(priority=prio, delivery_mode=2))
        method, _p, body = ch.basic_get("prio-durable")
        assert body == b"high-1"
        ch.basic_ack(method.delivery_tag)
        conn.close()
        broker.kill()
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        ch = conn.channel()
        got = [ch.basic_get("prio-durable", auto_ack=True)[2] for _ in range(3)]
        assert got == [b"high-2", b"low-1", b"low-2"]
        assert ch.basic_get("prio-durable")[0] is None
        conn.close()
    finally:
        broker.kill()


def test_x_expires_deletes_a_queue_left_unused(conn) -> None:
    ch = conn.channel()
    queue, kept = fresh("expires"), fresh("expires-used")
    ch.queue_declare(queue, arguments={"x-expires": 300})
    ch.queue_declare(kept, arguments={"x-expires": 300})
    ch.basic_publish("", queue, b"messages do not count as use")
    ch.basic_consume(kept, lambda *a: None, auto_ack=True)
    time.sleep(0.6)
    conn.process_data_events(time_limit=0)
    assert ch.queue_declare(kept, passive=True).method.queue == kept, "a consumer keeps it alive"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(queue, passive=True)
    assert info.value.reply_code == 404
    ch = conn.channel()  # the 404 closed the old channel and with it the consumer on `kept`
    start = time.monotonic()
    while time.monotonic() - start < 0.2:  # used (redeclared) within the window: kept
        ch.queue_declare(kept, arguments={"x-expires": 300})
        time.sleep(0.05)
    assert ch.queue_declare(kept, passive=True).method.queue == kept


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({"x-delayed-retry-type": "faild", "x-delayed-retry-min": 100}, "x-delayed-retry-type"),
        ({"x-delayed-retry-type": "failed", "x-delayed-retry-min": "100"}, "expected integer"),
        ({"x-delayed-retry-type": "failed", "x-delayed-retry-min": -5}, "value_negative"),
        ({"x-delayed-retry-type": "all", "x-delayed-retry-max": True}, "expected integer"),
    ],
)
def test_bad_delayed_retry_arguments_are_refused(conn, arguments, text) -> None:
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(fresh("bad-retry"), arguments=arguments)
    assert info.value.reply_code == 406 and text in info.value.reply_text
