"""Message TTL, dead-lettering and length limits, end to end with pika against a broker subprocess."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pika
import pytest
from pika.exceptions import NackError
from support.broker import BrokerProcess


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    proc = BrokerProcess(tmp_path_factory.mktemp("ttl") / "data").start()
    yield proc
    proc.kill()


@pytest.fixture
def channel(broker: BrokerProcess):
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    yield conn.channel()
    if conn.is_open:
        conn.close()


_counter = [0]


def names(prefix: str) -> tuple[str, str, str]:
    """A fresh (queue, dead-letter exchange, dead-letter queue) triple."""
    _counter[0] += 1
    n = _counter[0]
    return f"{prefix}-{n}", f"{prefix}-dlx-{n}", f"{prefix}-dead-{n}"


def with_dlx(ch, prefix: str, **arguments) -> tuple[str, str, str]:
    queue, dlx, dead = names(prefix)
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dead)
    ch.queue_bind(dead, dlx)
    ch.queue_declare(queue, arguments={"x-dead-letter-exchange": dlx, **arguments})
    return queue, dlx, dead


def get_all(ch, queue: str, timeout: float = 5.0, expected: int | None = None) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            if expected is None or len(out) >= expected:
                break
            time.sleep(0.02)
            continue
        out.append((method, props, body))
    return out


def test_queue_ttl_expires_and_dead_letters_with_x_death(channel) -> None:
    queue, dlx, dead = with_dlx(channel, "qttl", **{"x-message-ttl": 100})
    channel.basic_publish("", queue, b"old", pika.BasicProperties(headers={"keep": "me"}))
    got = get_all(channel, dead, expected=1)
    assert [b for _m, _p, b in got] == [b"old"]
    _method, props, _body = got[0]
    death = props.headers["x-death"][0]
    assert death["reason"] == "expired" and death["queue"] == queue and death["count"] == 1
    assert death["exchange"] == "" and death["routing-keys"] == [queue]
    assert props.headers["keep"] == "me"
    assert props.headers["x-first-death-reason"] == "expired"
    assert props.headers["x-last-death-queue"] == queue
    assert channel.queue_declare(queue, passive=True).method.message_count == 0


def test_message_expiration_is_enforced_anywhere_in_the_queue(channel) -> None:
    """A 100 ms message behind a 10 minute one expires on time (no head-of-line wait)."""
    queue, _dlx, dead = with_dlx(channel, "anywhere")
    channel.basic_publish("", queue, b"long", pika.BasicProperties(expiration="600000"))
    channel.basic_publish("", queue, b"short", pika.BasicProperties(expiration="100"))
    got = get_all(channel, dead, expected=1)
    assert [b for _m, _p, b in got] == [b"short"]
    assert got[0][1].expiration is None, "the expiration property is removed when dead-lettered"
    assert got[0][1].headers["x-death"][0]["original-expiration"] == "100"
    assert channel.queue_declare(queue, passive=True).method.message_count == 1


def test_the_lower_of_queue_and_message_ttl_wins(channel) -> None:
    queue, _dlx, dead = with_dlx(channel, "lower", **{"x-message-ttl": 60000})
    channel.basic_publish("", queue, b"m", pika.BasicProperties(expiration="50"))
    assert [b for _m, _p, b in get_all(channel, dead, expected=1)] == [b"m"]


def test_expiration_zero_means_now_or_never(channel) -> None:
    queue, _dlx, dead = with_dlx(channel, "zero")
    channel.basic_publish("", queue, b"nobody-waits", pika.BasicProperties(expiration="0"))
    assert [b for _m, _p, b in get_all(channel, dead, expected=1)] == [b"nobody-waits"]
    received = []
    channel.basic_consume(queue, lambda ch, m, p, b: received.append(b), auto_ack=True)
    channel.basic_publish("", queue, b"taken", pika.BasicProperties(expiration="0"))
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        channel.connection.process_data_events(time_limit=0.05)
    assert received == [b"taken"]


def test_an_invalid_expiration_is_refused(channel) -> None:
    queue, _dlx, _dead = with_dlx(channel, "badexp")
    channel.basic_publish("", queue, b"m", pika.BasicProperties(expiration="soon"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.queue_declare(queue, passive=True)
    assert info.value.reply_code == 406 and "invalid expiration 'soon'" in info.value.reply_text


def test_mixed_ttls_every_short_one_is_dead_lettered_within_300_ms(channel) -> None:
    queue, _dlx, dead = with_dlx(channel, "mixed")
    published: dict[bytes, float] = {}
    for i in range(1000):
        body = f"{i}".encode()
        ttl = "10000" if i % 2 == 0 else "100"
        published[body] = time.monotonic()
        channel.basic_publish("", queue, body, pika.BasicProperties(expiration=ttl))
    arrived: dict[bytes, float] = {}

    def on_dead(ch, method, props, body) -> None:
        arrived[body] = time.monotonic()

    channel.basic_consume(dead, on_dead, auto_ack=True)
    deadline = time.monotonic() + 5
    while len(arrived) < 500 and time.monotonic() < deadline:
        channel.connection.process_data_events(time_limit=0.01)
    short = [b for b in published if int(b) % 2 == 1]
    assert sorted(arrived) == sorted(short), "only the 100 ms messages may be dead-lettered by now"
    late = {b: arrived[b] - published[b] for b in short if arrived[b] - published[b] > 0.3}
    assert not late, f"{len(late)} short-TTL messages took over 300 ms, worst {max(late.values()):.3f}s"
    assert channel.queue_declare(queue, passive=True).method.message_count == 500


def test_x_death_after_repeated_rejects_expiries_and_drops_across_two_queues(channel) -> None:
    """x-death compared field by field as the message moves between two queues."""
    a, b = names("xd-a")[0], names("xd-b")[0]
    to_a, to_b = f"{a}-x", f"{b}-x"
    for ex in (to_a, to_b):
        channel.exchange_declare(ex, "direct")
    channel.queue_declare(a, arguments={"x-dead-letter-exchange": to_b, "x-dead-letter-routing-key": b})
    channel.queue_declare(b, arguments={"x-dead-letter-exchange": to_a, "x-dead-letter-routing-key": a,
                                        "x-message-ttl": 50})  # fmt: skip
    channel.queue_bind(a, to_a, a)
    channel.queue_bind(b, to_b, b)
    channel.basic_publish("", a, b"m", pika.BasicProperties(expiration="60000"))
    before = int(time.time())

    def reject_from(queue: str):
        got = get_all(channel, queue, expected=1)
        assert len(got) == 1, f"nothing arrived in {queue}"
        return got[0]

    # a: rejected -> b: expired -> a: rejected -> b: expired -> a
    for _round in range(2):
        deadline = time.monotonic() + 5
        while True:
            method, _props, _body = channel.basic_get(a)
            if method is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert method is not None
        channel.basic_reject(method.delivery_tag, requeue=False)
    method, props, body = reject_from(a)
    deaths = props.headers["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        (b, "expired", 2),
        (a, "rejected", 2),
    ]
    for d in deaths:
        stamp = d["time"]
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.UTC)
        assert before - 1 <= stamp.timestamp() <= time.time() + 1
        assert set(d) >= {"count", "reason", "queue", "time", "exchange", "routing-keys"}
    assert deaths[1]["exchange"] == "" and deaths[1]["routing-keys"] == [a]
    assert deaths[0]["exchange"] == to_b and deaths[0]["routing-keys"] == [b]
    assert deaths[1]["original-expiration"] == "60000"
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-first-death-queue"] == a
    assert props.headers["x-last-death-reason"] == "expired"
    assert props.headers["x-last-death-queue"] == b
    assert body == b"m"


def test_max_length_drop_head_dead_letters_the_oldest(channel) -> None:
    queue, _dlx, dead = with_dlx(channel, "maxlen", **{"x-max-length": 3})
    for i in range(5):
        channel.basic_publish("", queue, f"{i}".encode())
    assert [b for _m, _p, b in get_all(channel, dead, expected=2)] == [b"0", b"1"]
    assert [b for _m, _p, b in get_all(channel, queue)] == [b"2", b"3", b"4"]
    assert get_all(channel, dead) == [], "only the two oldest may be dropped"


def test_max_length_bytes_counts_bodies(channel) -> None:
    queue, _dlx, dead = with_dlx(channel, "maxbytes", **{"x-max-length-bytes": 10})
    for body in (b"aaaa", b"bbbb", b"cccc"):
        channel.basic_publish("", queue, body)
    dropped = get_all(channel, dead, expected=1)
    assert [b for _m, _p, b in dropped] == [b"aaaa"]
    assert dropped[0][1].headers["x-death"][0]["reason"] == "maxlen"


def test_reject_publish_nacks_the_publisher(channel) -> None:
    queue, _dlx, dead = with_dlx(channel, "rejpub", **{"x-max-length": 2, "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"1")
    channel.basic_publish("", queue, b"2")
    with pytest.raises(NackError):
        channel.basic_publish("", queue, b"3")
    assert [b for _m, _p, b in get_all(channel, queue)] == [b"1", b"2"]
    assert get_all(channel, dead) == []


def test_reject_publish_dlx_nacks_and_dead_letters(channel) -> None:
    queue, _dlx, dead = with_dlx(
        channel, "rejdlx", **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"}
    )
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"kept")
    with pytest.raises(NackError):
        channel.basic_publish("", queue, b"refused")
    got = get_all(channel, dead, expected=1)
    assert [b for _m, _p, b in got] == [b"refused"]
    assert got[0][1].headers["x-death"][0]["reason"] == "maxlen"


def test_nack_without_requeue_dead_letters_with_reason_rejected(channel) -> None:
    queue, _dlx, dead = with_dlx(channel, "nack")
    channel.basic_publish("", queue, b"bad", pika.BasicProperties(headers={"x-death": "forged"}))
    method, _props, _ = channel.basic_get(queue)
    channel.basic_nack(method.delivery_tag, requeue=False)
    got = get_all(channel, dead, expected=1)
    deaths = got[0][1].headers["x-death"]
    assert len(deaths) == 1 and deaths[0]["reason"] == "rejected" and deaths[0]["count"] == 1


def test_a_crash_while_dead_lettering_loses_nothing(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        ch = conn.channel()
        ch.exchange_declare("crash-dlx", "fanout", durable=True)
        ch.queue_declare("crash-dead", durable=True)
        ch.queue_bind("crash-dead", "crash-dlx")
        ch.queue_declare("crash-src", durable=True,
                         arguments={"x-dead-letter-exchange": "crash-dlx", "x-message-ttl": 200})  # fmt: skip
        ch.confirm_delivery()
        total = 3000
        for i in range(total):
            ch.basic_publish("", "crash-src", str(i).encode(), pika.BasicProperties(delivery_mode=2))
        conn.close()
        time.sleep(0.2)  # expiries are under way
        broker.kill()
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        ch = conn.channel()
        seen: set[bytes] = set()
        deadline = time.monotonic() + 10
        while len(seen) < total and time.monotonic() < deadline:
            for queue in ("crash-src", "crash-dead"):
                method, _props, body = ch.basic_get(queue, auto_ack=True)
                if method is not None:
                    seen.add(body)
        missing = total - len(seen)
        assert missing == 0, f"{missing} messages were lost in a crash during dead-lettering"
        conn.close()
    finally:
        broker.kill()


def test_x_death_after_repeated_max_length_drops_between_two_queues(channel) -> None:
    """c drops its head (maxlen) into d; d's rejects go back to c: x-death counts per (queue, reason)."""
    c, d = names("ml-c")[0], names("ml-d")[0]
    to_c, to_d = f"{c}-x", f"{d}-x"
    channel.exchange_declare(to_c, "fanout")
    channel.exchange_declare(to_d, "fanout")
    channel.queue_declare(c, arguments={"x-max-length": 1, "x-dead-letter-exchange": to_d})
    channel.queue_declare(d, arguments={"x-dead-letter-exchange": to_c})
    channel.queue_bind(c, to_c)
    channel.queue_bind(d, to_d)

    def take_from_d(body: bytes):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            method, props, got = channel.basic_get(d)
            if method is None:
                time.sleep(0.02)
            elif got == body:
                return method, props
            else:
                channel.basic_ack(method.delivery_tag)
        raise AssertionError(f"{body!r} never reached {d}")

    channel.basic_publish("", c, b"m")
    channel.basic_publish("", c, b"filler-1")  # m is dropped: maxlen in c
    method, _props = take_from_d(b"m")
    channel.basic_reject(method.delivery_tag, requeue=False)  # rejected in d, back to c (filler-1 dropped)
    time.sleep(0.1)
    channel.basic_publish("", c, b"filler-2")  # m is dropped again: maxlen in c, count 2
    _method, props = take_from_d(b"m")
    deaths = props.headers["x-death"]
    assert [(x["queue"], x["reason"], x["count"]) for x in deaths] == [(c, "maxlen", 2), (d, "rejected", 1)]
    assert deaths[0]["exchange"] == "" and deaths[0]["routing-keys"] == [c]
    assert deaths[1]["exchange"] == to_d and deaths[1]["routing-keys"] == [c]
    assert props.headers["x-first-death-reason"] == "maxlen" and props.headers["x-first-death-queue"] == c
    assert props.headers["x-last-death-reason"] == "maxlen" and props.headers["x-last-death-queue"] == c
