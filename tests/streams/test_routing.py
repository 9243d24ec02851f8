"""A stream among the rest: a dead-letter target, seen by the management API and the metrics."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from support.streams import consume, declare_stream, publish, pump_until


# RabbitMQ 3.x drops what a classic queue dead-letters into a stream; 4.x writes it.
@pytest.mark.rabbitmq4
def test_a_stream_as_a_dead_letter_target(connect, names):
    work, dead = names("work"), names("dead")
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, dead)
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    publish(ch, work, ["poison", "fine"])
    rejected = []
    ch.basic_qos(prefetch_count=10)
    ch.basic_consume(work, lambda c, m, _p, body: rejected.append((m.delivery_tag, body)))
    pump_until(conn, lambda: len(rejected) == 2)
    ch.basic_reject(rejected[0][0], requeue=False)
    ch.basic_reject(rejected[1][0], requeue=False)
    got = consume(conn, conn.channel(), dead, offset="first", wait_for=2)
    assert got.bodies == ["poison", "fine"]
    assert got.offsets == [0, 1]
    death = got.got[0].headers["x-death"][0]
    assert (death["queue"], death["reason"], death["count"]) == (work, "rejected", 1)
    assert got.got[0].headers["x-first-death-queue"] == work
    ch.queue_delete(work)


@pytest.mark.rabbitmq4
def test_a_stream_bound_to_a_dead_letter_exchange(connect, names):
    work, dead, dlx = names("work"), names("dead"), names("dlx")
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(dlx, "fanout")
    try:
        declare_stream(ch, dead)
        ch.queue_bind(dead, dlx)
        ch.queue_declare(work, arguments={"x-dead-letter-exchange": dlx, "x-message-ttl": 0})
        publish(ch, work, ["expired"])
        got = consume(conn, conn.channel(), dead, offset="first", wait_for=1)
        assert got.got[0].headers["x-death"][0]["reason"] == "expired"
        assert got.offsets == [0]
    finally:
        cleanup = connect().channel()
        cleanup.exchange_delete(dlx)


def api(broker: Any, method: str, path: str) -> tuple[int, Any]:
    if broker.reference:
        port = urllib.parse.urlparse(broker.url).port + 10000
        url = f"http://127.0.0.1:{port}{path}"
    else:
        url = broker.process.management_url + path
    request = urllib.request.Request(url, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_management_api_reports_a_stream(broker, connect, names):
    q = names()
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, q, **{"x-max-age": "1D"})
    publish(ch, q, ["a", "b", "c"])
    consume(conn, conn.channel(), q, offset="first", prefetch=2, wait_for=2)  # 2 unacked
    path = "/api/queues/%2F/" + urllib.parse.quote(q, safe="")
    seen: list[Any] = []

    def reports_three() -> bool:  # RabbitMQ's figures come from a sample taken every 5 s
        seen.append(api(broker, "GET", path)[1])
        return seen[-1].get("messages") == 3

    pump_until(conn, reports_three, timeout=15)
    info = seen[-1]
    assert info["type"] == "stream"
    assert info["durable"] is True
    assert info["arguments"] == {"x-queue-type": "stream", "x-max-age": "1D"}
    assert (info["messages"], info["messages_ready"], info["messages_unacknowledged"]) == (3, 3, 0)
    assert info["consumers"] == 1
    status, answer = api(broker, "DELETE", path + "/contents")
    assert (status, answer["error"]) == (400, "bad_request")
    assert answer["reason"] == f"queue.purge not supported by stream queues queue '{q}' in vhost '/'"


@pytest.mark.warrenmq_only
def test_the_metrics_count_a_streams_messages(broker, connect, names):
    q = names()
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, q)
    publish(ch, q, ["a", "b", "c", "d"])
    consume(conn, conn.channel(), q, offset="first", prefetch=3, wait_for=3)
    with urllib.request.urlopen(broker.process.metrics_url, timeout=10) as response:
        text = response.read().decode()
    lines = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines()
             if f'queue="{q}"' in line and not line.startswith("#")}  # fmt: skip
    ready = next(v for k, v in lines.items() if k.startswith("rabbitmq_queue_messages_ready{"))
    unacked = next(v for k, v in lines.items() if k.startswith("rabbitmq_queue_messages_unacked{"))
    assert (float(ready), float(unacked)) == (4.0, 0.0)
