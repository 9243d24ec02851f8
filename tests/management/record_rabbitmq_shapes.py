"""Record the management API's JSON shapes and status codes from a real RabbitMQ node.

Run by hand against a reference node (RabbitMQ 3.10 with the management plugin):

    .venv/bin/python tests/management/record_rabbitmq_shapes.py \\
        [--api http://127.0.0.1:15673] [--amqp-port 5673] [--out FILE] [--samples DIR]

It sets up `Scene` (a vhost, users with each management tag, a durable queue
holding messages, exchanges with queue and exchange-to-exchange bindings, a
connection with a channel and a consumer held open), then records for every
path in `GET_PATHS` the JSON shape of the answer (`shape_of`), for every
case in `ERROR_CASES` the status and body, for every case in `WRITE_CASES`
the status, and for every case in `AUTH_CASES` the status each tag gets and
which of the scene's vhosts it sees. Everything it created is removed at the
end. `tests/management/test_api.py` builds the same scene in warrenmq and
compares. `--samples DIR` also writes every full answer there, for reading.

The scene is also imported by test_api.py, so it is written against the
HTTP API and AMQP only.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pika

VHOST = "shapes-vh"
QUEUE = "shapes-q"  # durable, with arguments and ready messages
CONSUMED = "shapes-consumed"  # a consumer holds two of its messages unacked
ROOT_QUEUE = "shapes-root-q"  # in "/": only users allowed in "/" see it
EXCHANGE = "shapes-x"  # topic, durable, with an alternate exchange
EXCHANGE2 = "shapes-x2"  # fanout, bound to EXCHANGE (exchange to exchange)
CONNECTION_NAME = "shapes-connection"
PASSWORD = "shapes-pw"
# One user per management tag (and one with none), each allowed in VHOST only.
TAG_USERS = {
    "none": "shapes-none",
    "management": "shapes-management",
    "policymaker": "shapes-policymaker",
    "monitoring": "shapes-monitoring",
    "administrator": "shapes-administrator",
}
QUEUE_ARGUMENTS = {"x-max-length": 1000, "x-message-ttl": 3_600_000}
BINDING_ARGUMENTS = {"x-binding": "shapes"}

# Placeholders filled by Scene.placeholders(); names are URL-encoded.
GET_PATHS = [
    "/api/overview",
    "/api/whoami",
    # /api/nodes is left out: most of a node's fields describe the Erlang VM (processes,
    # schedulers, mnesia, the message store); test_api.py checks the fields tools read.
    "/api/vhosts",
    "/api/vhosts/{vhost}",
    "/api/vhosts/{vhost}/permissions",
    "/api/vhosts/{vhost}/connections",
    "/api/vhosts/{vhost}/channels",
    "/api/users",
    "/api/users/{user}",
    "/api/users/{user}/permissions",
    "/api/permissions",
    "/api/permissions/{vhost}/{user}",
    "/api/exchanges",
    "/api/exchanges/{vhost}",
    "/api/exchanges/{vhost}/{exchange}",
    "/api/exchanges/{vhost}/{exchange}/bindings/source",
    "/api/exchanges/{vhost}/{exchange2}/bindings/destination",
    "/api/queues",
    "/api/queues/{vhost}",
    "/api/queues/{vhost}/{queue}",
    "/api/queues/{vhost}/{consumed}",
    "/api/queues/{vhost}/{queue}/bindings",
    "/api/bindings",
    "/api/bindings/{vhost}",
    "/api/bindings/{vhost}/e/{exchange}/q/{queue}",
    "/api/bindings/{vhost}/e/{exchange}/q/{queue}/{queue_props}",
    "/api/bindings/{vhost}/e/{exchange}/e/{exchange2}",
    "/api/bindings/{vhost}/e/{exchange}/e/{exchange2}/{exchange_props}",
    "/api/connections",
    "/api/connections/{connection}",
    "/api/connections/{connection}/channels",
    "/api/channels",
    "/api/channels/{channel}",
    "/api/consumers",
    "/api/consumers/{vhost}",
    "/api/definitions",
    "/api/definitions/{vhost}",
    "/api/health/checks/alarms",
    "/api/aliveness-test/{vhost}",
]
# Answers to POSTs whose JSON shape is recorded too: (method, path, body).
POST_SHAPES = [
    ("POST", "/api/queues/{vhost}/{queue}/get",
     {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto"}),
    ("POST", "/api/exchanges/{vhost}/{exchange}/publish",
     {"routing_key": "a.b", "payload": "hi", "payload_encoding": "string",
      "properties": {"delivery_mode": 2, "headers": {"h": 1}}}),
]  # fmt: skip
# Each error case: a name, method, path, body (None: none), and the user (None: guest).
ERROR_CASES = [
    ("vhost missing", "GET", "/api/vhosts/shapes-missing", None, None),
    ("queue missing", "GET", "/api/queues/{vhost}/shapes-missing", None, None),
    ("queue in missing vhost", "GET", "/api/queues/shapes-missing/q", None, None),
    ("exchange missing", "GET", "/api/exchanges/{vhost}/shapes-missing", None, None),
    ("connection missing", "GET", "/api/connections/shapes-missing", None, None),
    ("user missing", "GET", "/api/users/shapes-missing", None, None),
    ("delete queue missing", "DELETE", "/api/queues/{vhost}/shapes-missing", None, None),
    ("delete exchange missing", "DELETE", "/api/exchanges/{vhost}/shapes-missing", None, None),
    ("delete vhost missing", "DELETE", "/api/vhosts/shapes-missing", None, None),
    ("delete user missing", "DELETE", "/api/users/shapes-missing", None, None),
    ("purge missing", "DELETE", "/api/queues/{vhost}/shapes-missing/contents", None, None),
    ("publish to missing exchange", "POST", "/api/exchanges/{vhost}/shapes-missing/publish",
     {"routing_key": "k", "payload": "x", "payload_encoding": "string", "properties": {}}, None),
    ("get from missing queue", "POST", "/api/queues/{vhost}/shapes-missing/get",
     {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}, None),
    ("bind to missing queue", "POST", "/api/bindings/{vhost}/e/{exchange}/q/shapes-missing",
     {"routing_key": "k"}, None),
    ("binding missing", "GET", "/api/bindings/{vhost}/e/{exchange}/q/{queue}/shapes-missing", None, None),
    ("queue redeclared inequivalent", "PUT", "/api/queues/{vhost}/{queue}",
     {"durable": False}, None),
    ("queue argument inequivalent", "PUT", "/api/queues/{vhost}/{queue}",
     {"durable": True, "arguments": {"x-max-length": 7, "x-message-ttl": 3600000}}, None),
    ("exchange redeclared inequivalent", "PUT", "/api/exchanges/{vhost}/{exchange}",
     {"type": "direct", "durable": True}, None),
    ("exchange type unknown", "PUT", "/api/exchanges/{vhost}/shapes-badtype",
     {"type": "no-such-type"}, None),
    ("exchange reserved name", "PUT", "/api/exchanges/{vhost}/amq.shapes", {"type": "direct"}, None),
    ("delete system exchange", "DELETE", "/api/exchanges/{vhost}/amq.direct", None, None),
    ("queue reserved name", "PUT", "/api/queues/{vhost}/amq.shapes", {"durable": True}, None),
    ("queue bad argument", "PUT", "/api/queues/{vhost}/shapes-badarg",
     {"arguments": {"x-max-length": -1}}, None),
    ("body not JSON", "PUT", "/api/queues/{vhost}/shapes-badjson", "{not json", None),
    ("get with bad ackmode", "POST", "/api/queues/{vhost}/{queue}/get",
     {"count": 1, "ackmode": "sometimes", "encoding": "auto"}, None),
    ("bad password", "GET", "/api/overview", None, "bad-password"),
    ("no management tag", "GET", "/api/overview", None, TAG_USERS["none"]),
    ("method not allowed", "POST", "/api/overview", {}, None),
    ("no such path", "GET", "/api/shapes-no-such-path", None, None),
    ("permission for missing user", "PUT", "/api/permissions/{vhost}/shapes-missing",
     {"configure": ".*", "write": ".*", "read": ".*"}, None),
    ("permission in missing vhost", "PUT", "/api/permissions/shapes-missing/{user}",
     {"configure": ".*", "write": ".*", "read": ".*"}, None),
    ("user without password or tags", "PUT", "/api/users/shapes-nothing", {}, None),
    ("alarms for a missing vhost", "GET", "/api/aliveness-test/shapes-missing", None, None),
]  # fmt: skip
# Writes that succeed: the status (and Location, for a binding) is what is recorded.
WRITE_CASES = [
    ("create vhost", "PUT", "/api/vhosts/shapes-vh2", {"description": "d", "tags": "a,b"}),
    ("update vhost", "PUT", "/api/vhosts/shapes-vh2", {"description": "e"}),
    ("create queue", "PUT", "/api/queues/{vhost}/shapes-new", {"durable": True, "arguments": {}}),
    ("redeclare queue", "PUT", "/api/queues/{vhost}/shapes-new", {"durable": True}),
    ("create exchange", "PUT", "/api/exchanges/{vhost}/shapes-newx", {"type": "direct"}),
    ("redeclare exchange", "PUT", "/api/exchanges/{vhost}/shapes-newx", {"type": "direct"}),
    ("bind queue", "POST", "/api/bindings/{vhost}/e/shapes-newx/q/shapes-new", {"routing_key": "k"}),
    ("bind again", "POST", "/api/bindings/{vhost}/e/shapes-newx/q/shapes-new", {"routing_key": "k"}),
    ("bind exchange", "POST", "/api/bindings/{vhost}/e/shapes-newx/e/{exchange}",
     {"routing_key": "", "arguments": {"a": 1}}),
    ("unbind queue", "DELETE", "/api/bindings/{vhost}/e/shapes-newx/q/shapes-new/k", None),
    ("unbind again", "DELETE", "/api/bindings/{vhost}/e/shapes-newx/q/shapes-new/k", None),
    ("purge", "DELETE", "/api/queues/{vhost}/shapes-new/contents", None),
    ("delete queue", "DELETE", "/api/queues/{vhost}/shapes-new", None),
    ("delete exchange", "DELETE", "/api/exchanges/{vhost}/shapes-newx", None),
    ("create user", "PUT", "/api/users/shapes-new-user", {"password": "p", "tags": "monitoring"}),
    ("update user", "PUT", "/api/users/shapes-new-user", {"password": "p", "tags": ""}),
    ("set permission", "PUT", "/api/permissions/shapes-vh2/shapes-new-user",
     {"configure": ".*", "write": ".*", "read": ".*"}),
    ("update permission", "PUT", "/api/permissions/shapes-vh2/shapes-new-user",
     {"configure": "", "write": ".*", "read": ".*"}),
    ("clear permission", "DELETE", "/api/permissions/shapes-vh2/shapes-new-user", None),
    ("delete user", "DELETE", "/api/users/shapes-new-user", None),
    ("delete vhost", "DELETE", "/api/vhosts/shapes-vh2", None),
    ("import definitions", "POST", "/api/definitions",
     {"queues": [{"name": "shapes-imported", "vhost": VHOST, "durable": True,
                  "auto_delete": False, "arguments": {}}]}),
    ("delete imported queue", "DELETE", "/api/queues/{vhost}/shapes-imported", None),
]  # fmt: skip
# What each tag may do: (method, path, body). Paths in "/" are outside the tag users' vhost.
AUTH_CASES = [
    ("GET", "/api/overview", None),
    ("GET", "/api/whoami", None),
    ("GET", "/api/nodes", None),
    ("GET", "/api/vhosts", None),
    ("GET", "/api/vhosts/{vhost}", None),
    ("GET", "/api/vhosts/%2F", None),
    ("PUT", "/api/vhosts/shapes-auth-vh", {}),
    ("DELETE", "/api/vhosts/shapes-auth-vh", None),
    ("GET", "/api/users", None),
    ("GET", "/api/users/{user}", None),
    ("GET", "/api/permissions", None),
    ("GET", "/api/exchanges", None),
    ("GET", "/api/exchanges/{vhost}/{exchange}", None),
    ("GET", "/api/exchanges/%2F/amq.direct", None),
    ("GET", "/api/queues", None),
    ("GET", "/api/queues/{vhost}", None),
    ("GET", "/api/queues/%2F", None),
    ("GET", "/api/queues/{vhost}/{queue}", None),
    ("GET", "/api/queues/%2F/{root_queue}", None),
    ("PUT", "/api/queues/{vhost}/shapes-auth-q", {"durable": False}),
    ("DELETE", "/api/queues/{vhost}/shapes-auth-q", None),
    ("PUT", "/api/queues/%2F/shapes-auth-q", {"durable": False}),
    ("POST", "/api/queues/{vhost}/{queue}/get", {"count": 1, "ackmode": "ack_requeue_true",
                                                 "encoding": "auto"}),
    ("POST", "/api/exchanges/{vhost}/{exchange}/publish",
     {"routing_key": "nowhere", "payload": "x", "payload_encoding": "string", "properties": {}}),
    ("GET", "/api/bindings", None),
    ("GET", "/api/bindings/{vhost}", None),
    ("GET", "/api/connections", None),
    ("GET", "/api/connections/{connection}", None),
    ("GET", "/api/channels", None),
    ("GET", "/api/consumers", None),
    ("GET", "/api/definitions", None),
    ("GET", "/api/definitions/{vhost}", None),
    ("GET", "/api/health/checks/alarms", None),
    ("GET", "/api/aliveness-test/{vhost}", None),
    ("GET", "/api/aliveness-test/%2F", None),
]  # fmt: skip
# Keys whose values are maps keyed by data (a node name), not records with fixed keys.
MAP_KEYS = {"cluster_state"}


# ------------------------------------------------------------------ HTTP
class Api:
    """A tiny urllib client of the management API (status, parsed body, headers)."""

    def __init__(self, base: str, user: str = "guest", password: str = "guest") -> None:
        self.base = base.rstrip("/")
        self.user = user
        self.password = password

    def as_user(self, user: str, password: str) -> Api:
        return Api(self.base, user, password)

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        data = None
        all_headers = {"Authorization": "Basic " + base64.b64encode(
            f"{self.user}:{self.password}".encode()).decode()}  # fmt: skip
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        request = urllib.request.Request(self.base + path, data, all_headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), dict(error.headers)
        text = raw.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return status, parsed, got

    def get(self, path: str) -> Any:
        status, body, _ = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer, _ = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


# ----------------------------------------------------------------- shapes
def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_of(value: Any, key: str | None = None) -> dict[str, Any]:
    """The JSON shape: types, an object's keys (recursively), a list's merged item shape."""
    kind = json_type(value)
    if kind == "object" and key in MAP_KEYS:
        items = [shape_of(v) for v in value.values()]
        return {"type": "map", "values": merge_shapes(items) if items else None}
    if kind == "object":
        return {"type": "object", "keys": {k: shape_of(v, k) for k, v in sorted(value.items())}}
    if kind == "array":
        items = [shape_of(v) for v in value]
        return {"type": "array", "items": merge_shapes(items) if items else None}
    return {"type": kind}


def _types(shape: dict[str, Any]) -> list[str]:
    kind = shape["type"]
    return list(kind) if isinstance(kind, list) else [kind]


def merge_shapes(shapes: list[dict[str, Any]]) -> dict[str, Any]:
    """What every item of a list has in common: the keys all of them have, each key's types."""
    first = shapes[0]
    types = sorted({t for s in shapes for t in _types(s)})
    merged: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    objects = [s for s in shapes if "keys" in s]
    if objects:
        common = set(objects[0]["keys"]).intersection(*(s["keys"] for s in objects[1:]))
        merged["keys"] = {k: merge_shapes([s["keys"][k] for s in objects]) for k in sorted(common)}
    arrays = [s["items"] for s in shapes if s.get("items")]
    if "items" in first or any("items" in s for s in shapes):
        merged["items"] = merge_shapes(arrays) if arrays else None
    maps = [s["values"] for s in shapes if s.get("values")]
    if any("values" in s for s in shapes):
        merged["values"] = merge_shapes(maps) if maps else None
    return merged


# ------------------------------------------------------------------ scene
class Scene:
    """The topology every recorded path is read from, built over HTTP and AMQP."""

    def __init__(self, api: Api, amqp_host: str, amqp_port: int) -> None:
        self.api = api
        self.amqp_host = amqp_host
        self.amqp_port = amqp_port
        self.connection: pika.BlockingConnection | None = None
        self.channel: Any = None
        self.delivered: list[Any] = []
        self.values: dict[str, str] = {}

    def amqp(self, vhost: str, **params: Any) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters(
            self.amqp_host, self.amqp_port, vhost, pika.PlainCredentials("guest", "guest"),
            **params))  # fmt: skip

    def set_up(self) -> None:
        api, v = self.api, quote(VHOST)
        api.ok("PUT", f"/api/vhosts/{v}", {"description": "shapes", "tags": "shapes"})
        api.ok("PUT", f"/api/permissions/{v}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
        for tag, user in TAG_USERS.items():
            api.ok("PUT", f"/api/users/{user}",
                   {"password": PASSWORD, "tags": "" if tag == "none" else tag})  # fmt: skip
            api.ok("PUT", f"/api/permissions/{v}/{user}",
                   {"configure": ".*", "write": ".*", "read": ".*"})  # fmt: skip
        api.ok("PUT", f"/api/queues/{v}/{QUEUE}", {"durable": True, "arguments": QUEUE_ARGUMENTS})
        api.ok("PUT", f"/api/queues/{v}/{CONSUMED}", {"durable": True})
        api.ok("PUT", f"/api/queues/%2F/{ROOT_QUEUE}", {"durable": True})
        api.ok("PUT", f"/api/exchanges/{v}/{EXCHANGE2}", {"type": "fanout", "durable": True})
        api.ok("PUT", f"/api/exchanges/{v}/{EXCHANGE}", {
            "type": "topic", "durable": True, "arguments": {"alternate-exchange": EXCHANGE2}})
        api.ok("POST", f"/api/bindings/{v}/e/{EXCHANGE}/q/{QUEUE}",
               {"routing_key": "a.#", "arguments": BINDING_ARGUMENTS})  # fmt: skip
        api.ok("POST", f"/api/bindings/{v}/e/{EXCHANGE}/e/{EXCHANGE2}", {"routing_key": "a.b"})
        api.ok("POST", f"/api/bindings/{v}/e/{EXCHANGE2}/q/{CONSUMED}", {"routing_key": ""})
        # The connection held open: publishes under confirms, gets and acks one,
        # and consumes with a prefetch of 2, so two deliveries stay unacked.
        self.connection = self.amqp(VHOST, client_properties={"connection_name": CONNECTION_NAME})
        ch = self.channel = self.connection.channel()
        ch.confirm_delivery()
        for i in range(4):
            ch.basic_publish(EXCHANGE, "a.b", f"m{i}".encode(),
                             pika.BasicProperties(delivery_mode=2))  # fmt: skip
        method, _, _ = ch.basic_get(QUEUE)
        ch.basic_ack(method.delivery_tag)
        ch.basic_qos(prefetch_count=2)
        ch.basic_consume(CONSUMED, lambda _c, m, _p, _b: self.delivered.append(m))
        deadline = time.monotonic() + 10
        while len(self.delivered) < 2 and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.1)
        self.values = self.placeholders()

    def placeholders(self) -> dict[str, str]:
        """Path placeholders, URL-encoded; the connection's name and properties keys are read back."""
        v = quote(VHOST)
        connection = None
        deadline = time.monotonic() + 15  # RabbitMQ lists a connection once its stats arrive
        while connection is None and time.monotonic() < deadline:
            connection = next((
                c["name"] for c in self.api.get("/api/connections")
                if c.get("client_properties", {}).get("connection_name") == CONNECTION_NAME
            ), None)  # fmt: skip
            if connection is None:
                time.sleep(0.2)
        if connection is None:
            raise RuntimeError(f"connection {CONNECTION_NAME!r} is not listed")
        queue_props = self.api.get(f"/api/bindings/{v}/e/{EXCHANGE}/q/{QUEUE}")[0]["properties_key"]
        exchange_props = self.api.get(f"/api/bindings/{v}/e/{EXCHANGE}/e/{EXCHANGE2}")[0]["properties_key"]
        return {
            "vhost": v, "queue": quote(QUEUE), "consumed": quote(CONSUMED),
            "root_queue": quote(ROOT_QUEUE), "exchange": quote(EXCHANGE),
            "exchange2": quote(EXCHANGE2), "user": quote(TAG_USERS["management"]),
            "connection": quote(connection), "channel": quote(f"{connection} (1)"),
            "queue_props": quote(queue_props), "exchange_props": quote(exchange_props),
        }  # fmt: skip

    def path(self, template: str) -> str:
        return template.format(**self.values)

    def tear_down(self) -> None:
        if self.connection is not None and self.connection.is_open:
            self.connection.close()
        api = self.api
        for user in TAG_USERS.values():
            api.call("DELETE", f"/api/users/{user}")
        api.call("DELETE", f"/api/queues/%2F/{ROOT_QUEUE}")
        for vhost in (VHOST, "shapes-vh2", "shapes-auth-vh"):
            api.call("DELETE", f"/api/vhosts/{quote(vhost)}")
        api.call("DELETE", "/api/users/shapes-new-user")
        api.call("DELETE", "/api/queues/%2F/shapes-auth-q")


# ------------------------------------------------------------- filtering
SCENE_USERS = {"guest", *TAG_USERS.values()}


def in_scene(item: Any) -> bool:
    """Whether a list item belongs to the scene (the reference may hold other people's things)."""
    if not isinstance(item, dict):
        return True
    if "vhost" in item:
        return item["vhost"] == VHOST
    if "user" in item and "configure" in item:
        return item["user"] in SCENE_USERS
    if isinstance(item.get("queue"), dict):
        return item["queue"].get("vhost") == VHOST
    if "password_hash" in item:
        return item["name"] in SCENE_USERS
    if "cluster_state" in item or "tracing" in item:
        return item["name"] == VHOST
    return True


def scene_only(path: str, body: Any) -> Any:
    """A list answer (or a definitions document's lists) narrowed to the scene's items."""
    if isinstance(body, list) and not path.startswith("/api/nodes"):
        return [item for item in body if in_scene(item)]
    if path.startswith("/api/definitions") and isinstance(body, dict):
        return {k: [i for i in v if in_scene(i)] if isinstance(v, list) else v
                for k, v in body.items()}  # fmt: skip
    return body


def visible_vhosts(body: Any) -> list[str] | None:
    """Which of "/" and the scene's vhost a list answer shows items of (None: not a list)."""
    if not isinstance(body, list):
        return None
    seen = set()
    for item in body:
        if not isinstance(item, dict):
            continue
        vhost = item.get("vhost")
        if vhost is None and isinstance(item.get("queue"), dict):
            vhost = item["queue"].get("vhost")
        if vhost is None and ("cluster_state" in item or "tracing" in item):
            vhost = item.get("name")
        if vhost in ("/", VHOST):
            seen.add(vhost)
    return sorted(seen)


# ---------------------------------------------------------------- record
def record(scene: Scene, samples: Path | None) -> dict[str, Any]:
    api = scene.api
    out: dict[str, Any] = {"shapes": {}, "errors": {}, "writes": {}, "auth": []}

    def sample(name: str, body: Any) -> None:
        if samples is not None:
            safe = name.strip("/").replace("/", "_").replace("{", "").replace("}", "")
            (samples / f"{safe}.json").write_text(json.dumps(body, indent=1, sort_keys=True))

    for template in GET_PATHS:
        status, body, _ = api.call("GET", scene.path(template))
        if status != 200:
            raise RuntimeError(f"GET {template}: {status} {body}")
        sample(template, body)
        out["shapes"][f"GET {template}"] = shape_of(scene_only(template, body))
    for method, template, request in POST_SHAPES:
        status, body, _ = api.call(method, scene.path(template), request)
        if status != 200:
            raise RuntimeError(f"{method} {template}: {status} {body}")
        sample(method + template, body)
        out["shapes"][f"{method} {template}"] = shape_of(body)
    for name, method, template, request, user in ERROR_CASES:
        caller = api
        if user == "bad-password":
            caller = api.as_user("guest", "not-the-password")
        elif user is not None:
            caller = api.as_user(user, PASSWORD)
        status, body, _ = caller.call(method, scene.path(template), request)
        out["errors"][name] = {"method": method, "path": template, "request": request,
                               "user": user, "status": status, "body": body}  # fmt: skip
    for name, method, template, request in WRITE_CASES:
        status, body, headers = api.call(method, scene.path(template), request)
        location = headers.get("Location") or headers.get("location")
        out["writes"][name] = {"method": method, "path": template, "request": request,
                               "status": status, "location": location is not None}  # fmt: skip
    for tag, user in TAG_USERS.items():
        caller = api.as_user(user, PASSWORD)
        for method, template, request in AUTH_CASES:
            status, body, _ = caller.call(method, scene.path(template), request)
            out["auth"].append({"tag": tag, "method": method, "path": template, "request": request,
                                "status": status, "vhosts_seen": visible_vhosts(body),
                                "error": body if status >= 400 else None})  # fmt: skip
        caller.call("DELETE", "/api/queues/%2F/shapes-auth-q")
        api.call("DELETE", f"/api/queues/{quote(VHOST)}/shapes-auth-q")
        api.call("DELETE", "/api/vhosts/shapes-auth-vh")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:15673")
    parser.add_argument("--amqp-host", default="127.0.0.1")
    parser.add_argument("--amqp-port", type=int, default=5673)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("rabbitmq_3_10_shapes.json"))
    parser.add_argument("--samples", type=Path, help="also write every full answer into this folder")
    args = parser.parse_args(argv)
    api = Api(args.api)
    overview = api.get("/api/overview")
    if args.samples is not None:
        args.samples.mkdir(parents=True, exist_ok=True)
    scene = Scene(api, args.amqp_host, args.amqp_port)
    try:
        scene.set_up()
        # RabbitMQ emits statistics every 5 s: wait for the scene's to arrive.
        time.sleep(6)
        recorded = record(scene, args.samples)
    finally:
        scene.tear_down()
    recorded = {"recorded_from": f"RabbitMQ {overview['rabbitmq_version']}", **recorded}
    args.out.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {len(recorded['shapes'])} shapes, {len(recorded['errors'])} errors, "
          f"{len(recorded['writes'])} writes, {len(recorded['auth'])} auth cases")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
