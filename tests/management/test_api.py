"""The management HTTP API end to end: RabbitMQ 3.10's recorded answers, and what each write does.

`record_rabbitmq_shapes.py` built a scene in a real RabbitMQ 3.10 and wrote
what every path answered into `rabbitmq_3_10_shapes.json`. Here the same
scene is built in warrenmq (through its own API and AMQP) and the same
requests are made, in the same order. Then:

- every recorded JSON key is served, with the recorded JSON type, except
  the keys in NOT_SERVED (Erlang VM and classic-queue internals);
- every error case answers with the recorded status and body, except the
  cases in DELIBERATE_DIFFERENCES;
- every write answers with the recorded status;
- every (tag, method, path) answers with the recorded status, error body and
  visible vhosts: that file is the table of what each user tag may do.

The rest checks what a user observes after each write, over AMQP.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker
from support.broker import BrokerProcess

from warrenmq.broker.management.stats import Sampler

HERE = Path(__file__).parent
RECORDED = json.loads((HERE / "rabbitmq_3_10_shapes.json").read_text())


def _load_recorder() -> Any:
    spec = importlib.util.spec_from_file_location("record_rabbitmq_shapes", HERE / "record_rabbitmq_shapes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


recorder = _load_recorder()
Api = recorder.Api

# Keys RabbitMQ serves that we do not, and why. Each describes the Erlang VM or
# the storage of RabbitMQ's classic queues, which have no counterpart here.
NOT_SERVED = {
    "garbage_collection": "garbage-collector settings of an Erlang process",
    "reductions": "work done by an Erlang process, in Erlang scheduler reductions",
    "reductions_details": "the rate of the above",
    "memory": "heap size of a queue's Erlang process",
    "erlang_version": "the Erlang/OTP release the node runs on",
    "erlang_full_version": "the same, in full",
    "statistics_db_event_queue": "backlog of the Erlang statistics database process",
    "cowboy_opts": "options of Cowboy, RabbitMQ's Erlang HTTP server",
    "backing_queue_status": "internal state of a classic queue's backing queue (q1-q4, delta)",
    "recoverable_slaves": "classic-queue mirrors, removed in RabbitMQ 4.0",
    "release_series_support_status": "whether a RabbitMQ release series is still supported",
    # Classic-queue storage accounting: which messages sit in RAM, were paged out
    # to disk, or are persistent. Every warrenmq message is in its queue's log.
    "messages_ram": "classic-queue storage accounting",
    "messages_ready_ram": "classic-queue storage accounting",
    "messages_unacknowledged_ram": "classic-queue storage accounting",
    "message_bytes_ram": "classic-queue storage accounting",
    "messages_paged_out": "classic-queue storage accounting",
    "message_bytes_paged_out": "classic-queue storage accounting",
    "messages_persistent": "classic-queue storage accounting",
    "message_bytes_persistent": "classic-queue storage accounting",
    "disk_reads": "reads of RabbitMQ's message store",
    "disk_reads_details": "the rate of the above",
    "disk_writes": "writes to RabbitMQ's message store",
    "disk_writes_details": "the rate of the above",
}
# Error cases where we answer otherwise, and what we answer.
DELIBERATE_DIFFERENCES = {
    # RabbitMQ 3.10 crashes on an unknown ackmode (500, no body); we say what is wrong.
    "get with bad ackmode": (400, {
        "error": "bad_request",
        "reason": "Unsupported ackmode 'sometimes'. Please use one of ack_requeue_true, "
                  "reject_requeue_true, ack_requeue_false, reject_requeue_false.",
    }),
}  # fmt: skip


# ------------------------------------------------------------- the scene
@pytest.fixture(scope="module")
def api(mgmt_broker: BrokerProcess) -> Api:
    return Api(mgmt_broker.management_url)


@pytest.fixture(autouse=True)
def no_tracebacks(mgmt_broker: BrokerProcess) -> Iterator[None]:
    """Whatever a test sends, the broker must not fail inside (a 500 logs a traceback)."""
    yield
    assert "Traceback" not in mgmt_broker.log_text()


@pytest.fixture(scope="module")
def observed(mgmt_broker: BrokerProcess, api: Api) -> Iterator[dict[str, Any]]:
    """The recorder's requests, made against warrenmq, in the recorder's order."""
    scene = recorder.Scene(api, "127.0.0.1", mgmt_broker.port)
    try:
        scene.set_up()
        yield recorder.record(scene, None)
    finally:
        scene.tear_down()


def _types(shape: dict[str, Any]) -> set[str]:
    kind = shape["type"]
    kinds = set(kind) if isinstance(kind, list) else {kind}
    return {"object" if k == "map" else k for k in kinds}


def shape_problems(want: dict[str, Any], got: dict[str, Any] | None, path: str) -> list[str]:
    """Where got lacks a key of want, or has another JSON type."""
    if got is None:
        return [f"{path}: missing"]
    problems = []
    if not _types(got) <= _types(want):
        problems.append(f"{path}: {sorted(_types(got))} where RabbitMQ has {sorted(_types(want))}")
    for key, sub in (want.get("keys") or {}).items():
        if key not in NOT_SERVED:
            problems += shape_problems(sub, (got.get("keys") or {}).get(key), f"{path}.{key}")
    if want.get("items") and got.get("items"):
        problems += shape_problems(want["items"], got["items"], f"{path}[]")
    if want.get("values") and got.get("values"):
        problems += shape_problems(want["values"], got["values"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize("request_line", sorted(RECORDED["shapes"]))
def test_answers_have_rabbitmq_shape(observed: dict[str, Any], request_line: str) -> None:
    want = RECORDED["shapes"][request_line]
    got = observed["shapes"][request_line]
    assert shape_problems(want, got, request_line) == []


@pytest.mark.parametrize("case", sorted(RECORDED["errors"]))
def test_errors_answer_as_rabbitmq(observed: dict[str, Any], case: str) -> None:
    want = RECORDED["errors"][case]
    expected = DELIBERATE_DIFFERENCES.get(case, (want["status"], want["body"]))
    got = observed["errors"][case]
    assert (got["status"], got["body"]) == expected


@pytest.mark.parametrize("case", sorted(RECORDED["writes"]))
def test_writes_answer_as_rabbitmq(observed: dict[str, Any], case: str) -> None:
    want = RECORDED["writes"][case]
    got = observed["writes"][case]
    assert (got["status"], got["location"]) == (want["status"], want["location"])


@pytest.mark.parametrize("tag", sorted(recorder.TAG_USERS))
def test_each_tag_may_do_what_rabbitmq_allows(observed: dict[str, Any], tag: str) -> None:
    want = [a for a in RECORDED["auth"] if a["tag"] == tag]
    got = {(a["method"], a["path"]): a for a in observed["auth"] if a["tag"] == tag}
    assert len(want) == len(recorder.AUTH_CASES)
    mismatches = []
    for case in want:
        ours = got[(case["method"], case["path"])]
        expected = (case["status"], case["vhosts_seen"], case["error"])
        if (ours["status"], ours["vhosts_seen"], ours["error"]) != expected:
            mismatches.append((case["method"], case["path"], expected,
                               (ours["status"], ours["vhosts_seen"], ours["error"])))  # fmt: skip
    assert mismatches == []


def test_without_credentials_the_api_asks_for_them(mgmt_broker: BrokerProcess) -> None:
    status, body, headers = Api(mgmt_broker.management_url).call(
        "GET", "/api/overview", headers={"Authorization": ""})  # fmt: skip
    assert (status, body) == (401, None)
    assert headers.get("WWW-Authenticate") == 'Basic realm="RabbitMQ Management"'


def test_the_default_exchange_cannot_be_declared(api: Api) -> None:
    status, body, _ = api.call("PUT", "/api/exchanges/%2F/amq.default", {"type": "direct"})
    assert (status, body) == (401, {"error": "not_authorised", "reason": "Access refused."})


def test_unknown_methods_are_405_with_the_allowed_ones(api: Api) -> None:
    status, body, headers = api.call("PATCH", "/api/queues/%2F/q", {})
    assert (status, body) == (405, None)
    assert headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PUT"


def test_rates_are_the_change_over_the_last_sample_interval() -> None:
    sampler = Sampler()
    thing = Sampler()  # any object that can be weakly referenced
    assert sampler.rate(thing, "publish") == 0.0
    sampler.observe(thing, {"publish": 10}, now=100.0)
    assert sampler.rate(thing, "publish") == 0.0  # one sample: no rate yet
    sampler.observe(thing, {"publish": 35}, now=105.0)
    assert sampler.details(thing, {"publish": 40}) == {"publish": 40, "publish_details": {"rate": 5.0}}
    sampler.observe(thing, {"publish": 35}, now=110.0)
    assert sampler.rate(thing, "publish") == 0.0
    assert sampler.idle_since(thing, 0.0).startswith("1970-01-01T00:01:45")  # last change: t=105


def test_node_has_the_fields_tools_list(api: Api) -> None:
    nodes = api.get("/api/nodes")
    assert len(nodes) == 1
    node = nodes[0]
    assert node["name"] == api.get("/api/overview")["node"]
    assert node["running"] is True and node["type"] == "disc"
    assert node["mem_used"] > 0 and node["uptime"] >= 0 and node["disk_free"] > 0


# ---------------------------------------------------------------- writes
@pytest.fixture
def vhost(api: Api) -> Iterator[str]:
    """A fresh vhost guest may use; deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    api.ok("PUT", f"/api/vhosts/{name}", {})
    api.ok("PUT", f"/api/permissions/{name}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    try:
        yield name
    finally:
        api.call("DELETE", f"/api/vhosts/{name}")


def amqp(broker: BrokerProcess, vhost: str, **params: Any) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.port, vhost, pika.PlainCredentials("guest", "guest"), **params))  # fmt: skip


def test_put_queue_is_declared_with_its_arguments(api: Api, mgmt_broker: BrokerProcess, vhost: str) -> None:
    arguments = {"x-max-length": 10, "x-dead-letter-exchange": "dlx", "x-queue-mode": "lazy"}
    assert api.call("PUT", f"/api/queues/{vhost}/q1", {"durable": "true", "arguments": arguments})[0] == 201
    conn = amqp(mgmt_broker, vhost)
    try:
        ch = conn.channel()
        assert ch.queue_declare("q1", passive=True).method.message_count == 0
        ch.queue_declare("q1", durable=True, arguments=arguments)  # equivalent: accepted
        with pytest.raises(ChannelClosedByBroker) as refused:
            conn.channel().queue_declare("q1", durable=True, arguments={"x-max-length": 11})
        assert refused.value.reply_code == 406
        assert "inequivalent arg 'x-max-length'" in refused.value.reply_text
    finally:
        conn.close()
    shown = api.get(f"/api/queues/{vhost}/q1")
    assert (shown["durable"], shown["arguments"]) == (True, arguments)


def test_delete_queue(api: Api, mgmt_broker: BrokerProcess, vhost: str) -> None:
    api.ok("PUT", f"/api/queues/{vhost}/gone", {})
    assert api.call("DELETE", f"/api/queues/{vhost}/gone")[0] == 204
    conn = amqp(mgmt_broker, vhost)
    try:
        with pytest.raises(ChannelClosedByBroker) as missing:
            conn.channel().queue_declare("gone", passive=True)
        assert missing.value.reply_code == 404
    finally:
        conn.close()
    assert api.call("GET", f"/api/queues/{vhost}/gone")[0] == 404


def test_delete_queue_if_empty_refuses_a_queue_with_messages(api: Api, vhost: str) -> None:
    api.ok("PUT", f"/api/queues/{vhost}/full", {})
    _publish(api, vhost, "", "full", "x")
    status, body, _ = api.call("DELETE", f"/api/queues/{vhost}/full?if-empty=true")
    assert (status, body) == (400, {"error": "bad_request",
                                    "reason": f"queue 'full' in vhost '{vhost}' not empty"})
    assert api.get(f"/api/queues/{vhost}/full")["messages"] == 1


def _publish(api: Api, vhost: str, exchange: str, key: str, payload: str, **properties: Any) -> bool:
    body = {"routing_key": key, "payload": payload, "payload_encoding": "string", "properties": properties}
    return api.ok("POST", f"/api/exchanges/{vhost}/{exchange or 'amq.default'}/publish", body)["routed"]


def test_purge_empties_the_queue(api: Api, mgmt_broker: BrokerProcess, vhost: str) -> None:
    api.ok("PUT", f"/api/queues/{vhost}/p", {"durable": True})
    for i in range(3):
        assert _publish(api, vhost, "", "p", f"m{i}")
    assert api.get(f"/api/queues/{vhost}/p")["messages_ready"] == 3
    assert api.call("DELETE", f"/api/queues/{vhost}/p/contents")[0] == 204
    assert api.get(f"/api/queues/{vhost}/p")["messages"] == 0
    conn = amqp(mgmt_broker, vhost)
    try:
        assert conn.channel().basic_get("p") == (None, None, None)
    finally:
        conn.close()


def _get(api: Api, vhost: str, queue: str, ackmode: str, count: int = 5) -> list[dict[str, Any]]:
    return api.ok("POST", f"/api/queues/{vhost}/{queue}/get",
                  {"count": count, "ackmode": ackmode, "encoding": "auto"})  # fmt: skip


@pytest.mark.parametrize("ackmode", ["ack_requeue_true", "reject_requeue_true"])
def test_get_with_requeue_leaves_the_messages(api: Api, vhost: str, ackmode: str) -> None:
    api.ok("PUT", f"/api/queues/{vhost}/g", {})
    for payload in ("one", "two"):
        _publish(api, vhost, "", "g", payload, content_type="text/plain")
    first = _get(api, vhost, "g", ackmode)
    assert [(m["payload"], m["redelivered"], m["message_count"]) for m in first] == [
        ("one", False, 1), ("two", False, 0)]
    assert first[0]["properties"] == {"content_type": "text/plain"}
    assert first[0]["routing_key"] == "g" and first[0]["exchange"] == ""
    again = _get(api, vhost, "g", ackmode)
    assert [(m["payload"], m["redelivered"]) for m in again] == [("one", True), ("two", True)]
    assert api.get(f"/api/queues/{vhost}/g")["messages_ready"] == 2


@pytest.mark.parametrize("ackmode, dead_lettered", [("ack_requeue_false", []),
                                                    ("reject_requeue_false", ["one", "two"])])
def test_get_without_requeue_removes_the_messages(api: Api, vhost: str, ackmode: str,
                                                  dead_lettered: list[str]) -> None:  # fmt: skip
    """An ack settles; a reject dead-letters (the queue has a dead-letter exchange)."""
    api.ok("PUT", f"/api/exchanges/{vhost}/dlx", {"type": "fanout"})
    api.ok("PUT", f"/api/queues/{vhost}/dlq", {})
    api.ok("POST", f"/api/bindings/{vhost}/e/dlx/q/dlq", {})
    api.ok("PUT", f"/api/queues/{vhost}/g", {"arguments": {"x-dead-letter-exchange": "dlx"}})
    for payload in ("one", "two"):
        _publish(api, vhost, "", "g", payload)
    assert [m["payload"] for m in _get(api, vhost, "g", ackmode)] == ["one", "two"]
    assert _get(api, vhost, "g", ackmode) == []
    assert [m["payload"] for m in _get(api, vhost, "dlq", "ack_requeue_false")] == dead_lettered


def test_get_truncates_and_encodes(api: Api, vhost: str) -> None:
    api.ok("PUT", f"/api/queues/{vhost}/enc", {})
    raw = b"\xff\x00binary"
    api.ok("POST", f"/api/exchanges/{vhost}/amq.default/publish", {
        "routing_key": "enc", "payload": base64.b64encode(raw).decode(), "payload_encoding": "base64",
        "properties": {}})  # fmt: skip
    _publish(api, vhost, "", "enc", "text")
    got = api.ok("POST", f"/api/queues/{vhost}/enc/get",
                 {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 3})  # fmt: skip
    assert [(m["payload"], m["payload_encoding"], m["payload_bytes"]) for m in got] == [
        (base64.b64encode(raw[:3]).decode(), "base64", len(raw)), ("tex", "string", 4)]


def test_publish_is_seen_over_amqp(api: Api, mgmt_broker: BrokerProcess, vhost: str) -> None:
    api.ok("PUT", f"/api/queues/{vhost}/pub", {})
    properties = {"delivery_mode": 2, "content_type": "application/json", "priority": 3,
                  "headers": {"n": 1, "s": "text", "b": True, "list": [1, "a"], "t": {"k": -2}},
                  "message_id": "m-1", "timestamp": 1_700_000_000, "type": "kind"}  # fmt: skip
    body = {"routing_key": "pub", "payload": base64.b64encode(b"\x00\x01payload").decode(),
            "payload_encoding": "base64", "properties": properties}  # fmt: skip
    assert api.ok("POST", f"/api/exchanges/{vhost}/amq.default/publish", body) == {"routed": True}
    assert _publish(api, vhost, "amq.direct", "nowhere", "lost") is False
    conn = amqp(mgmt_broker, vhost)
    try:
        method, props, payload = conn.channel().basic_get("pub", auto_ack=True)
    finally:
        conn.close()
    assert payload == b"\x00\x01payload"
    assert method.routing_key == "pub" and method.exchange == ""
    assert (props.delivery_mode, props.content_type, props.priority, props.message_id, props.type,
            props.timestamp) == (2, "application/json", 3, "m-1", "kind", 1_700_000_000)  # fmt: skip
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in props.headers.items()}
    assert headers["n"] == 1 and headers["s"] == "text" and headers["b"] is True
    assert headers["t"] == {"k": -2}
    assert [v.decode() if isinstance(v, bytes) else v for v in headers["list"]] == [1, "a"]


def test_publish_counts_in_exchange_and_vhost_stats(api: Api, vhost: str) -> None:
    api.ok("PUT", f"/api/exchanges/{vhost}/fan", {"type": "fanout"})
    for name in ("a", "b"):
        api.ok("PUT", f"/api/queues/{vhost}/{name}", {})
        api.ok("POST", f"/api/bindings/{vhost}/e/fan/q/{name}", {})
    for _ in range(3):
        assert _publish(api, vhost, "fan", "", "x")
    stats = api.get(f"/api/exchanges/{vhost}/fan")["message_stats"]
    assert (stats["publish_in"], stats["publish_out"]) == (3, 6)
    assert api.get(f"/api/vhosts/{vhost}")["message_stats"]["publish"] == 3
    assert api.get(f"/api/queues/{vhost}/a")["message_stats"]["publish"] == 3


def test_bindings_create_route_and_delete(api: Api, mgmt_broker: BrokerProcess, vhost: str) -> None:
    api.ok("PUT", f"/api/exchanges/{vhost}/x", {"type": "topic"})
    api.ok("PUT", f"/api/exchanges/{vhost}/x2", {"type": "fanout"})
    api.ok("PUT", f"/api/queues/{vhost}/bq", {})
    status, _, headers = api.call("POST", f"/api/bindings/{vhost}/e/x/q/bq",
                                  {"routing_key": "a.*", "arguments": {"k": "v"}})  # fmt: skip
    assert status == 201
    location = headers.get("Location") or headers["location"]
    listed = api.get(f"/api/bindings/{vhost}/e/x/q/bq")
    assert [(b["routing_key"], b["arguments"]) for b in listed] == [("a.*", {"k": "v"})]
    assert location == f"bq/{listed[0]['properties_key']}"
    assert api.call("POST", f"/api/bindings/{vhost}/e/x/e/x2", {"routing_key": "b.#"})[0] == 201
    api.ok("PUT", f"/api/queues/{vhost}/bq2", {})
    api.ok("POST", f"/api/bindings/{vhost}/e/x2/q/bq2", {})
    assert _publish(api, vhost, "x", "a.b", "to bq")
    assert _publish(api, vhost, "x", "b.c", "to bq2 through x2")
    assert api.get(f"/api/queues/{vhost}/bq")["messages"] == 1
    assert api.get(f"/api/queues/{vhost}/bq2")["messages"] == 1
    sources = api.get(f"/api/exchanges/{vhost}/x/bindings/source")
    assert sorted((b["destination"], b["destination_type"]) for b in sources) == [
        ("bq", "queue"), ("x2", "exchange")]
    assert [b["source"] for b in api.get(f"/api/exchanges/{vhost}/x2/bindings/destination")] == ["x"]
    assert [b["source"] for b in api.get(f"/api/queues/{vhost}/bq/bindings")] == ["", "x"]
    # Deleted by the properties key from the Location, the binding no longer routes.
    assert api.call("DELETE", f"/api/bindings/{vhost}/e/x/q/{location}")[0] == 204
    e2e = api.get(f"/api/bindings/{vhost}/e/x/e/x2")[0]["properties_key"]
    assert api.call("DELETE", f"/api/bindings/{vhost}/e/x/e/x2/{quote(e2e, safe='')}")[0] == 204
    assert _publish(api, vhost, "x", "a.b", "nowhere") is False
    assert _publish(api, vhost, "x", "b.c", "nowhere") is False
    assert api.get(f"/api/bindings/{vhost}/e/x/q/bq") == []


def test_close_connection_with_reason(api: Api, mgmt_broker: BrokerProcess, vhost: str) -> None:
    conn = amqp(mgmt_broker, vhost, client_properties={"connection_name": "to-close"})
    try:
        listed = [c for c in api.get(f"/api/vhosts/{vhost}/connections")
                  if c.get("user_provided_name") == "to-close"]  # fmt: skip
        assert len(listed) == 1
        name = listed[0]["name"]
        status, _, _ = api.call("DELETE", f"/api/connections/{quote(name, safe='')}",
                                headers={"X-Reason": "maintenance window"})  # fmt: skip
        assert status == 204
        with pytest.raises(ConnectionClosedByBroker) as closed:
            conn.process_data_events(time_limit=5)
            conn.channel()
        assert closed.value.reply_code == 320
        assert closed.value.reply_text == "CONNECTION_FORCED - maintenance window"
    finally:
        if conn.is_open:
            conn.close()


def test_connection_and_channel_views_follow_the_client(api: Api, mgmt_broker: BrokerProcess,
                                                        vhost: str) -> None:  # fmt: skip
    conn = amqp(mgmt_broker, vhost, client_properties={"connection_name": "watched"})
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_qos(prefetch_count=7)
        ch.queue_declare("cq")
        ch.basic_publish("", "cq", b"x")
        ch.basic_consume("cq", lambda *args: None)
        conn.process_data_events(time_limit=0.2)
        mine = [c for c in api.get("/api/connections") if c.get("user_provided_name") == "watched"]
        assert mine[0]["channels"] == 1 and mine[0]["user"] == "guest" and mine[0]["vhost"] == vhost
        channels = api.get(f"/api/connections/{quote(mine[0]['name'], safe='')}/channels")
        assert [(c["confirm"], c["prefetch_count"], c["consumer_count"]) for c in channels] == [(True, 7, 1)]
        assert channels[0]["message_stats"]["publish"] == 1
        assert channels[0]["message_stats"]["confirm"] == 1
        consumers = api.get(f"/api/consumers/{vhost}")
        assert [(c["queue"]["name"], c["prefetch_count"], c["ack_required"]) for c in consumers] == [
            ("cq", 7, True)]
    finally:
        conn.close()


def test_lists_take_columns_sort_and_pages(api: Api, vhost: str) -> None:
    for name in ("b", "c", "a"):
        api.ok("PUT", f"/api/queues/{vhost}/{name}", {})
    _publish(api, vhost, "", "c", "x")
    assert api.get(f"/api/queues/{vhost}?columns=name,messages") == [
        {"name": "a", "messages": 0}, {"name": "b", "messages": 0}, {"name": "c", "messages": 1}]
    names = [q["name"] for q in api.get(f"/api/queues/{vhost}?sort=name&sort_reverse=true")]
    assert names == ["c", "b", "a"]
    page = api.get(f"/api/queues/{vhost}?page=2&page_size=2&columns=name")
    assert page == {"total_count": 3, "item_count": 1, "filtered_count": 3, "page": 2, "page_size": 2,
                    "page_count": 2, "items": [{"name": "c"}]}  # fmt: skip
    status, body, _ = api.call("GET", f"/api/queues/{vhost}?page=0")
    assert (status, body["error"]) == (400, "invalid_pagination_parameters")


def test_overview_counts_what_is_there(api: Api, vhost: str) -> None:
    before = api.get("/api/overview")
    api.ok("PUT", f"/api/queues/{vhost}/o", {})
    _publish(api, vhost, "", "o", "x")
    after = api.get("/api/overview")
    assert after["object_totals"]["queues"] == before["object_totals"]["queues"] + 1
    assert after["queue_totals"]["messages"] == before["queue_totals"]["messages"] + 1
    assert after["message_stats"]["publish"] == before["message_stats"]["publish"] + 1
    assert after["churn_rates"]["queue_created"] == before["churn_rates"]["queue_created"] + 1


def test_a_management_user_only_touches_what_its_permissions_allow(api: Api, vhost: str) -> None:
    api.ok("PUT", "/api/users/narrow", {"password": "pw", "tags": "management"})
    try:
        api.ok("PUT", f"/api/permissions/{vhost}/narrow",
               {"configure": "^mine-.*", "write": "^mine-.*", "read": "^mine-.*"})  # fmt: skip
        narrow = api.as_user("narrow", "pw")
        assert narrow.call("PUT", f"/api/queues/{vhost}/mine-1", {})[0] == 201
        assert narrow.call("PUT", f"/api/queues/{vhost}/other", {})[:2] == (
            401, {"error": "not_authorised", "reason": "Access refused."})
        api.ok("PUT", f"/api/queues/{vhost}/other", {})
        assert narrow.call("DELETE", f"/api/queues/{vhost}/other")[0] == 401
        status, body, _ = narrow.call("POST", f"/api/queues/{vhost}/other/get",
                                      {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})  # fmt: skip
        assert (status, body["reason"]) == (401, f"ACCESS_REFUSED - access to queue 'other' in vhost "
                                                 f"'{vhost}' refused for user 'narrow'")  # fmt: skip
        assert narrow.call("DELETE", f"/api/queues/{vhost}/mine-1")[0] == 204
    finally:
        api.call("DELETE", "/api/users/narrow")


def test_a_user_without_a_password_cannot_log_in(api: Api) -> None:
    api.ok("PUT", "/api/users/nopass", {"tags": "administrator"})
    try:
        assert api.get("/api/users/nopass")["password_hash"] == ""
        assert api.as_user("nopass", "").call("GET", "/api/overview")[0] == 401
    finally:
        api.call("DELETE", "/api/users/nopass")


# ----------------------------------------------------------- definitions
def _varied_topology(api: Api, broker: BrokerProcess) -> pika.BlockingConnection:
    """Vhosts, users with tags, permissions, durable exchanges and queues with arguments,
    bindings of both kinds with arguments, and transient and exclusive things not to export.
    Returns the connection holding the exclusive queue open."""
    api.ok("PUT", "/api/vhosts/defs-a", {"description": "first", "tags": "blue,green"})
    api.ok("PUT", "/api/vhosts/defs%2Fb", {"description": "second"})
    api.ok("PUT", "/api/users/ops", {"password": "ops-pw", "tags": "administrator,monitoring"})
    api.ok("PUT", "/api/users/app", {"password_hash": "", "tags": ""})
    api.ok("PUT", "/api/users/viewer", {"password": "v", "tags": ["management"]})
    for user, vh in (("guest", "defs-a"), ("guest", "defs%2Fb"), ("ops", "defs-a"), ("app", "defs%2Fb")):
        api.ok("PUT", f"/api/permissions/{vh}/{user}", {"configure": "^app-", "write": ".*", "read": ".*"})
    api.ok("PUT", "/api/permissions/defs-a/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    api.ok("PUT", "/api/permissions/defs%2Fb/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    exchanges = {
        "d": ("direct", {"alternate-exchange": "f"}),
        "f": ("fanout", {}),
        "t": ("topic", {"x-custom": [1, "two", {"three": 3.5}]}),
        "h": ("headers", {}),
        "ch": ("x-consistent-hash", {"hash-header": "h"}),
        "delayed": ("x-delayed-message", {"x-delayed-type": "direct"}),
    }
    for vh in ("defs-a", "defs%2Fb"):
        for name, (kind, arguments) in exchanges.items():
            api.ok("PUT", f"/api/exchanges/{vh}/{name}",
                   {"type": kind, "durable": True, "internal": name == "f", "arguments": arguments})  # fmt: skip
        api.ok("PUT", f"/api/queues/{vh}/work", {"durable": True, "arguments": {
            "x-max-length": 100, "x-overflow": "reject-publish", "x-dead-letter-exchange": "f",
            "x-dead-letter-routing-key": "dead", "x-max-priority": 5, "x-single-active-consumer": True}})
        api.ok("PUT", f"/api/queues/{vh}/auto", {"durable": True, "auto_delete": True})
        api.ok("POST", f"/api/bindings/{vh}/e/d/q/work", {"routing_key": "k"})
        api.ok("POST", f"/api/bindings/{vh}/e/h/q/work",
               {"routing_key": "", "arguments": {"x-match": "any", "a": 1, "b": "two"}})  # fmt: skip
        api.ok("POST", f"/api/bindings/{vh}/e/t/e/f", {"routing_key": "a.#", "arguments": {"n": 1}})
        api.ok("POST", f"/api/bindings/{vh}/e/ch/q/work", {"routing_key": "10"})
        # Not exported: a transient queue and exchange, and the bindings that touch them.
        api.ok("PUT", f"/api/queues/{vh}/transient", {"durable": False})
        api.ok("PUT", f"/api/exchanges/{vh}/transient-x", {"type": "fanout", "durable": False})
        api.ok("POST", f"/api/bindings/{vh}/e/d/q/transient", {"routing_key": "t"})
        api.ok("POST", f"/api/bindings/{vh}/e/transient-x/q/work", {"routing_key": ""})
    conn = amqp(broker, "defs-a")
    conn.channel().queue_declare("exclusive-q", exclusive=True)
    return conn


def test_definitions_round_trip(api: Api, mgmt_broker: BrokerProcess) -> None:
    """Export, import into an empty broker, export again (also after a restart): the same document.

    Nothing is left out of the comparison: users keep their password hashes
    (guest's included: the import replaces the fresh broker's own guest).
    """
    holder = _varied_topology(api, mgmt_broker)
    fresh_dir = Path(tempfile.mkdtemp(prefix="warrenmq-defs-"))
    fresh = BrokerProcess(fresh_dir / "data")
    try:
        exported = api.get("/api/definitions")
        names = {(q["vhost"], q["name"]) for q in exported["queues"]}
        assert ("defs-a", "work") in names and ("defs/b", "auto") in names
        assert not {n for _v, n in names} & {"transient", "exclusive-q"}
        assert not [x for x in exported["exchanges"] if x["name"] in ("transient-x", "") or
                    x["name"].startswith("amq.")]  # fmt: skip
        assert not [b for b in exported["bindings"]
                    if "transient" in b["destination"] or b["source"] in ("", "transient-x")]  # fmt: skip
        assert {u["name"]: u["tags"] for u in exported["users"]}["ops"] == ["administrator", "monitoring"]
        (fresh_dir / "data").mkdir()
        fresh.start()
        fresh_api = Api(fresh.management_url)
        assert fresh_api.call("POST", "/api/definitions", exported)[0] == 204
        assert fresh_api.get("/api/definitions") == exported
        fresh.stop()  # what was imported is durable
        fresh.start()
        fresh_api = Api(fresh.management_url)
        assert fresh_api.get("/api/definitions") == exported
        # What was imported works: the binding with header arguments routes.
        fresh_api.ok("POST", "/api/exchanges/defs-a/h/publish", {
            "routing_key": "", "payload": "p", "payload_encoding": "string",
            "properties": {"headers": {"b": "two"}}})  # fmt: skip
        assert fresh_api.get("/api/queues/defs-a/work")["messages"] == 1
        assert Api(fresh.management_url, "ops", "ops-pw").call("GET", "/api/whoami")[0] == 200
    finally:
        holder.close()
        fresh.stop()
        fresh.kill()
        shutil.rmtree(fresh_dir, ignore_errors=True)
        for vh in ("defs-a", "defs%2Fb"):
            api.call("DELETE", f"/api/vhosts/{vh}")
        for user in ("ops", "app", "viewer"):
            api.call("DELETE", f"/api/users/{user}")


def test_vhost_definitions_import_into_another_vhost(api: Api, vhost: str) -> None:
    api.ok("PUT", f"/api/exchanges/{vhost}/src", {"type": "direct", "durable": True})
    api.ok("PUT", f"/api/queues/{vhost}/dst", {"durable": True, "arguments": {"x-max-length": 3}})
    api.ok("POST", f"/api/bindings/{vhost}/e/src/q/dst", {"routing_key": "r"})
    exported = api.get(f"/api/definitions/{vhost}")
    target = f"{vhost}-copy"
    api.ok("PUT", f"/api/vhosts/{target}", {})
    try:
        assert api.call("POST", f"/api/definitions/{target}", exported)[0] == 204
        copied = api.get(f"/api/definitions/{target}")
        assert (copied["queues"], copied["exchanges"], copied["bindings"]) == (
            exported["queues"], exported["exchanges"], exported["bindings"])
    finally:
        api.call("DELETE", f"/api/vhosts/{target}")
