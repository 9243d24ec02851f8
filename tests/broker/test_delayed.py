"""Delayed delivery (`x-delayed-message` exchanges, the `x-delay` header), end to end.

With pika and aio-pika against a broker subprocess: declaring, the 406s of
the RabbitMQ delayed-message plugin, routing as the underlying type when
the message falls due (with the bindings of that moment), timing, order by
due time, confirms, delays beyond 2^32 ms, and held messages surviving a
clean restart and a kill -9.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pika
import pytest
from pamqp.commands import Basic
from pika.exceptions import ChannelClosedByBroker
from support.broker import BrokerProcess

DELAYED = "x-delayed-message"


def delayed_exchange(ch, name: str, kind: str = "direct", **kwargs) -> None:
    ch.exchange_declare(name, DELAYED, arguments={"x-delayed-type": kind}, **kwargs)


def publish(ch, exchange: str, key: str, body: bytes, delay: int | None = None, **props) -> None:
    headers = dict(props.pop("headers", {}) or {})
    if delay is not None:
        headers["x-delay"] = delay
    ch.basic_publish(exchange, key, body, pika.BasicProperties(headers=headers, **props))


def drain(conn, ch, queue: str, expected: int, timeout: float = 5.0) -> list[tuple[float, bytes, dict]]:
    """Consume until `expected` messages arrived (or timeout): (arrival time, body, headers)."""
    got: list[tuple[float, bytes, dict]] = []

    def on_message(_ch, method, props, body) -> None:
        got.append((time.time(), body, props.headers or {}))
        _ch.basic_ack(method.delivery_tag)

    tag = ch.basic_consume(queue, on_message)
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.01)
    ch.basic_cancel(tag)
    return got


def count(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


# ------------------------------------------------------------------- declare
@pytest.mark.parametrize("kind", ["direct", "fanout", "topic", "headers", "x-consistent-hash"])
def test_each_delayed_type_routes_as_its_type_when_due(connect, names, kind: str) -> None:
    conn = connect()
    ch = conn.channel()
    ex, q1, q2 = names("x"), names("q1"), names("q2")
    delayed_exchange(ch, ex, kind)
    ch.exchange_declare(ex, DELAYED, passive=True)
    ch.exchange_declare(ex, DELAYED, arguments={"x-delayed-type": kind})  # an equivalent redeclare
    for q in (q1, q2):
        ch.queue_declare(q, exclusive=True)
    bind = {
        "direct": [(q1, "a", None), (q2, "b", None)],
        "fanout": [(q1, "", None), (q2, "", None)],
        "topic": [(q1, "a.*", None), (q2, "b.#", None)],
        "headers": [(q1, "", {"x-match": "all", "to": "one"}), (q2, "", {"x-match": "all", "to": "two"})],
        "x-consistent-hash": [(q1, "1", None), (q2, "1", None)],
    }[kind]
    for q, key, args in bind:
        ch.queue_bind(q, ex, key, arguments=args)
    key, headers = {
        "direct": ("a", {}),
        "fanout": ("whatever", {}),
        "topic": ("a.x", {}),
        "headers": ("", {"to": "one"}),
        "x-consistent-hash": ("some-key", {}),
    }[kind]
    publish(ch, ex, key, b"m", 200, headers=headers)
    time.sleep(0.1)
    assert count(ch, q1) + count(ch, q2) == 0  # held
    time.sleep(0.25)
    expected = {"direct": (1, 0), "fanout": (1, 1), "topic": (1, 0), "headers": (1, 0)}
    if kind == "x-consistent-hash":
        assert count(ch, q1) + count(ch, q2) == 1
    else:
        assert (count(ch, q1), count(ch, q2)) == expected[kind]


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({}, "Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        ({"x-delayed-type": 7}, "Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        ({"x-delayed-type": "nope"}, "unknown exchange type 'nope'"),
        ({"x-delayed-type": DELAYED}, "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"),
    ],
)
def test_declare_without_a_valid_delayed_type_is_406(connect, names, arguments, text) -> None:
    ch = connect().channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare(names("x"), DELAYED, arguments=arguments)
    assert info.value.reply_code == 406
    assert info.value.reply_text == f"PRECONDITION_FAILED - {text}"


# ------------------------------------------------------------------- timing
def test_delays_are_kept_on_time_and_in_due_order(broker, names, run) -> None:
    """200 messages, delays 100-1000 ms published in random order: none early, p99 late < 50 ms."""

    async def scenario() -> list[tuple[float, float, int]]:
        conn = await aio_pika.connect(broker.url)
        async with conn:
            ch = await conn.channel()
            ex = await ch.declare_exchange(
                names("x"), DELAYED, arguments={"x-delayed-type": "direct"}
            )
            queue = await ch.declare_queue(names("q"), exclusive=True)
            await queue.bind(ex, "k")
            arrivals: list[tuple[float, float, int]] = []
            done = asyncio.Event()
            n = 200

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                now = time.time()
                published, delay = message.body.decode().split()
                arrivals.append((now, float(published), int(delay)))
                await message.ack()
                if len(arrivals) == n:
                    done.set()

            await queue.consume(on_message)
            delays = [100 + 900 * i // n for i in range(n)]
            random.Random(7).shuffle(delays)
            for delay in delays:
                body = f"{time.time()!r} {delay}".encode()
                await ex.publish(aio_pika.Message(body, headers={"x-delay": delay}), "k")
            await asyncio.wait_for(done.wait(), 10)
            return arrivals

    arrivals = run(scenario())
    lateness = sorted((now - (published + delay / 1000)) * 1000 for now, published, delay in arrivals)
    assert lateness[0] >= 0, f"a message arrived {-lateness[0]:.1f} ms early"
    p99 = lateness[int(len(lateness) * 0.99) - 1]
    assert p99 < 50, f"p99 lateness {p99:.1f} ms"
    dues = [published + delay / 1000 for _now, published, delay in arrivals]
    # In due order, up to the jitter between the client's clock reading and the broker's.
    assert all(a <= b + 0.010 for a, b in zip(dues, dues[1:], strict=False)), "not in due order"


def test_order_is_by_due_time_not_publish_time(connect, names) -> None:
    conn = connect()
    ch = conn.channel()
    ex, q = names("x"), names("q")
    delayed_exchange(ch, ex)
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, ex, "k")
    for i, delay in enumerate((400, 300, 200, 100)):
        publish(ch, ex, "k", f"{i}".encode(), delay)
    got = drain(conn, ch, q, 4)
    assert [body for _t, body, _h in got] == [b"3", b"2", b"1", b"0"]


def test_missing_zero_or_negative_delay_routes_at_once(connect, names) -> None:
    conn = connect()
    ch = conn.channel()
    ex, q = names("x"), names("q")
    delayed_exchange(ch, ex)
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, ex, "k")
    publish(ch, ex, "k", b"none")
    publish(ch, ex, "k", b"zero", 0)
    publish(ch, ex, "k", b"negative", -5000)
    publish(ch, ex, "k", b"not a number", headers={"x-delay": "soon"})
    assert count(ch, q) == 4


def test_delay_header_is_negated_on_delivery(connect, names) -> None:
    """As the plugin: a consumer can tell a message was delayed; other headers are untouched."""
    conn = connect()
    ch = conn.channel()
    ex, q = names("x"), names("q")
    delayed_exchange(ch, ex)
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, ex, "k")
    publish(ch, ex, "k", b"int", 50, headers={"a": "b", "n": 1})
    publish(ch, ex, "k", b"text", headers={"x-delay": "60", "z": [1, 2]})
    got = drain(conn, ch, q, 2)
    assert [(body, h) for _t, body, h in got] == [
        (b"int", {"a": "b", "x-delay": -50, "n": 1}),
        (b"text", {"x-delay": -60, "z": [1, 2]}),
    ]


def test_routing_uses_the_bindings_at_due_time(connect, names) -> None:
    conn = connect()
    ch = conn.channel()
    ex, late, gone = names("x"), names("late"), names("gone")
    delayed_exchange(ch, ex)
    ch.queue_declare(late, exclusive=True)
    ch.queue_declare(gone, exclusive=True)
    ch.queue_bind(gone, ex, "k")
    publish(ch, ex, "k", b"m", 300)
    ch.queue_bind(late, ex, "k")  # bound after the publish: still reached
    ch.queue_unbind(gone, ex, "k")  # unbound before it is due: not reached
    time.sleep(0.5)
    assert (count(ch, late), count(ch, gone)) == (1, 0)


def test_mandatory_is_never_returned_for_a_held_message(connect, names) -> None:
    conn = connect()
    ch = conn.channel()
    ex, q = names("x"), names("q")
    delayed_exchange(ch, ex)
    returned = []
    ch.add_on_return_callback(lambda *args: returned.append(args))
    ch.basic_publish(ex, "k", b"m", pika.BasicProperties(headers={"x-delay": 200}), mandatory=True)
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, ex, "k")
    conn.process_data_events(time_limit=0.4)
    assert returned == []
    assert count(ch, q) == 1
    # Without a delay the exchange is its type: unroutable and mandatory is returned.
    ch.basic_publish(ex, "other", b"now", mandatory=True)
    conn.process_data_events(time_limit=0.1)
    assert len(returned) == 1


def test_the_alternate_exchange_is_used_when_due_not_when_held(connect, names) -> None:
    conn = connect()
    ch = conn.channel()
    ex, ae, q, qa = names("x"), names("ae"), names("q"), names("qa")
    ch.exchange_declare(ae, "fanout")
    ch.exchange_declare(ex, DELAYED, arguments={"x-delayed-type": "direct", "alternate-exchange": ae})
    ch.queue_declare(q, exclusive=True)
    ch.queue_declare(qa, exclusive=True)
    ch.queue_bind(q, ex, "k")
    ch.queue_bind(qa, ae)
    publish(ch, ex, "k", b"bound", 200)
    publish(ch, ex, "nowhere", b"unbound", 200)
    time.sleep(0.1)
    assert (count(ch, q), count(ch, qa)) == (0, 0)
    time.sleep(0.3)
    assert (count(ch, q), count(ch, qa)) == (1, 1)


def test_confirms_arrive_for_delayed_publishes(broker, names, run) -> None:
    async def scenario() -> tuple[int, float]:
        conn = await aio_pika.connect(broker.url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            ex = await ch.declare_exchange(
                names("x"), DELAYED, durable=True, arguments={"x-delayed-type": "fanout"}
            )
            start = time.monotonic()
            confirms = await asyncio.gather(*(
                ex.publish(aio_pika.Message(b"m", headers={"x-delay": 60_000},
                                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "")
                for _ in range(500)
            ))  # fmt: skip
            elapsed = time.monotonic() - start
            await ex.delete()
            return sum(isinstance(c, Basic.Ack) for c in confirms), elapsed

    confirmed, elapsed = run(scenario())
    assert confirmed == 500
    assert elapsed < 5  # confirmed when held, not when due


def test_a_transaction_holds_at_the_commit(connect, names) -> None:
    conn = connect()
    ch = conn.channel()
    ex, q = names("x"), names("q")
    delayed_exchange(ch, ex)
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, ex, "k")
    ch.tx_select()
    publish(ch, ex, "k", b"rolled back", 100)
    ch.tx_rollback()
    publish(ch, ex, "k", b"committed", 100)
    time.sleep(0.2)
    ch.tx_commit()
    start = time.time()
    got = drain(conn, ch, q, 1)
    assert [body for _t, body, _h in got] == [b"committed"]
    assert got[0][0] - start >= 0.1  # the delay counts from the commit
    conn.process_data_events(time_limit=0.2)
    assert count(ch, q) == 0


def test_a_delay_beyond_2_32_ms_is_held(connect, names) -> None:
    """The plugin routes a delay over 2^32 ms at once; here it waits (2^33 ms is 99 days)."""
    conn = connect()
    ch = conn.channel()
    ex, q = names("x"), names("q")
    delayed_exchange(ch, ex)
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, ex, "k")
    publish(ch, ex, "k", b"far", 2**33)
    publish(ch, ex, "k", b"huge", 2**62)
    publish(ch, ex, "k", b"near", 100)
    got = drain(conn, ch, q, 1, timeout=1.0)
    assert [body for _t, body, _h in got] == [b"near"]
    conn.process_data_events(time_limit=0.6)
    assert count(ch, q) == 0


def test_deleting_the_exchange_drops_what_it_holds(connect, names) -> None:
    conn = connect()
    ch = conn.channel()
    ex, q = names("x"), names("q")
    delayed_exchange(ch, ex)
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, ex, "k")
    publish(ch, ex, "k", b"m", 200)
    ch.exchange_delete(ex)
    delayed_exchange(ch, ex)  # a new exchange of the same name holds nothing
    ch.queue_bind(q, ex, "k")
    time.sleep(0.4)
    assert count(ch, q) == 0


def test_delayed_exchange_reached_another_way_holds_too(connect, names) -> None:
    """Through an exchange-to-exchange binding, as an alternate exchange, as a dead-letter exchange."""
    conn = connect()
    ch = conn.channel()
    front, alt, ex, q, src = names("front"), names("alt"), names("x"), names("q"), names("src")
    delayed_exchange(ch, ex)
    ch.exchange_declare(front, "fanout")
    ch.exchange_bind(ex, front)
    ch.exchange_declare(alt, "direct", arguments={"alternate-exchange": ex})
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, ex, "k")
    ch.queue_declare(src, exclusive=True, arguments={"x-dead-letter-exchange": ex})
    start = time.time()
    publish(ch, front, "k", b"via e2e", 300)
    publish(ch, alt, "k", b"via alternate", 300)
    publish(ch, "", src, b"dead", 300, headers={})
    method, _props, _body = ch.basic_get(src)
    ch.basic_reject(method.delivery_tag, requeue=False)  # dead-lettered with routing key src
    ch.queue_bind(q, ex, src)
    time.sleep(0.1)
    assert count(ch, q) == 0
    got = drain(conn, ch, q, 3)
    assert sorted(body for _t, body, _h in got) == [b"dead", b"via alternate", b"via e2e"]
    assert min(t for t, _b, _h in got) - start >= 0.3
    dead = next(h for _t, b, h in got if b == b"dead")
    assert dead["x-delay"] == -300 and dead["x-first-death-reason"] == "rejected"


# ------------------------------------------------------------------ restart
@pytest.fixture
def own_broker() -> Iterator[BrokerProcess]:
    base = Path(tempfile.mkdtemp(prefix="warrenmq-delayed-"))
    (base / "data").mkdir()
    process = BrokerProcess(base / "data")
    try:
        yield process.start()
    finally:
        process.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.restarts
@pytest.mark.parametrize("crash", [False, True], ids=["clean-restart", "kill-9"])
def test_held_messages_survive_restart_exactly_once_and_on_time(own_broker, crash: bool) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(own_broker.url))
    ch = conn.channel()
    ch.confirm_delivery()
    delayed_exchange(ch, "dx", durable=True)
    ch.queue_declare("dq", durable=True)
    ch.queue_bind("dq", "dx", "k")
    published = {}
    delays = [200, 400] + [2500 + 10 * i for i in range(50)]  # the first two fall due while down
    for i, delay in enumerate(delays):
        published[f"m{i}".encode()] = time.time() + delay / 1000
        publish(ch, "dx", "k", f"m{i}".encode(), delay, delivery_mode=2 if i % 2 else 1)
    publish(ch, "dx", "k", b"far", 2**33)  # confirmed: each publish waited for its ack
    conn.close()
    if crash:
        own_broker.kill()
    else:
        assert own_broker.stop() == 0
    time.sleep(0.5)
    own_broker.start()
    conn = pika.BlockingConnection(pika.URLParameters(own_broker.url))
    ch = conn.channel()
    ready = time.time()  # what fell due while the broker was down is there now
    got = drain(conn, ch, "dq", len(delays), timeout=5.0)
    conn.process_data_events(time_limit=0.3)
    assert count(ch, "dq") == 0
    bodies = [body for _t, body, _h in got]
    assert sorted(bodies) == sorted(published), "each held message exactly once, 'far' still held"
    for arrival, body, _h in got:
        due = published[body]
        assert arrival >= due - 0.001, f"{body!r} early"
        assert arrival <= max(due, ready) + 0.05, f"{body!r} {1000 * (arrival - max(due, ready)):.0f} ms late"
    conn.close()
    assert "Traceback" not in own_broker.log_text()


@pytest.mark.restarts
def test_a_settled_first_segment_is_released_and_nothing_comes_back(tmp_path) -> None:
    """Small segments: the log keeps little besides what is pending; a restart re-routes nothing."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "warrenmq.yaml"
    config.write_text("segment_bytes: 4096\n")
    process = BrokerProcess(data, "--config", str(config)).start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(process.url))
        ch = conn.channel()
        ch.confirm_delivery()
        delayed_exchange(ch, "dx", durable=True)
        ch.queue_declare("dq", durable=True)
        ch.queue_bind("dq", "dx", "k")
        publish(ch, "dx", "k", b"far", 2**33)  # keeps the first segment alive, until evacuated
        for i in range(300):
            publish(ch, "dx", "k", b"%d" % i + b"." * 100, 50)
        got = drain(conn, ch, "dq", 300)
        assert len(got) == 300
        conn.close()
        topic = next(p for p in (data / "topics").iterdir() if p.name.startswith("%00delayed"))
        deadline = time.monotonic() + 10
        while len(list((topic / "0").glob("*.log"))) > 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(list((topic / "0").glob("*.log"))) <= 2
        assert process.stop() == 0
        process.start()
        conn = pika.BlockingConnection(pika.URLParameters(process.url))
        ch = conn.channel()
        time.sleep(0.3)
        assert count(ch, "dq") == 0  # nothing routed twice, 'far' still held
        conn.close()
        assert "Traceback" not in process.log_text()
    finally:
        process.kill()
