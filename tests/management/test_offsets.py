"""`warrenmq ctl offsets` and GET /api/queues/{vhost}/{queue}/offsets: a real broker, pika to set up."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

DEADLINE = 30.0


@pytest.fixture
def conn(mgmt_broker: Any) -> Iterator[pika.BlockingConnection]:
    connection = pika.BlockingConnection(pika.URLParameters(mgmt_broker.url))
    yield connection
    with contextlib.suppress(Exception):
        connection.close()
    assert "Traceback" not in mgmt_broker.log_text(), mgmt_broker.log_text()[-3000:]


@pytest.fixture
def name() -> str:
    return f"offsets.{uuid.uuid4().hex[:8]}"


def offsets(ctl: Callable[..., Any], queue: str) -> dict[str, Any]:
    result = ctl("offsets", queue, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def publish(ch: Any, queue: str, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        ch.basic_publish("", queue, str(n).encode(), pika.BasicProperties(headers={"k": f"key-{n}"}))


def consume_and_ack(conn: pika.BlockingConnection, queue: str, count: int, ack: Callable[[int], bool],
                    arguments: dict[str, Any], tag: str = "") -> list[tuple[int, dict[str, Any]]]:  # fmt: skip
    """Take count deliveries, ack those whose body number ack() picks; (number, headers) of each."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=100)
    seen: list[tuple[int, dict[str, Any]]] = []

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        seen.append((int(body), properties.headers))
        if ack(int(body)):
            channel.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message, consumer_tag=tag or None, arguments=arguments)
    deadline = time.monotonic() + DEADLINE
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {len(seen)} of {count} deliveries"
        conn.process_data_events(time_limit=0.05)
    ch.close()  # a round trip after the acks: the broker has handled them
    return seen


def test_stream_named_consumer(ctl: Callable[..., Any], conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
    publish(ch, name, 10)
    consume_and_ack(conn, name, 10, lambda n: n < 4, {"x-stream-offset": "first"}, tag="reader")

    answer = offsets(ctl, name)
    assert answer == {
        "name": name, "vhost": "/", "type": "stream",
        "partitions": [{"partition": 0, "log_start": 0, "log_end": 10, "messages": 10}],
        "consumers": [{"name": "reader", "group": False, "partition": 0, "committed": 3, "lag": 6}],
    }  # fmt: skip
    assert table_rows(ctl("offsets", name).out) == [
        ["partition", "log_start", "log_end", "messages"], ["0", "0", "10", "10"],
        ["name", "group", "partition", "committed", "lag"], ["reader", "false", "0", "3", "6"],
    ]


def test_partitioned_stream_group(ctl: Callable[..., Any], conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(name, durable=True, arguments={
        "x-queue-type": "stream", "x-partitions": 3, "x-partition-key": "k"})  # fmt: skip
    publish(ch, name, 30)
    # The group acks the messages numbered below 20 only: in each partition
    # its committed offset is the highest of theirs, and the rest is its lag.
    seen = consume_and_ack(conn, name, 30, lambda n: n < 20, {"x-consumer-group": "billing"})
    ends = [0, 0, 0]
    committed = [-1, -1, -1]
    for number, headers in seen:
        partition, offset = headers["x-stream-partition"], headers["x-stream-offset"]
        ends[partition] = max(ends[partition], offset + 1)
        if number < 20:
            committed[partition] = max(committed[partition], offset)
    assert min(committed) >= 0, "every partition has acked messages"
    lags = [ends[p] - committed[p] - 1 for p in range(3)]
    assert sum(lags) == 10

    answer = offsets(ctl, name)
    assert answer["type"] == "stream"
    assert answer["partitions"] == [
        {"partition": p, "log_start": 0, "log_end": ends[p], "messages": ends[p]} for p in range(3)
    ]
    assert answer["consumers"] == [
        {"name": "billing", "group": True, "partition": p, "committed": committed[p], "lag": lags[p]}
        for p in range(3)
    ]
    table = table_rows(ctl("offsets", name).out)
    assert table[4:] == [["name", "group", "partition", "committed", "lag"]] + [
        ["billing", "true", str(p), str(committed[p]), str(lags[p])] for p in range(3)
    ]


def test_classic_queue_settled(ctl: Callable[..., Any], conn: pika.BlockingConnection, name: str) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(name, durable=True)
    publish(ch, name, 5)
    for _ in range(2):
        method, _props, _body = ch.basic_get(name)
        ch.basic_ack(method.delivery_tag)
    ch.queue_declare(name, passive=True)  # a round trip: the acks are in

    assert offsets(ctl, name) == {
        "name": name, "vhost": "/", "type": "classic",
        "partitions": [{"partition": 0, "log_start": 0, "log_end": 5, "messages": 5}],
        "consumers": [{"name": "settled", "group": False, "partition": 0, "committed": 1, "lag": 3}],
    }  # fmt: skip
    assert table_rows(ctl("offsets", name).out)[-1] == ["settled", "false", "0", "1", "3"]


def test_missing_queue(ctl: Callable[..., Any], mgmt_broker: Any, name: str) -> None:
    result = ctl("offsets", name)
    assert result.code == 1
    assert "404" in result.err or "not found" in result.err.lower(), result.err
    request = urllib.request.Request(f"{mgmt_broker.management_url}/api/queues/%2F/{name}/offsets")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 404
