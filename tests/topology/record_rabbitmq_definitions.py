"""Record a real RabbitMQ definitions export, for the round-trip test of `test_roundtrip.py`.

Run by hand against a reference node (RabbitMQ 3.10 with the management plugin):

    .venv/bin/python tests/topology/record_rabbitmq_definitions.py \\
        [--api http://127.0.0.1:15673] [--out FILE]

It builds a varied topology through the HTTP API: two vhosts (one with a
description and tags), two users (tags, one with none), permissions, an
exchange of each type the node has, queues with the common arguments,
queue and exchange-to-exchange bindings with and without arguments. Then
it reads `GET /api/definitions`, keeps only what it built (the node may
hold other things), writes that to `rabbitmq_3_10_definitions.json`, and
removes everything it built.
"""

from __future__ import annotations

import argparse
import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).parent
VHOSTS = {"topology-orders": {"description": "order processing", "tags": "production,eu"}, "topology-billing": {}}
USERS = {
    "topology-alice": {"password": "alice-secret", "tags": "administrator"},
    "topology-bob": {"password": "bob-secret", "tags": "monitoring,management"},
    "topology-carol": {"password": "carol-secret", "tags": ""},
}
PERMISSIONS = [
    ("topology-alice", "topology-orders", ".*", ".*", ".*"),
    ("topology-bob", "topology-orders", "^$", "^orders\\.", ".*"),
    ("topology-carol", "topology-billing", "", "", "^invoices$"),
    ("guest", "topology-orders", ".*", ".*", ".*"),
    ("guest", "topology-billing", ".*", ".*", ".*"),
]
EXCHANGES = [
    ("topology-orders", "orders.events", "topic", {"durable": True, "auto_delete": False, "internal": False,
                                          "arguments": {"alternate-exchange": "orders.unrouted"}}),
    ("topology-orders", "orders.unrouted", "fanout", {"durable": True, "auto_delete": False, "internal": False,
                                             "arguments": {}}),
    ("topology-orders", "orders.by-region", "direct", {"durable": True, "auto_delete": False, "internal": True,
                                              "arguments": {}}),
    ("topology-orders", "orders.match", "headers", {"durable": True, "auto_delete": False, "internal": False,
                                           "arguments": {}}),
    ("topology-orders", "orders.shards", "x-consistent-hash", {"durable": True, "auto_delete": False,
                                                      "internal": False, "arguments": {}}),
    ("topology-billing", "billing.in", "direct", {"durable": True, "auto_delete": False, "internal": False,
                                         "arguments": {}}),
]  # fmt: skip
QUEUES = [
    ("topology-orders", "orders.work", {"x-message-ttl": 30000, "x-dead-letter-exchange": "orders.unrouted",
                               "x-dead-letter-routing-key": "dead", "x-max-length": 10000}),
    ("topology-orders", "orders.dead", {"x-max-length-bytes": 1073741824, "x-overflow": "reject-publish"}),
    ("topology-orders", "orders.eu", {"x-max-priority": 5}),
    ("topology-orders", "orders.shard-1", {}),
    ("topology-orders", "orders.shard-2", {}),
    ("topology-orders", "orders.lazy", {"x-queue-mode": "lazy", "x-expires": 86400000}),
    ("topology-orders", "orders.sac", {"x-single-active-consumer": True}),
    ("topology-billing", "invoices", {"x-queue-type": "classic"}),
]
BINDINGS = [
    ("topology-orders", "orders.events", "q", "orders.work", "order.*", {}),
    ("topology-orders", "orders.events", "e", "orders.by-region", "order.eu.#", {}),
    ("topology-orders", "orders.by-region", "q", "orders.eu", "eu", {}),
    ("topology-orders", "orders.unrouted", "q", "orders.dead", "", {}),
    ("topology-orders", "orders.match", "q", "orders.eu", "", {"x-match": "all", "region": "eu", "tier": 1}),
    ("topology-orders", "orders.match", "q", "orders.work", "", {"x-match": "any", "urgent": True}),
    ("topology-orders", "orders.shards", "q", "orders.shard-1", "1", {}),
    ("topology-orders", "orders.shards", "q", "orders.shard-2", "2", {}),
    ("topology-billing", "billing.in", "q", "invoices", "invoice", {}),
    ("topology-billing", "billing.in", "q", "invoices", "credit-note", {}),
]


class Api:
    def __init__(self, base: str, user: str = "guest", password: str = "guest") -> None:
        self.base = base.rstrip("/")
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())  # fmt: skip
        request.add_header("Authorization", self.auth)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None


def path(*segments: str) -> str:
    return "/api/" + "/".join(quote(s, safe="") for s in segments)


def build(api: Api) -> None:
    for name, body in VHOSTS.items():
        api("PUT", path("vhosts", name), body)
    for name, body in USERS.items():
        api("PUT", path("users", name), body)
    for user, vhost, configure, write, read in PERMISSIONS:
        api("PUT", path("permissions", vhost, user), {"configure": configure, "write": write, "read": read})
    for vhost, name, type_name, body in EXCHANGES:
        api("PUT", path("exchanges", vhost, name), {"type": type_name, **body})
    for vhost, name, arguments in QUEUES:
        api("PUT", path("queues", vhost, name), {"durable": True, "auto_delete": False, "arguments": arguments})
    for vhost, source, kind, destination, key, arguments in BINDINGS:
        api("POST", path("bindings", vhost, "e", source, kind, destination),
            {"routing_key": key, "arguments": arguments})  # fmt: skip


def remove(api: Api) -> None:
    for name in VHOSTS:
        try:
            api("DELETE", path("vhosts", name))
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
    for name in USERS:
        try:
            api("DELETE", path("users", name))
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


def ours(doc: dict[str, Any]) -> dict[str, Any]:
    """Only what build() made (and guest): the node may hold other vhosts, users and leftovers."""
    out = {k: doc[k] for k in ("rabbit_version", "rabbitmq_version", "product_name", "product_version")}
    # guest too: the permissions name it, and a topology declares the users it names.
    out["users"] = [u for u in doc["users"] if u["name"] in USERS or u["name"] == "guest"]
    out["vhosts"] = [v for v in doc["vhosts"] if v["name"] in VHOSTS]
    for key in ("permissions", "topic_permissions", "parameters", "policies", "queues", "exchanges",
                "bindings"):  # fmt: skip
        out[key] = [item for item in doc.get(key, []) if item.get("vhost") in VHOSTS]
    out["global_parameters"] = []
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:15673")
    parser.add_argument("--out", type=Path, default=HERE / "rabbitmq_3_10_definitions.json")
    args = parser.parse_args()
    api = Api(args.api)
    remove(api)  # leftovers of an interrupted run
    try:
        build(api)
        doc = ours(api("GET", "/api/definitions"))
    finally:
        remove(api)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}: " + ", ".join(f"{len(doc[k])} {k}" for k in (
        "vhosts", "users", "permissions", "exchanges", "queues", "bindings")))  # fmt: skip


if __name__ == "__main__":
    main()
