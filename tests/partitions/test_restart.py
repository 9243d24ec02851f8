"""A restart, clean or after kill -9, keeps every unsettled message of every partition, in key order."""

from __future__ import annotations

from collections import defaultdict

import pika
import pytest
from support.partitions import keyed_body, keyed_messages, parse_body, pump_until

PERSISTENT = pika.BasicProperties(delivery_mode=2)
MESSAGES = keyed_messages(50, 2000)


def _declare_and_fill(ch, q: str, arguments: dict) -> None:
    x = f"{q}.in"
    ch.exchange_declare(x, "fanout", durable=True)
    ch.queue_declare(q, durable=True, arguments={"x-partitions": 4, **arguments})
    ch.queue_bind(q, x)
    ch.confirm_delivery()
    for key, seq in MESSAGES:
        ch.basic_publish(x, key, keyed_body(key, seq), PERSISTENT)


def _get_and_ack(ch, q: str, count: int) -> list[tuple[str, int]]:
    out = []
    for _ in range(count):
        method, _props, body = ch.basic_get(q)
        ch.basic_ack(method.delivery_tag)
        out.append(parse_body(body))
    return out


def _consume(conn, q: str, count: int, ack: bool) -> list[tuple[str, int, bool]]:
    """The first count deliveries to a consumer with that prefetch: acked, or held unacked."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=count)
    got: list[tuple[str, int, bool]] = []

    def on_message(channel, method, _props, body):
        got.append((*parse_body(body), method.redelivered))
        if ack:
            channel.basic_ack(method.delivery_tag)

    ch.basic_consume(q, on_message)
    pump_until(conn, lambda: len(got) >= count)
    return got


@pytest.mark.parametrize("how", ["clean", "kill"])
@pytest.mark.parametrize("single_active", [False, True], ids=["shared", "single-active"])
def test_every_unsettled_message_comes_back_in_key_order(broker, connect, names, how, single_active):
    q = names("q")
    ch = connect().channel()
    _declare_and_fill(ch, q, {"x-single-active-consumer": single_active})
    acked = _get_and_ack(ch, q, 300)
    held = _consume(connect(), q, 40, ack=False)  # delivered, never acked
    # The acks reached the broker: it answers this after them.
    assert ch.queue_declare(q, passive=True).method.message_count == 2000 - 300 - 40

    broker.restart() if how == "clean" else broker.crash_and_restart()

    conn = connect()
    ch = conn.channel()
    assert ch.queue_declare(q, passive=True).method.message_count == 2000 - 300
    after = _consume(conn, q, 2000 - 300, ack=True)
    assert len(after) == 2000 - 300
    done = set(acked)
    assert {(k, s) for k, s, _ in after} == set(MESSAGES) - done
    # What was delivered and not acked is flagged redelivered; nothing else is.
    assert {(k, s) for k, s, again in after if again} == {(k, s) for k, s, _ in held}
    per_key = defaultdict(list)
    for key, seq, _again in after:
        per_key[key].append(seq)
    assert all(seqs == sorted(seqs) for seqs in per_key.values())
    assert ch.queue_declare(q, passive=True).method.message_count == 0
