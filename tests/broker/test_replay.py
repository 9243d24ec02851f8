"""Replay and x-retain-settled, end to end: a real broker, pika for AMQP, urllib for the API.

The broker runs with 4 KiB segments, so a few dozen messages span several
segments and the tests can watch whole segments being kept or deleted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from support.broker import BrokerProcess

from warrenmq.logstore.names import escape_name

DEADLINE = 10.0  # seconds a wait may take before the test fails
BODY = b"x" * 200  # 60 of these fill several 4 KiB segments

PROPERTIES = pika.BasicProperties(
    content_type="application/json",
    content_encoding="utf-8",
    headers={"trace": "t-1", "attempt": 3, "nested": {"k": "v"}},
    delivery_mode=2,
    priority=5,
    correlation_id="corr-1",
    reply_to="replies",
    message_id="msg-1",
    timestamp=1_700_000_000,
    type="order.created",
    app_id="shop",
)
COMPARED = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
            "correlation_id", "reply_to", "message_id", "timestamp", "type", "app_id")  # fmt: skip


# ------------------------------------------------------------------ fixtures
def _start(base: Path) -> BrokerProcess:
    data = base / "data"
    data.mkdir(exist_ok=True)
    config = base / "warrenmq.yaml"
    config.write_text("segment_bytes: 4096\n")
    return BrokerProcess(data, "--config", str(config)).start()


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerProcess]:
    base = Path(tempfile.mkdtemp(prefix="warrenmq-replay-"))
    process = _start(base)
    try:
        yield process
    finally:
        try:
            process.stop()
        finally:
            process.kill()
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ch(broker: BrokerProcess) -> Iterator[Any]:
    """A confirming channel: a publish returns once the broker has the message."""
    mark = len(broker.log_lines)
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = conn.channel()
    channel.confirm_delivery()
    yield channel
    with contextlib.suppress(Exception):
        conn.close()
    new = "".join(broker.log_lines[mark:])
    assert "Traceback" not in new, new


@pytest.fixture
def name() -> Any:
    tag = uuid.uuid4().hex[:8]
    return lambda kind="q": f"replay.{kind}.{tag}"


# ------------------------------------------------------------------ helpers
def api(broker: BrokerProcess, method: str, path: str, body: Any = None,
        user: tuple[str, str] = ("guest", "guest")) -> tuple[int, Any]:  # fmt: skip
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(broker.management_url + path, data=data, method=method,
                                     headers={"Authorization": f"Basic {token}",
                                              "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, json.loads(raw) if raw.strip() else None


def replay(broker: BrokerProcess, queue: str, body: Any, vhost: str = "/",
           user: tuple[str, str] = ("guest", "guest")) -> tuple[int, Any]:  # fmt: skip
    path = f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}/replay"
    return api(broker, "POST", path, body, user)


def replayed(broker: BrokerProcess, queue: str, **body: Any) -> dict[str, int]:
    status, counts = replay(broker, queue, body)
    assert status == 200, counts
    return counts


def sync(ch: Any, queue: str) -> int:
    """A round trip on the channel: every ack sent before it has been handled. The ready count."""
    return ch.queue_declare(queue, passive=True).method.message_count


def take(ch: Any, queue: str) -> tuple[Any, Any, bytes]:
    method, props, body = ch.basic_get(queue)
    assert method is not None, f"queue {queue} is empty"
    return method, props, body


def take_acked(ch: Any, queue: str, count: int) -> list[bytes]:
    bodies = []
    for _ in range(count):
        method, _props, body = take(ch, queue)
        ch.basic_ack(method.delivery_tag)
        bodies.append(body)
    sync(ch, queue)
    return bodies


def drain(ch: Any, queue: str) -> list[bytes]:
    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def segment_files(broker: BrokerProcess, queue: str, vhost: str = "/") -> int:
    directory = broker.data_dir / "topics" / escape_name(f"{vhost}\x00{queue}") / "0"
    return len(list(directory.glob("*.log")))


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ------------------------------------------------------------ replaying acked messages
def test_an_acked_message_comes_back_with_its_properties_and_body(broker, ch, name) -> None:
    q = name()
    ch.queue_declare(q)
    ch.basic_publish("", q, b'{"id": 41}', PROPERTIES)
    assert take_acked(ch, q, 1) == [b'{"id": 41}']
    assert sync(ch, q) == 0

    counts = replayed(broker, q, from_offset=0)

    assert counts == {"replayed": 1, "skipped": 0, "unroutable": 0, "refused": 0,
                      "first_offset": 0, "next_offset": 1}  # fmt: skip
    method, props, body = take(ch, q)
    assert body == b'{"id": 41}'
    assert not method.redelivered
    assert (method.exchange, method.routing_key) == ("", q)  # as first published
    for field in COMPARED:
        assert getattr(props, field) == getattr(PROPERTIES, field), field


def test_replay_into_another_queue_leaves_the_source_alone(broker, ch, name) -> None:
    source, target = name("src"), name("dst")
    ch.queue_declare(source)
    ch.queue_declare(target)
    ch.basic_publish("", source, b"one", PROPERTIES)
    ch.basic_publish("", source, b"two", pika.BasicProperties(delivery_mode=1))
    take_acked(ch, source, 2)

    counts = replayed(broker, source, from_offset=0, to_queue=target)

    assert counts["replayed"] == 2
    assert sync(ch, source) == 0
    _method, props, body = take(ch, target)
    assert body == b"one"
    for field in COMPARED:
        assert getattr(props, field) == getattr(PROPERTIES, field), field
    _method, props, body = take(ch, target)
    assert (body, props.delivery_mode) == (b"two", 1)


def test_from_time_selects_messages_published_after_it(broker, ch, name) -> None:
    source, first, second = name("src"), name("iso"), name("ms")
    for q in (source, first, second):
        ch.queue_declare(q)
    for body in (b"a", b"b"):
        ch.basic_publish("", source, body)
    time.sleep(0.05)  # spacing only: the publishes are confirmed, so their times are known
    between = now_ms()
    time.sleep(0.05)
    for body in (b"c", b"d"):
        ch.basic_publish("", source, body)
    take_acked(ch, source, 4)

    iso = datetime.fromtimestamp(between / 1000, UTC).isoformat(timespec="milliseconds")
    assert replayed(broker, source, from_time=iso, to_queue=first)["replayed"] == 2
    assert replayed(broker, source, from_time=between, to_queue=second)["replayed"] == 2
    assert drain(ch, first) == [b"c", b"d"]
    assert drain(ch, second) == [b"c", b"d"]
    assert replayed(broker, source, from_time=now_ms() + 60_000)["replayed"] == 0


def test_to_offset_and_limit_bound_the_range(broker, ch, name) -> None:
    source, target = name("src"), name("dst")
    ch.queue_declare(source)
    ch.queue_declare(target)
    for i in range(6):
        ch.basic_publish("", source, b"%d" % i)
    take_acked(ch, source, 6)

    counts = replayed(broker, source, from_offset=1, to_offset=4, to_queue=target)
    assert (counts["replayed"], counts["next_offset"]) == (3, 4)
    assert drain(ch, target) == [b"1", b"2", b"3"]
    counts = replayed(broker, source, from_offset=2, limit=2, to_queue=target)
    assert (counts["replayed"], counts["next_offset"]) == (2, 4)
    assert drain(ch, target) == [b"2", b"3"]


def test_unsettled_messages_are_not_duplicated_unless_all(broker, ch, name) -> None:
    source, settled, everything = name("src"), name("settled"), name("all")
    for q in (source, settled, everything):
        ch.queue_declare(q)
    for body in (b"acked", b"unacked", b"requeued", b"ready"):
        ch.basic_publish("", source, body)
    take_acked(ch, source, 1)
    _unacked = take(ch, source)  # stays unacknowledged
    method, _props, _body = take(ch, source)
    ch.basic_reject(method.delivery_tag, requeue=True)  # back in the queue, outstanding
    assert sync(ch, source) == 2

    counts = replayed(broker, source, from_offset=0, to_queue=settled)
    assert (counts["replayed"], counts["skipped"]) == (1, 3)
    assert drain(ch, settled) == [b"acked"]

    counts = replayed(broker, source, from_offset=0)  # into itself: only the settled one again
    assert (counts["replayed"], counts["skipped"]) == (1, 3)
    assert sync(ch, source) == 3

    counts = replayed(broker, source, from_offset=0, to_offset=4, to_queue=everything, all=True)
    assert (counts["replayed"], counts["skipped"]) == (4, 0)
    assert drain(ch, everything) == [b"acked", b"unacked", b"requeued", b"ready"]


# ------------------------------------------------------------ dead letters back to their origin
def test_dead_lettered_messages_go_back_to_their_origin(broker, ch, name) -> None:
    origin, gone, dlx = name("origin"), name("gone"), name("dlx")
    work, dlq, late = name("work"), name("dlq"), name("late")
    ch.exchange_declare(origin, "direct")
    ch.exchange_declare(gone, "direct")
    ch.exchange_declare(dlx, "direct")
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": dlx,
                                      "x-dead-letter-routing-key": "dead"})  # fmt: skip
    ch.queue_declare(dlq)
    ch.queue_bind(work, origin, "job")
    ch.queue_bind(work, gone, "job")
    ch.queue_bind(dlq, dlx, "dead")
    headers = {"trace": "t-7"}
    ch.basic_publish(origin, "job", b"payload", pika.BasicProperties(headers=headers, delivery_mode=2))
    ch.basic_publish(gone, "job", b"orphan", pika.BasicProperties(headers=headers))
    for _ in range(2):
        method, _props, _body = take(ch, work)
        ch.basic_reject(method.delivery_tag, requeue=False)
    ch.basic_publish("", dlq, b"never-died")
    assert sync(ch, dlq) == 3
    dead = take_acked(ch, dlq, 3)
    assert dead == [b"payload", b"orphan", b"never-died"]
    ch.exchange_delete(gone)
    ch.queue_declare(late)
    ch.queue_bind(late, origin, "job")  # bound after the message died: it gets the replay too

    counts = replayed(broker, dlq, from_offset=0, to_origin=True)

    assert (counts["replayed"], counts["skipped"], counts["unroutable"]) == (1, 1, 1)
    assert sync(ch, dlq) == 0
    tags = {}
    for q in (work, late):
        method, props, body = take(ch, q)
        tags[q] = method.delivery_tag
        assert body == b"payload"
        assert (method.exchange, method.routing_key) == (origin, "job")
        assert props.headers["trace"] == "t-7"
        (death,) = props.headers["x-death"]
        assert (death["queue"], death["reason"], death["exchange"]) == (work, "rejected", origin)
        assert death["routing-keys"] == ["job"]
        assert props.delivery_mode == 2
    assert sync(ch, work) == 0 and sync(ch, late) == 0

    # Dead-lettered again, its history counts up as RabbitMQ's does.
    ch.basic_ack(tags[late])
    ch.basic_reject(tags[work], requeue=False)
    _method, props, body = take(ch, dlq)
    assert body == b"payload"
    assert props.headers["x-death"][0]["count"] == 2


# ------------------------------------------------------------ x-retain-settled
def _fill_and_settle(ch: Any, queue: str, count: int = 60) -> None:
    for _ in range(count):
        ch.basic_publish("", queue, BODY, pika.BasicProperties(delivery_mode=2))
    for _ in range(count):
        method, _props, _body = take(ch, queue)
        ch.basic_ack(method.delivery_tag)
    assert sync(ch, queue) == 0


def test_settled_segments_stay_while_retained(broker, ch, name) -> None:
    kept, plain, target = name("kept"), name("plain"), name("dst")
    ch.queue_declare(kept, arguments={"x-retain-settled": 3_600_000})
    ch.queue_declare(plain)
    ch.queue_declare(target)
    _fill_and_settle(ch, kept)
    _fill_and_settle(ch, plain)

    wait_for(lambda: segment_files(broker, plain) == 1, "the settled segments to be deleted")
    assert segment_files(broker, kept) > 2
    assert replayed(broker, kept, from_offset=0, to_queue=target)["replayed"] == 60
    assert len(drain(ch, target)) == 60
    counts = replayed(broker, plain, from_offset=0, to_queue=target)
    assert counts["first_offset"] > 0 and counts["replayed"] < 60  # only the active segment is left
    drain(ch, target)


def test_retained_segments_go_once_older_than_the_retention(broker, ch, name) -> None:
    q = name()
    ch.queue_declare(q, arguments={"x-retain-settled": 300})
    _fill_and_settle(ch, q)
    # Nothing happens in the queue from here on: the queue's own timer deletes them.
    wait_for(lambda: segment_files(broker, q) == 1, "the retained segments to be deleted")


def test_unsettled_segments_stay_whatever_the_retention(broker, ch, name) -> None:
    q = name()
    ch.queue_declare(q, arguments={"x-retain-settled": 0})
    for _ in range(60):
        ch.basic_publish("", q, BODY)
    held = take(ch, q)  # the first message stays unacked: nothing after it may go
    assert held[2] == BODY
    take_acked(ch, q, 59)
    assert segment_files(broker, q) > 2
    ch.basic_ack(held[0].delivery_tag)
    wait_for(lambda: segment_files(broker, q) == 1, "the segments to go once all are settled")


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("soon", '"expected integer, got longstr"'),
        (-1, "{value_negative,-1}"),
        (True, '"expected integer, got bool"'),
        (315_360_000_001, "{value_too_large,315360000001}"),
    ],
)
def test_x_retain_settled_is_validated(broker, ch, name, value, detail) -> None:
    q = name()
    with pytest.raises(ChannelClosedByBroker) as raised:
        ch.queue_declare(q, arguments={"x-retain-settled": value})
    assert raised.value.reply_code == 406
    assert raised.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-retain-settled' for queue '{q}' in vhost '/': {detail}"
    )


def test_x_retain_settled_must_match_on_redeclare(broker, ch, name) -> None:
    q = name()
    ch.queue_declare(q, arguments={"x-retain-settled": 1000})
    ch.queue_declare(q, arguments={"x-retain-settled": 1000})
    with pytest.raises(ChannelClosedByBroker) as raised:
        ch.queue_declare(q, arguments={"x-retain-settled": 2000})
    assert raised.value.reply_code == 406
    assert "inequivalent arg 'x-retain-settled'" in raised.value.reply_text


@pytest.mark.restarts
def test_retention_and_replays_survive_a_restart(tmp_path: Path) -> None:
    process = _start(tmp_path)
    try:
        conn = pika.BlockingConnection(pika.URLParameters(process.url))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("kept", durable=True, arguments={"x-retain-settled": 3_600_000})
        ch.queue_declare("brief", durable=True, arguments={"x-retain-settled": 300})
        ch.queue_declare("copies", durable=True)
        _fill_and_settle(ch, "kept")
        _fill_and_settle(ch, "brief")
        conn.close()
        assert process.stop() == 0
        process.start()

        # Idle since the start, the briefly retained queue still loses its old segments.
        wait_for(lambda: segment_files(process, "brief") == 1, "the old segments to go")
        conn = pika.BlockingConnection(pika.URLParameters(process.url))
        ch = conn.channel()
        ch.confirm_delivery()
        _fill_and_settle(ch, "kept", 1)  # a settlement: the queue looks at its segments again
        assert segment_files(process, "kept") > 2
        assert replayed(process, "kept", from_offset=0, to_queue="copies")["replayed"] == 61
        conn.close()
        process.kill()  # the replay answered: its copies are on disk
        process.start()
        conn = pika.BlockingConnection(pika.URLParameters(process.url))
        assert conn.channel().queue_declare("copies", passive=True).method.message_count == 61
        conn.close()
        assert "Traceback" not in process.log_text(), process.log_text()
    finally:
        process.kill()


# ------------------------------------------------------------------ API errors
def test_replay_of_a_missing_queue_is_404(broker, name) -> None:
    assert replay(broker, name("missing"), {"from_offset": 0}) == (
        404, {"error": "Object Not Found", "reason": "Not Found"})  # fmt: skip
    assert replay(broker, "q", {"from_offset": 0}, vhost="no-such-vhost")[0] == 404


def test_replay_into_a_missing_queue_is_404(broker, ch, name) -> None:
    q, missing = name(), name("missing")
    ch.queue_declare(q)
    assert replay(broker, q, {"from_offset": 0, "to_queue": missing}) == (
        404, {"error": "not_found", "reason": f"no queue '{missing}' in vhost '/'"})  # fmt: skip


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "a replay needs from_offset or from_time"),
        ({"from_offset": 0, "from_time": 5}, "give either from_offset or from_time"),
        ({"from_offset": -1}, "from_offset must be a non-negative integer, not -1"),
        ({"from_offset": "ten"}, "from_offset must be a non-negative integer, not 'ten'"),
        ({"from_offset": 0, "to_offset": True}, "to_offset must be a non-negative integer, not True"),
        ({"from_offset": 0, "limit": 0}, "limit must be a positive integer"),
        ({"from_time": "yesterday"},
         "from_time must be ms since the epoch or ISO 8601 (2026-11-21T10:00:00Z), not 'yesterday'"),
        ({"from_offset": 0, "to_queue": 7}, "to_queue must be a queue name (a string)"),
        ({"from_offset": 0, "to_queue": "x", "to_origin": True}, "give either to_queue or to_origin"),
        ({"from_offset": 0, "all": "maybe"}, ["not_boolean", "maybe"]),
        ({"from_offset": 0, "to_queu": "x"},
         "unknown field 'to_queu'; a replay takes from_offset, from_time, to_offset, limit, "
         "to_queue, to_origin, all"),
    ],
)  # fmt: skip
def test_a_bad_body_is_400(broker, ch, name, body, reason) -> None:
    q = name()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"m")
    take_acked(ch, q, 1)
    assert replay(broker, q, body) == (400, {"error": "bad_request", "reason": reason})
    assert sync(ch, q) == 0  # nothing was replayed


def test_a_body_that_is_not_json_is_400(broker, ch, name) -> None:
    q = name()
    ch.queue_declare(q)
    assert replay(broker, q, b"{from_offset") == (400, {"error": "bad_request", "reason": "not_json"})


def test_permissions_read_on_the_source_and_write_on_the_target(broker, ch, name) -> None:
    source, target, other = name("src"), name("dst"), name("other")
    for q in (source, target, other):
        ch.queue_declare(q)
    ch.basic_publish("", source, b"m")
    take_acked(ch, source, 1)
    user = f"replayer-{uuid.uuid4().hex[:6]}"
    assert api(broker, "PUT", f"/api/users/{user}", {"password": "pw", "tags": "management"})[0] == 201
    perms = {"configure": "", "write": f"^{target}$", "read": f"^{source}$"}
    assert api(broker, "PUT", f"/api/permissions/%2F/{user}", perms)[0] == 201
    refused = (401, {"error": "not_authorised", "reason": "Access refused."})
    try:
        creds = (user, "pw")
        assert replay(broker, source, {"from_offset": 0, "to_queue": other}, user=creds) == refused
        assert replay(broker, source, {"from_offset": 0}, user=creds) == refused  # no write on it
        assert replay(broker, target, {"from_offset": 0, "to_queue": target}, user=creds) == refused
        assert sync(ch, other) == 0 and sync(ch, source) == 0 and sync(ch, target) == 0
        status, counts = replay(broker, source, {"from_offset": 0, "to_queue": target}, user=creds)
        assert (status, counts["replayed"]) == (200, 1)
        assert drain(ch, target) == [b"m"]
    finally:
        api(broker, "DELETE", f"/api/users/{user}")


def test_to_origin_needs_write_on_every_origin_exchange(broker, ch, name) -> None:
    origin, dlx, work, dlq = name("origin"), name("dlx"), name("work"), name("dlq")
    ch.exchange_declare(origin, "fanout")
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": dlx})
    ch.queue_declare(dlq)
    ch.queue_bind(work, origin)
    ch.queue_bind(dlq, dlx)
    ch.basic_publish(origin, "", b"m")
    method, _props, _body = take(ch, work)
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert sync(ch, dlq) == 1
    take_acked(ch, dlq, 1)
    user = f"replayer-{uuid.uuid4().hex[:6]}"
    api(broker, "PUT", f"/api/users/{user}", {"password": "pw", "tags": "management"})
    api(broker, "PUT", f"/api/permissions/%2F/{user}",
        {"configure": "", "write": f"^{dlq}$", "read": f"^{dlq}$"})  # fmt: skip
    try:
        status, _ = replay(broker, dlq, {"from_offset": 0, "to_origin": True}, user=(user, "pw"))
        assert status == 401
        assert sync(ch, work) == 0
        api(broker, "PUT", f"/api/permissions/%2F/{user}",
            {"configure": "", "write": f"^{origin}$", "read": f"^{dlq}$"})  # fmt: skip
        status, counts = replay(broker, dlq, {"from_offset": 0, "to_origin": True}, user=(user, "pw"))
        assert (status, counts["replayed"]) == (200, 1)
        assert sync(ch, work) == 1
    finally:
        api(broker, "DELETE", f"/api/users/{user}")
