"""`warrenmq ctl replay` end to end: a real broker, pika to set up, ctl run in-process."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pika
import pytest


@pytest.fixture
def ch(mgmt_broker: Any) -> Iterator[Any]:
    conn = pika.BlockingConnection(pika.URLParameters(mgmt_broker.url))
    channel = conn.channel()
    channel.confirm_delivery()
    yield channel
    with contextlib.suppress(Exception):
        conn.close()
    assert "Traceback" not in mgmt_broker.log_text(), mgmt_broker.log_text()[-3000:]


@pytest.fixture
def name() -> Callable[[str], str]:
    tag = uuid.uuid4().hex[:8]
    return lambda kind="q": f"ctl-replay.{kind}.{tag}"


def settle(ch: Any, queue: str, count: int) -> list[bytes]:
    """Take count messages and ack them; returns once the broker has handled the acks."""
    bodies = []
    for _ in range(count):
        method, _props, body = ch.basic_get(queue)
        assert method is not None
        ch.basic_ack(method.delivery_tag)
        bodies.append(body)
    ch.queue_declare(queue, passive=True)  # a round trip: the acks are in
    return bodies


def ready(ch: Any, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def drain(ch: Any, queue: str) -> list[bytes]:
    bodies = []
    while (got := ch.basic_get(queue, auto_ack=True))[0] is not None:
        bodies.append(got[2])
    return bodies


def test_replay_prints_the_counts(ctl, ch, name) -> None:
    q = name()
    ch.queue_declare(q)
    for body in (b"a", b"b", b"c"):
        ch.basic_publish("", q, body)
    settle(ch, q, 2)

    result = ctl("replay", q, "--from-offset", "0")

    assert (result.code, result.err) == (0, "")
    assert result.out == (f"replayed 2 records of queue '{q}' into queue '{q}': "
                          "skipped 1, unroutable 0, refused 0; next offset 3\n")  # fmt: skip
    assert drain(ch, q) == [b"c", b"a", b"b"]


def test_replay_into_another_queue_from_a_time_with_a_limit(ctl, ch, name) -> None:
    source, target = name("src"), name("dst")
    ch.queue_declare(source)
    ch.queue_declare(target)
    ch.basic_publish("", source, b"before")
    time.sleep(0.05)  # spacing only: the publishes are confirmed, so their times are known
    between = datetime.now(UTC).isoformat(timespec="milliseconds")
    time.sleep(0.05)
    for body in (b"after-1", b"after-2", b"after-3"):
        ch.basic_publish("", source, body)
    settle(ch, source, 4)

    result = ctl("replay", source, "--from-time", between, "--limit", "2", "--to", target, "--json")

    assert result.code == 0, result.err
    counts = json.loads(result.out)
    assert (counts["replayed"], counts["skipped"], counts["first_offset"]) == (2, 0, 1)
    assert counts["next_offset"] == 3
    assert drain(ch, target) == [b"after-1", b"after-2"]
    assert ready(ch, source) == 0


def test_replay_all_up_to_an_offset(ctl, ch, name) -> None:
    source, target = name("src"), name("dst")
    ch.queue_declare(source)
    ch.queue_declare(target)
    for i in range(5):
        ch.basic_publish("", source, b"%d" % i)
    settle(ch, source, 1)

    assert ctl("replay", source, "--from-offset", "0", "--to-offset", "3", "--to", target).code == 0
    assert drain(ch, target) == [b"0"]
    result = ctl("replay", source, "--from-offset", "0", "--to-offset", "3", "--to", target, "--all")
    assert "replayed 3 records" in result.out
    assert drain(ch, target) == [b"0", b"1", b"2"]


def test_replay_to_origin(ctl, ch, name) -> None:
    origin, dlx, work, dlq = name("origin"), name("dlx"), name("work"), name("dlq")
    ch.exchange_declare(origin, "topic")
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": dlx})
    ch.queue_declare(dlq)
    ch.queue_bind(work, origin, "orders.*")
    ch.queue_bind(dlq, dlx)
    ch.basic_publish(origin, "orders.created", b"order-41")
    method, _props, _body = ch.basic_get(work)
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert ready(ch, dlq) == 1
    settle(ch, dlq, 1)

    result = ctl("replay", dlq, "--from-offset", "0", "--to-origin")

    assert result.code == 0, result.err
    assert result.out == (f"replayed 1 records of queue '{dlq}' into each record's origin exchange: "
                          "skipped 0, unroutable 0, refused 0; next offset 1\n")  # fmt: skip
    method, props, body = ch.basic_get(work, auto_ack=True)
    assert (body, method.exchange, method.routing_key) == (b"order-41", origin, "orders.created")
    assert props.headers["x-death"][0]["queue"] == work


def test_replay_in_another_vhost(ctl, ch, mgmt_broker, name) -> None:
    vhost = f"ctl-replay-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
            "Content-Type": "application/json"}  # fmt: skip

    def api(method: str, path: str, body: Any) -> None:
        request = urllib.request.Request(mgmt_broker.management_url + path, method=method,
                                         data=json.dumps(body).encode(), headers=auth)  # fmt: skip
        urllib.request.urlopen(request, timeout=10).close()

    api("PUT", f"/api/vhosts/{quote(vhost, safe='')}", {})
    api("PUT", f"/api/permissions/{quote(vhost, safe='')}/guest",
        {"configure": ".*", "write": ".*", "read": ".*"})  # fmt: skip
    try:
        params = pika.URLParameters(mgmt_broker.url.rstrip("/") + "/" + quote(vhost, safe=""))
        with contextlib.closing(pika.BlockingConnection(params)) as conn:
            vch = conn.channel()
            vch.confirm_delivery()
            q = name()
            vch.queue_declare(q)
            vch.basic_publish("", q, b"m")
            settle(vch, q, 1)
            result = ctl("replay", q, "--vhost", vhost, "--from-offset", "0")
            assert result.out.startswith("replayed 1 records"), result.err
            assert drain(vch, q) == [b"m"]
    finally:
        request = urllib.request.Request(
            f"{mgmt_broker.management_url}/api/vhosts/{quote(vhost, safe='')}", method="DELETE",
            headers=auth,
        )  # fmt: skip
        urllib.request.urlopen(request, timeout=10).close()


def test_replay_errors(ctl, ch, name) -> None:
    q, missing = name(), name("missing")
    ch.queue_declare(q)

    result = ctl("replay", missing, "--from-offset", "0")
    assert (result.code, result.err) == (1, "warrenmq ctl: Object Not Found: Not Found\n")
    result = ctl("replay", q, "--from-offset", "0", "--to", missing)
    assert (result.code, result.err) == (1, f"warrenmq ctl: not_found: no queue '{missing}' in vhost '/'\n")
    result = ctl("replay", q, "--from-time", "yesterday")
    assert result.code == 1
    assert result.err.startswith("warrenmq ctl: bad_request: from_time must be ms since the epoch")


@pytest.mark.parametrize(
    "args",
    [
        (),  # no start
        ("--from-offset", "0", "--from-time", "5"),
        ("--from-offset", "-1"),
        ("--from-offset", "0", "--limit", "0"),
        ("--from-offset", "0", "--to", "x", "--to-origin"),
    ],
)
def test_replay_usage_errors(ctl, args) -> None:
    result = ctl("replay", "q", *args)
    assert result.code == 2
    assert "usage: warrenmq ctl replay" in result.err
