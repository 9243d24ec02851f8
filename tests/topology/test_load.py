"""Loading valid topologies: the YAML format and definitions documents, to definitions form."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.broker import BrokerProcess

from warrenmq.broker.topology import Topology, TopologyError, load
from warrenmq.broker.users import check_password

SHOP = """\
vhosts:
  - name: shop
    description: the shop
    tags: [production]
users:
  - name: app
    password: s3cret
    tags: [management]
  - name: ops
    password_hash: H0DNRX9mxG1gQRzB1Mx7Bf9zfeUPO0DdNNX4xYCbzWzEvOIz
    hashing_algorithm: rabbit_password_hashing_sha512
permissions:
  - {user: app, vhost: shop, configure: "^app\\\\.", write: ".*", read: ".*"}
exchanges:
  - name: orders
    vhost: shop
    type: topic
    alternate-exchange: orders.unrouted
  - name: orders.unrouted
    vhost: shop
    type: fanout
  - name: later
    vhost: shop
    type: x-delayed-message
    delayed-type: topic
    arguments: {x-custom: 1}
  - name: dlx
    vhost: shop
  - name: scratch
    type: headers
    durable: false
    auto-delete: true
    internal: true
queues:
  - name: orders.created
    vhost: shop
    type: quorum
    ttl: 30s
    expires: 10m
    max-length: 1000
    max-length-bytes: 1GiB
    overflow: reject-publish
    dead-letter-exchange: dlx
    dead-letter-routing-key: k
    max-priority: 10
    single-active-consumer: true
    delivery-limit: 5
    arguments: {x-queue-mode: lazy, x-message-ttl: 30000}
  - name: plain
bindings:
  - vhost: shop
    from: orders
    to: orders.created
    routing-key: order.created
  - vhost: shop
    from: orders
    to-exchange: later
  - from: amq.topic
    to: plain
    routing-key: "#"
"""


def _shop() -> Topology:
    return load("shop.yaml", text=SHOP)


def test_vhosts_users_and_permissions_take_definitions_form() -> None:
    d = _shop().definitions
    assert d["vhosts"] == [{"name": "shop", "description": "the shop", "tags": ["production"]}]
    app, ops = d["users"]
    assert app["name"] == "app" and app["tags"] == ["management"] and app["limits"] == {}
    assert app["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert check_password(app["password_hash"], "s3cret") and not check_password(
        app["password_hash"], "x"
    )
    assert ops == {"name": "ops", "password_hash": "H0DNRX9mxG1gQRzB1Mx7Bf9zfeUPO0DdNNX4xYCbzWzEvOIz",
                   "hashing_algorithm": "rabbit_password_hashing_sha512", "tags": [], "limits": {}}  # fmt: skip
    assert d["permissions"] == [
        {"user": "app", "vhost": "shop", "configure": "^app\\.", "write": ".*", "read": ".*"}
    ]


def test_clear_passwords_are_kept_apart_for_comparison() -> None:
    assert _shop().passwords == {"app": "s3cret"}


def test_exchanges_defaults_and_friendly_arguments() -> None:
    exchanges = {x["name"]: x for x in _shop().definitions["exchanges"]}
    assert exchanges["orders"] == {
        "name": "orders", "vhost": "shop", "type": "topic", "durable": True, "auto_delete": False,
        "internal": False, "arguments": {"alternate-exchange": "orders.unrouted"},
    }  # fmt: skip
    assert exchanges["scratch"] == {
        "name": "scratch", "vhost": "/", "type": "headers", "durable": False, "auto_delete": True,
        "internal": True, "arguments": {},
    }  # fmt: skip
    assert exchanges["later"]["arguments"] == {"x-custom": 1, "x-delayed-type": "topic"}
    assert exchanges["dlx"]["type"] == "direct"


def test_queue_friendly_keys_become_arguments_in_rabbitmq_units() -> None:
    queues = {q["name"]: q for q in _shop().definitions["queues"]}
    assert queues["orders.created"] == {
        "name": "orders.created", "vhost": "shop", "durable": True, "auto_delete": False,
        "arguments": {
            "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "k", "x-delivery-limit": 5,
            "x-expires": 600_000, "x-max-length": 1000, "x-max-length-bytes": 1024**3,
            "x-max-priority": 10, "x-message-ttl": 30_000, "x-overflow": "reject-publish",
            "x-queue-mode": "lazy", "x-queue-type": "quorum", "x-single-active-consumer": True,
        },
    }  # fmt: skip
    assert queues["plain"] == {"name": "plain", "vhost": "/", "durable": True, "auto_delete": False,
                               "arguments": {}}  # fmt: skip


def test_classic_queue_type_writes_no_argument() -> None:
    d = load("q.yaml", text="queues: [{name: q, type: classic}]").definitions
    assert d["queues"][0]["arguments"] == {}


def test_bindings_and_sorting() -> None:
    assert _shop().definitions["bindings"] == [
        {"source": "amq.topic", "vhost": "/", "destination": "plain", "destination_type": "queue",
         "routing_key": "#", "arguments": {}},
        {"source": "orders", "vhost": "shop", "destination": "later", "destination_type": "exchange",
         "routing_key": "", "arguments": {}},
        {"source": "orders", "vhost": "shop", "destination": "orders.created",
         "destination_type": "queue", "routing_key": "order.created", "arguments": {}},
    ]  # fmt: skip
    names = [(q["vhost"], q["name"]) for q in _shop().definitions["queues"]]
    assert names == sorted(names)


def test_the_default_vhost_is_listed_only_when_declared() -> None:
    assert load("a.yaml", text="queues: [{name: q}]").definitions["vhosts"] == []
    declared = load("b.yaml", text="vhosts: [{name: /}]\nqueues: [{name: q}]").definitions["vhosts"]
    assert declared == [{"name": "/", "description": "", "tags": []}]


def test_every_section_is_present_even_when_empty() -> None:
    d = load("empty.yaml", text="").definitions
    assert d == {
        "vhosts": [],
        "users": [],
        "permissions": [],
        "exchanges": [],
        "queues": [],
        "bindings": [],
    }


def test_the_same_entity_twice_with_the_same_settings_is_one() -> None:
    d = load(
        "twice.yaml",
        text="queues: [{name: q, ttl: 1s}, {name: q, arguments: {x-message-ttl: 1000}}]",
    )
    assert len(d.definitions["queues"]) == 1


def test_location_points_at_each_entity() -> None:
    topology = _shop()
    assert topology.location("vhost", None, "shop") == ("shop.yaml", 2)
    assert topology.location("user", None, "ops") == ("shop.yaml", 9)
    assert topology.location("permission", "shop", "app") == ("shop.yaml", 13)
    assert topology.location("exchange", "shop", "later") == ("shop.yaml", 22)
    assert topology.location("queue", "/", "plain") == ("shop.yaml", 49)
    binding = topology.definitions["bindings"][0]
    assert topology.location("binding", "/", binding) == ("shop.yaml", 58)
    assert topology.location("queue", "shop", "plain") is None


def test_the_documented_example_loads() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "topology.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    topology = load("shop.yaml", text=example)
    assert [r.queue for r in topology.retries] == ["orders.created"]
    assert topology.location("exchange", "shop", "orders.created.retry") is not None


def test_load_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text("queues: [{name: q}]\n")
    assert load(path).location("queue", "/", "q") == (str(path), 1)
    with pytest.raises(TopologyError, match="cannot read the topology"):
        load(tmp_path / "missing.yaml")


# ------------------------------------------------------- definitions documents
EXPORT = {
    "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8", "product_name": "warrenmq",
    "product_version": "0.1.0", "topic_permissions": [], "parameters": [], "global_parameters": [],
    "policies": [],
    "users": [{"name": "guest", "password_hash": "H0DNRX9mxG1gQRzB1Mx7Bf9zfeUPO0DdNNX4xYCbzWzEvOIz",
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"],
               "limits": {}}],
    "vhosts": [{"name": "/", "description": "", "tags": [], "metadata": {"description": "", "tags": []}},
               {"name": "shop", "metadata": {"description": "the shop", "tags": ["a", "b"]}}],
    "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    "queues": [{"name": "q1", "durable": True, "auto_delete": False,
                "arguments": {"x-message-ttl": 3000, "x-queue-type": "quorum"}, "vhost": "shop"}],
    "exchanges": [{"name": "orders", "type": "topic", "durable": True, "auto_delete": False,
                   "internal": False, "arguments": {}, "vhost": "shop"}],
    "bindings": [{"source": "orders", "destination": "q1", "destination_type": "queue",
                  "routing_key": "a.#", "arguments": {}, "vhost": "shop"}],
}  # fmt: skip


def test_a_json_definitions_export_is_read_as_such() -> None:
    d = load("defs.json", text=json.dumps(EXPORT, indent=2)).definitions
    assert d["vhosts"] == [{"name": "/", "description": "", "tags": []},
                           {"name": "shop", "description": "the shop", "tags": ["a", "b"]}]  # fmt: skip
    assert d["users"] == EXPORT["users"]
    assert d["permissions"] == EXPORT["permissions"]
    assert d["queues"] == [{"name": "q1", "vhost": "shop", "durable": True, "auto_delete": False,
                            "arguments": {"x-message-ttl": 3000, "x-queue-type": "quorum"}}]  # fmt: skip
    assert d["exchanges"] == [{k: EXPORT["exchanges"][0][k] for k in
                               ("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments")}]  # fmt: skip
    assert d["bindings"] == EXPORT["bindings"]


def test_definitions_are_told_by_content_not_by_file_name() -> None:
    minimal = json.dumps({"queues": [{"name": "q", "vhost": "/", "durable": True,
                                      "auto_delete": False, "arguments": {}}]})  # fmt: skip
    assert load("topology.yaml", text=minimal).definitions["queues"][0]["name"] == "q"
    # The same key in the YAML format is a friendly queue: `auto_delete` is not one of its keys.
    with pytest.raises(TopologyError, match="unknown key 'auto_delete'"):
        load("topology.yaml", text="queues:\n  - {name: q, auto_delete: false}\n")
    versioned = "rabbit_version: 3.10.8\nqueues:\n  - {name: q, auto_delete: true}\n"
    assert load("defs.yaml", text=versioned).definitions["queues"][0]["auto_delete"] is True


def test_a_definitions_document_is_not_changed_by_loading() -> None:
    doc = json.loads(json.dumps(EXPORT))
    load("defs.json", text=json.dumps(doc))
    assert doc == EXPORT


# ------------------------------------------------------- a live broker's export
def _api(broker: BrokerProcess, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        broker.management_url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None


@pytest.fixture(scope="module")
def broker() -> Any:
    base = Path(tempfile.mkdtemp(prefix="warrenmq-topology-"))
    process = BrokerProcess(base)
    try:
        yield process.start()
    finally:
        try:
            process.stop()
        finally:
            process.kill()
            shutil.rmtree(base, ignore_errors=True)


def test_a_live_export_loads_and_a_loaded_file_imports(broker: BrokerProcess) -> None:
    topology = _shop()
    guest = {"name": "guest", "password": "guest", "tags": ["administrator"]}
    doc = dict(topology.definitions)
    doc["users"] = [*doc["users"], guest]
    doc["permissions"] = [*doc["permissions"],
                          {"user": "guest", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"}]  # fmt: skip
    _api(broker, "POST", "/api/definitions", doc)
    export = _api(broker, "GET", "/api/definitions")
    again = load("export.json", text=json.dumps(export)).definitions
    for section in ("exchanges", "queues", "bindings"):
        durable = [item for item in topology.definitions[section] if item.get("durable", True)]
        if section == "bindings":
            transient = {x["name"] for x in topology.definitions["exchanges"] if not x["durable"]}
            durable = [
                b
                for b in durable
                if b["source"] not in transient and b["destination"] not in transient
            ]
        assert again[section] == durable, section
    shop = [v for v in again["vhosts"] if v["name"] == "shop"]
    assert shop == topology.definitions["vhosts"]
