"""`warrenmq ctl` end to end: real broker, real TCP, the commands an operator types.

Queues, exchanges, connections and consumers are set up with pika; ctl runs
in-process through `warrenmq.broker.cli.main` (and as a subprocess where the
process boundary matters: exit status, stdin, environment) and its output is
parsed as a reader would.

The same tests run against a RabbitMQ node with the management plugin, to
show that ctl speaks RabbitMQ's API:

    WARRENMQ_REFERENCE_MANAGEMENT_URL=http://127.0.0.1:15673 \\
    WARRENMQ_REFERENCE_URL=amqp://guest:guest@127.0.0.1:5673/ \\
        .venv/bin/pytest tests/management/test_ctl.py

RabbitMQ refreshes its statistics (counts, channels) every few seconds, so
what ctl lists is polled until it shows the expected state.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from warrenmq.broker.cli import main

REFERENCE_MANAGEMENT_URL = os.environ.get("WARRENMQ_REFERENCE_MANAGEMENT_URL")
REFERENCE_URL = os.environ.get("WARRENMQ_REFERENCE_URL")
DEADLINE = 30.0  # seconds a wait may take; RabbitMQ's statistics lag by up to 5
DEFAULT_EXCHANGE = "(AMQP default)"


@dataclass(frozen=True)
class Target:
    amqp_url: str
    management_url: str

    def connection(self, name: str | None = None) -> pika.BlockingConnection:
        params = pika.URLParameters(self.amqp_url)
        params.connection_attempts = 1
        if name is not None:
            params.client_properties = {"connection_name": name}
        return pika.BlockingConnection(params)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A direct API call, for setting up what ctl has no command for (vhosts)."""
        request = urllib.request.Request(
            self.management_url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                     "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if REFERENCE_MANAGEMENT_URL and REFERENCE_URL:
        yield Target(REFERENCE_URL, REFERENCE_MANAGEMENT_URL.rstrip("/"))
        return
    broker = request.getfixturevalue("mgmt_broker")
    yield Target(broker.url, broker.management_url)
    assert "Traceback" not in broker.log_text(), broker.log_text()[-3000:]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def ctl(target: Target, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """ctl(*args) -> Result: `warrenmq ctl --url <target> *args`, run in this process."""

    def ctl(*args: str, url: str | None = None) -> Result:
        capsys.readouterr()
        try:
            code = main(["ctl", "--url", url or target.management_url, *args])
        except SystemExit as exc:  # argparse
            code = exc.code
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return ctl


def ctl_process(*args: str, env: dict[str, str] | None = None,
                stdin: bytes | None = None) -> Result:  # fmt: skip
    """`python -m warrenmq.broker.cli ctl *args` in a subprocess."""
    done = subprocess.run(
        [sys.executable, "-m", "warrenmq.broker.cli", "ctl", *args],
        input=stdin, capture_output=True, timeout=DEADLINE, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


class Entities:
    """Unique names for one test, and pika to declare them; all deleted afterwards."""

    def __init__(self, target: Target, test_name: str) -> None:
        self.target = target
        self.base = f"ctl.{re.sub(r'[^A-Za-z0-9]+', '-', test_name)[:40]}.{uuid.uuid4().hex[:8]}"
        self.connections: list[pika.BlockingConnection] = []
        self.queues: list[str] = []
        self.exchanges: list[str] = []
        self.channel = self.connect().channel()
        self.channel.confirm_delivery()  # a publish returns once the queue holds the message

    def name(self, kind: str) -> str:
        return f"{self.base}.{kind}"

    def connect(self, name: str | None = None) -> pika.BlockingConnection:
        connection = self.target.connection(name)
        self.connections.append(connection)
        return connection

    def queue(self, kind: str = "q", durable: bool = False) -> str:
        name = self.name(kind)
        self.channel.queue_declare(name, durable=durable)
        self.queues.append(name)
        return name

    def exchange(self, exchange_type: str, kind: str = "x", durable: bool = False) -> str:
        name = self.name(kind)
        self.channel.exchange_declare(name, exchange_type, durable=durable)
        self.exchanges.append(name)
        return name

    def publish(self, queue: str, *bodies: bytes, **properties: Any) -> None:
        for body in bodies:
            self.channel.basic_publish("", queue, body, pika.BasicProperties(**properties))

    def message_count(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).method.message_count

    def close(self) -> None:
        for connection in self.connections:
            with contextlib.suppress(Exception):  # closed by the broker meanwhile
                connection.close()
        with contextlib.closing(self.target.connection()) as connection:
            channel = connection.channel()
            for delete, names in ((channel.queue_delete, self.queues),
                                  (channel.exchange_delete, self.exchanges)):  # fmt: skip
                for name in names:
                    try:
                        delete(name)
                    except ChannelClosedByBroker:  # already deleted by the test
                        channel = connection.channel()


@pytest.fixture
def entities(target: Target, request: pytest.FixtureRequest) -> Iterator[Entities]:
    made = Entities(target, request.node.name)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def vhost(target: Target) -> Iterator[str]:
    """A fresh vhost guest may use, deleted afterwards."""
    name = f"ctl-vhost-{uuid.uuid4().hex[:8]}"
    target.api("PUT", f"/api/vhosts/{quote(name, safe='')}", {})
    try:
        target.api("PUT", f"/api/permissions/{quote(name, safe='')}/guest",
                   {"configure": ".*", "write": ".*", "read": ".*"})  # fmt: skip
        yield name
    finally:
        target.api("DELETE", f"/api/vhosts/{quote(name, safe='')}")


# ------------------------------------------------------------------ reading ctl's output
def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of an aligned table as dicts, cut at the header's column starts
    (cells may hold spaces: connection names do)."""
    lines = text.rstrip("\n").split("\n")
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    bounds = list(zip(starts, starts[1:] + [None], strict=True))
    return [
        {name: line[start:end].strip() for name, (start, end) in zip(names, bounds, strict=True)}
        for line in lines[1:]
    ]


def table(result: Result) -> list[dict[str, str]]:
    assert result.code == 0, result.err
    return parse_table(result.out)


def parse_messages(result: Result) -> list[dict[str, str]]:
    """The blocks `get` prints: "message N" then indented "field: value" lines."""
    assert result.code == 0, result.err
    messages: list[dict[str, str]] = []
    for line in result.out.splitlines():
        if re.fullmatch(r"message \d+", line):
            messages.append({})
        elif line.startswith("  ") and messages:
            field, _, value = line.strip().partition(":")
            messages[-1][field] = value.strip()
    return messages


def wait_for_row(ctl: Callable[..., Result], args: list[str], match: dict[str, str],
                 expected: dict[str, str]) -> dict[str, str]:  # fmt: skip
    """Run `ctl *args` until the row matching `match` shows `expected`; that row."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = ctl(*args)
        assert result.code == 0, result.err
        rows = [row for row in parse_table(result.out)
                if all(row.get(k) == v for k, v in match.items())]  # fmt: skip
        if len(rows) == 1 and all(rows[0].get(k) == v for k, v in expected.items()):
            return rows[0]
        if time.monotonic() > deadline:
            pytest.fail(f"no single row {match} with {expected} in:\n{result.out}")
        time.sleep(0.2)


# ------------------------------------------------------------------ list
def test_list_queues_shows_counts_and_consumers(ctl: Callable[..., Result],
                                                entities: Entities) -> None:  # fmt: skip
    idle = entities.queue("idle", durable=True)
    busy = entities.queue("busy")
    entities.publish(idle, b"1", b"2", b"3")
    entities.publish(busy, b"a", b"b")
    consumer = entities.connect().channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(busy, lambda *_: None)  # never acks: one unacked, one ready

    wait_for_row(ctl, ["list", "queues"], {"name": idle}, {
        "vhost": "/", "durable": "true", "auto_delete": "false", "messages_ready": "3",
        "messages_unacknowledged": "0", "messages": "3", "consumers": "0",
    })  # fmt: skip
    wait_for_row(ctl, ["list", "queues"], {"name": busy}, {
        "durable": "false", "messages_ready": "1", "messages_unacknowledged": "1",
        "messages": "2", "consumers": "1",
    })  # fmt: skip
    everywhere = table(ctl("list", "queues", "--all-vhosts"))
    assert {idle, busy} <= {row["name"] for row in everywhere}


def test_list_exchanges_and_bindings(ctl: Callable[..., Result], entities: Entities) -> None:
    exchange = entities.exchange("topic", durable=True)
    queue = entities.queue()
    entities.channel.queue_bind(queue, exchange, "orders.*")

    exchanges = table(ctl("list", "exchanges"))
    mine = [row for row in exchanges if row["name"] == exchange]
    assert mine == [{"vhost": "/", "name": exchange, "type": "topic", "durable": "true",
                     "auto_delete": "false", "internal": "false", "arguments": "{}"}]  # fmt: skip
    assert any(row["name"] == DEFAULT_EXCHANGE and row["type"] == "direct" for row in exchanges)

    bindings = [row for row in table(ctl("list", "bindings"))
                if row["destination"] == queue]  # fmt: skip
    assert sorted((row["source"], row["routing_key"]) for row in bindings) == [
        (DEFAULT_EXCHANGE, queue), (exchange, "orders.*"),
    ]  # fmt: skip
    assert {row["destination_type"] for row in bindings} == {"queue"}


def test_list_connections_channels_and_consumers(ctl: Callable[..., Result],
                                                 entities: Entities) -> None:  # fmt: skip
    queue = entities.queue()
    client_name = entities.name("client")
    channel = entities.connect(client_name).channel()
    channel.basic_qos(prefetch_count=7)
    tag = channel.basic_consume(queue, lambda *_: None, consumer_tag=entities.name("tag"))

    connection = wait_for_row(ctl, ["list", "connections"], {"user_provided_name": client_name},
                              {"user": "guest", "vhost": "/", "channels": "1"})  # fmt: skip
    channel_name = f"{connection['name']} (1)"  # RabbitMQ names a channel by its connection
    wait_for_row(ctl, ["list", "channels"], {"name": channel_name},
                 {"user": "guest", "vhost": "/", "number": "1", "consumer_count": "1",
                  "prefetch_count": "7"})  # fmt: skip
    consumers = [row for row in table(ctl("list", "consumers"))
                 if row["consumer_tag"] == tag]  # fmt: skip
    assert consumers == [{"vhost": "/", "queue": queue, "consumer_tag": tag,
                          "ack_required": "true", "exclusive": "false", "prefetch_count": "7",
                          "active": "true", "channel": channel_name}]  # fmt: skip


def test_list_vhosts_and_users(ctl: Callable[..., Result]) -> None:
    vhosts = table(ctl("list", "vhosts"))
    assert "/" in {row["name"] for row in vhosts}
    users = {row["name"]: row["tags"] for row in table(ctl("list", "users"))}
    assert "administrator" in users["guest"].split(",")


def test_lists_are_scoped_to_the_vhost(ctl: Callable[..., Result], target: Target,
                                       entities: Entities, vhost: str) -> None:  # fmt: skip
    in_root = entities.queue()
    name = f"ctl-scoped-{uuid.uuid4().hex[:8]}"
    params = pika.URLParameters(target.amqp_url)
    params.virtual_host = vhost
    with contextlib.closing(pika.BlockingConnection(params)) as connection:
        connection.channel().queue_declare(name)
        empty = ctl("--vhost", vhost, "list", "consumers")
        assert (empty.code, parse_table(empty.out)) == (0, [])
        assert empty.out.split() == ["vhost", "queue", "consumer_tag", "ack_required",
                                     "exclusive", "prefetch_count", "active", "channel"]  # fmt: skip

        in_vhost = table(ctl("list", "queues", "--vhost", vhost))
        in_default = table(ctl("list", "queues"))
        everywhere = table(ctl("list", "queues", "--all-vhosts"))
    assert [(row["vhost"], row["name"]) for row in in_vhost] == [(vhost, name)]
    assert ("/", in_root) in {(row["vhost"], row["name"]) for row in in_default}
    assert name not in {row["name"] for row in in_default}
    assert {(vhost, name), ("/", in_root)} <= {(row["vhost"], row["name"]) for row in everywhere}


def test_json_prints_the_api_answer(ctl: Callable[..., Result], entities: Entities) -> None:
    queue = entities.queue(durable=True)
    before = ctl("--json", "list", "queues")
    after = ctl("list", "queues", "--json")  # common options go on either side of the command
    for result in (before, after):
        assert result.code == 0, result.err
        mine = [item for item in json.loads(result.out) if item["name"] == queue]
        assert len(mine) == 1
        assert (mine[0]["vhost"], mine[0]["durable"]) == ("/", True)
    routed = ctl("--json", "publish", "--routing-key", queue, "x")
    assert json.loads(routed.out) == {"routed": True}


# ------------------------------------------------------------------ changing things
def test_purge_empties_a_queue(target: Target, entities: Entities) -> None:
    queue = entities.queue()
    entities.publish(queue, b"1", b"2", b"3")
    assert entities.message_count(queue) == 3
    env = {"WARRENMQ_MANAGEMENT_URL": target.management_url,
           "WARRENMQ_USER": "guest", "WARRENMQ_PASSWORD": "guest"}  # fmt: skip
    result = ctl_process("purge", queue, env=env)
    assert (result.code, result.err) == (0, "")
    assert queue in result.out
    assert entities.message_count(queue) == 0


def test_delete_queue_and_exchange(ctl: Callable[..., Result], entities: Entities) -> None:
    queue = entities.queue()
    exchange = entities.exchange("fanout")
    entities.publish(queue, b"keep me")

    refused = ctl("delete", "queue", queue, "--if-empty")
    assert refused.code == 1 and refused.err.startswith("warrenmq ctl: "), refused
    assert entities.message_count(queue) == 1

    assert ctl("delete", "queue", queue).code == 0
    assert ctl("delete", "exchange", exchange).code == 0
    with pytest.raises(ChannelClosedByBroker) as gone:
        entities.channel.queue_declare(queue, passive=True)
    assert gone.value.reply_code == 404
    channel = entities.connect().channel()
    with pytest.raises(ChannelClosedByBroker) as gone:
        channel.exchange_declare(exchange, passive=True)
    assert gone.value.reply_code == 404


def test_close_connection_reaches_the_client(ctl: Callable[..., Result],
                                             entities: Entities) -> None:  # fmt: skip
    client_name = entities.name("client")
    victim = entities.connect(client_name)
    row = wait_for_row(ctl, ["list", "connections"], {"user_provided_name": client_name}, {})

    result = ctl("close", "connection", row["name"], "--reason", "maintenance window")
    assert result.code == 0, result.err
    deadline = time.monotonic() + DEADLINE
    with pytest.raises(ConnectionClosedByBroker) as closed:
        while time.monotonic() < deadline:
            victim.process_data_events(time_limit=0.1)
    assert closed.value.reply_code == 320
    assert "maintenance window" in closed.value.reply_text


def test_publish_routes_with_properties(target: Target, entities: Entities) -> None:
    exchange = entities.exchange("direct")
    queue = entities.queue()
    entities.channel.queue_bind(queue, exchange, "invoices")
    body = "total: 12 €\n".encode()

    result = ctl_process(
        "--url", target.management_url, "publish", "--exchange", exchange,
        "--routing-key", "invoices", "--property", "content_type=text/plain",
        "--property", "delivery_mode=2", "--property", "message_id=m-1",
        "--property", "priority=3", "--header", "region=eu", "-", stdin=body,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "routed" in result.out and "NOT routed" not in result.out

    method, properties, received = entities.channel.basic_get(queue, auto_ack=True)
    assert received == body
    assert (method.exchange, method.routing_key) == (exchange, "invoices")
    assert (properties.content_type, properties.delivery_mode) == ("text/plain", 2)
    assert (properties.message_id, properties.priority) == ("m-1", 3)
    assert properties.headers == {"region": "eu"}

    lost = ctl_process("--url", target.management_url, "publish", "-e", exchange, "-k", "nope")
    assert lost.code == 0 and "NOT routed" in lost.out, lost


def test_get_shows_messages_and_honours_ackmode(ctl: Callable[..., Result],
                                                entities: Entities) -> None:  # fmt: skip
    queue = entities.queue()
    entities.publish(queue, b"first", b"second", content_type="text/plain", message_id="id-1")

    peeked = ctl("get", queue, "--count", "5")  # default ackmode requeues
    assert peeked.code == 0, peeked.err
    messages = parse_messages(peeked)
    assert [m["payload"] for m in messages] == ["first", "second"]
    assert {m["routing_key"] for m in messages} == {queue}
    assert {m["exchange"] for m in messages} == {DEFAULT_EXCHANGE}
    assert {m["redelivered"] for m in messages} == {"false"}
    assert json.loads(messages[0]["properties"]) == {"content_type": "text/plain",
                                                     "message_id": "id-1"}  # fmt: skip
    assert entities.message_count(queue) == 2

    taken = parse_messages(ctl("get", queue, "--ackmode", "ack_requeue_false"))
    assert [(m["payload"], m["redelivered"]) for m in taken] == [("first", "true")]
    assert entities.message_count(queue) == 1

    rejected = parse_messages(ctl("get", queue, "--ackmode", "reject_requeue_false"))
    assert [m["payload"] for m in rejected] == ["second"]
    assert entities.message_count(queue) == 0
    assert "no messages" in ctl("get", queue).out


def test_get_shows_binary_payloads_as_base64(ctl: Callable[..., Result],
                                             entities: Entities) -> None:  # fmt: skip
    queue = entities.queue()
    entities.publish(queue, b"\xff\x00binary", b"text")
    auto = parse_messages(ctl("get", queue, "--count", "2"))
    assert [(m["payload_encoding"], m["payload"]) for m in auto] == [
        ("base64", base64.b64encode(b"\xff\x00binary").decode()), ("string", "text"),
    ]  # fmt: skip
    forced = parse_messages(ctl("get", queue, "--count", "2", "--encoding", "base64"))
    assert [base64.b64decode(m["payload"]) for m in forced] == [b"\xff\x00binary", b"text"]


# ------------------------------------------------------------------ errors
def test_missing_queue_is_an_api_error(ctl: Callable[..., Result], entities: Entities) -> None:
    missing = entities.name("missing")
    for args in (["purge", missing], ["delete", "queue", missing]):
        result = ctl(*args)
        assert (result.code, result.out) == (1, ""), args
        assert result.err == "warrenmq ctl: Object Not Found: Not Found\n", args
    # RabbitMQ answers a get from a missing queue with the AMQP error instead.
    result = ctl("get", missing)
    assert (result.code, result.out) == (1, "")
    assert result.err == f"warrenmq ctl: not_found: NOT_FOUND - no queue '{missing}' in vhost '/'\n"


def test_wrong_password_is_reported(target: Target) -> None:
    result = ctl_process("--url", target.management_url, "-p", "not-the-password",
                         "list", "queues")  # fmt: skip
    assert (result.code, result.out) == (1, "")
    assert result.err == "warrenmq ctl: not_authorized: Login failed\n"


def test_nothing_listening_names_the_url(ctl: Callable[..., Result]) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = ctl("list", "queues", url=url)
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(f"warrenmq ctl: cannot reach the management API at {url}: ")
    assert "connection refused" in result.err


@pytest.mark.parametrize("args", [
    ["list", "nonsense"],
    ["publish", "--property", "colour=red"],
    ["publish", "--property", "delivery_mode=persistent"],
    ["get", "q", "--count", "0"],
    ["get", "q", "--ackmode", "maybe"],
    ["delete", "binding", "x"],
    ["close", "connection"],
])  # fmt: skip
def test_bad_usage_exits_2(ctl: Callable[..., Result], args: list[str]) -> None:
    result = ctl(*args, url="http://127.0.0.1:9")  # never contacted
    assert result.code == 2
    assert "usage:" in result.err
