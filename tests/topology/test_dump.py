"""The canonical YAML of a definitions document, and that it reads back the same."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from warrenmq.broker.topology import dump_yaml, load, validate_definitions
from warrenmq.broker.users import HASHES

SHOP = {
    "vhosts": [{"name": "shop", "description": "the shop", "tags": ["production"]}],
    "users": [{"name": "app", "password_hash": "H0DNRX9mxG1gQRzB1Mx7Bf9zfeUPO0DdNNX4xYCbzWzEvOIz",
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {}}],
    "permissions": [{"user": "app", "vhost": "shop", "configure": "^app\\.", "write": ".*", "read": ".*"}],
    "exchanges": [
        {"name": "orders", "vhost": "shop", "type": "topic", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {"alternate-exchange": "unrouted"}},
        {"name": "unrouted", "vhost": "shop", "type": "fanout", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}},
    ],
    "queues": [
        {"name": "orders.created", "vhost": "shop", "durable": True, "auto_delete": False,
         "arguments": {"x-message-ttl": 60000, "x-max-length-bytes": 1073741824, "x-expires": 1500,
                       "x-queue-type": "quorum", "x-dead-letter-exchange": "", "x-other": "kept"}},
    ],
    "bindings": [
        {"source": "orders", "vhost": "shop", "destination": "orders.created",
         "destination_type": "queue", "routing_key": "order.created", "arguments": {}},
        {"source": "orders", "vhost": "shop", "destination": "unrouted",
         "destination_type": "exchange", "routing_key": "", "arguments": {}},
    ],
}  # fmt: skip

SHOP_YAML = """\
vhosts:
  - name: shop
    description: the shop
    tags:
      - production
users:
  - name: app
    password_hash: H0DNRX9mxG1gQRzB1Mx7Bf9zfeUPO0DdNNX4xYCbzWzEvOIz
permissions:
  - user: app
    vhost: shop
    configure: ^app\\.
    write: .*
    read: .*
exchanges:
  - name: orders
    vhost: shop
    type: topic
    alternate-exchange: unrouted
  - name: unrouted
    vhost: shop
    type: fanout
queues:
  - name: orders.created
    vhost: shop
    type: quorum
    ttl: 1m
    expires: 1500ms
    max-length-bytes: 1GiB
    dead-letter-exchange: ''
    arguments:
      x-other: kept
bindings:
  - vhost: shop
    from: orders
    to-exchange: unrouted
  - vhost: shop
    from: orders
    to: orders.created
    routing-key: order.created
"""


def test_the_canonical_form() -> None:
    assert dump_yaml(SHOP) == SHOP_YAML


def test_entities_are_written_sorted_whatever_the_input_order() -> None:
    reordered = {**SHOP, "exchanges": SHOP["exchanges"][::-1], "bindings": SHOP["bindings"][::-1]}
    assert dump_yaml(reordered) == SHOP_YAML


def test_values_that_are_not_friendly_stay_in_arguments() -> None:
    doc = {"queues": [{"name": "q", "vhost": "/", "durable": False, "auto_delete": True,
                       "arguments": {"x-queue-type": "classic", "x-max-length-bytes": 1500}}],
           "exchanges": [{"name": "x", "vhost": "/", "type": "direct", "durable": True,
                          "auto_delete": False, "internal": False, "arguments": {"x-delayed-type": "topic"}}]}  # fmt: skip
    text = dump_yaml(doc)
    assert text == (
        "exchanges:\n  - name: x\n    arguments:\n      x-delayed-type: topic\n"
        "queues:\n  - name: q\n    durable: false\n    auto-delete: true\n    max-length-bytes: 1500\n"
        "    arguments:\n      x-queue-type: classic\n"
    )
    assert load(text=text).definitions["queues"][0]["arguments"] == doc["queues"][0]["arguments"]


def test_an_empty_document() -> None:
    assert dump_yaml({}) == "{}\n"
    assert load(text=dump_yaml({})).definitions["queues"] == []


# ------------------------------------------------------------------ generated
TRICKY = ["yes", "no", "on", "null", "1", "0x1f", "1e3", "~", "-", "*star", "&amp", "'q'", "a: b",
          "#hash", "%p", "@at", "`tick", "x\ty", "ünï", " lead", "trail ", "a\"b", "[x]", "{y}", "!t"]  # fmt: skip
NAMES = st.one_of(
    st.text(alphabet="abcdefxyz0123456789.-_", min_size=1, max_size=8),
    st.sampled_from(TRICKY),
).filter(lambda n: not n.startswith("amq."))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)
REGEXES = st.sampled_from(["", ".*", "^app\\.", "^(a|b)$", "[x-z]+"])
TYPES = ["direct", "fanout", "topic", "headers", "x-consistent-hash", "x-delayed-message"]
DURATION = st.one_of(
    st.integers(0, 315_360_000_000), st.sampled_from([0, 1000, 60_000, 1500, 86_400_000])
)
SIZE = st.one_of(st.integers(0, 2**50), st.sampled_from([0, 1024**3, 10**6, 1536, 5 * 1000**4]))


def _tags(draw: Any) -> list[str]:
    return draw(st.lists(NAMES.filter(lambda t: "," not in t and t.strip() == t), max_size=2))


@st.composite
def definitions(draw: Any) -> dict[str, Any]:
    vhost_names = draw(st.lists(NAMES | st.just("/"), unique=True, max_size=2))
    vhosts = [
        {"name": v, "description": draw(st.text(max_size=8)), "tags": _tags(draw)}
        for v in vhost_names
    ]
    all_vhosts = list(dict.fromkeys(["/", *vhost_names]))
    user_names = draw(st.lists(NAMES, unique=True, max_size=2))
    users = [{"name": u, "password_hash": draw(st.text(max_size=10)),
              "hashing_algorithm": draw(st.sampled_from(sorted(HASHES))), "tags": _tags(draw),
              "limits": draw(st.sampled_from([{}, {"max-connections": 5}]))} for u in user_names]  # fmt: skip
    permissions = [
        {"user": u, "vhost": v, "configure": draw(REGEXES), "write": draw(REGEXES), "read": draw(REGEXES)}
        for u in user_names for v in all_vhosts if draw(st.booleans())
    ]  # fmt: skip
    exchanges: list[dict[str, Any]] = []
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for vhost in all_vhosts:
        x_names = draw(st.lists(NAMES, unique=True, max_size=3))
        x_types = {x: draw(st.sampled_from(TYPES)) for x in x_names}
        for x in x_names:
            arguments: dict[str, Any] = {}
            if x_types[x] == "x-delayed-message":
                arguments["x-delayed-type"] = draw(st.sampled_from(["direct", "fanout", "topic"]))
            if x_names and draw(st.booleans()):
                arguments["alternate-exchange"] = draw(
                    st.sampled_from([*x_names, "amq.fanout", ""])
                )
            if draw(st.booleans()):
                arguments["x-custom"] = draw(VALUES)
            exchanges.append({"name": x, "vhost": vhost, "type": x_types[x], "durable": draw(st.booleans()),
                              "auto_delete": draw(st.booleans()), "internal": draw(st.booleans()),
                              "arguments": arguments})  # fmt: skip
        q_names = draw(st.lists(NAMES, unique=True, max_size=3))
        for q in q_names:
            arguments = {}
            optional = {
                "x-message-ttl": DURATION, "x-expires": DURATION.map(lambda d: d or 1),
                "x-max-length": st.integers(0, 10**9), "x-max-length-bytes": SIZE,
                "x-overflow": st.sampled_from(["drop-head", "reject-publish", "reject-publish-dlx"]),
                "x-max-priority": st.integers(0, 255), "x-single-active-consumer": st.booleans(),
                "x-delivery-limit": st.integers(0, 100),
                "x-queue-type": st.sampled_from(["classic", "quorum", "stream"]),
                "x-dead-letter-exchange": st.sampled_from(["", "amq.direct", *x_names]),
                "x-custom": VALUES,
            }  # fmt: skip
            for key, strategy in optional.items():
                if draw(st.integers(0, 3)) == 0:
                    arguments[key] = draw(strategy)
            if "x-dead-letter-exchange" in arguments and draw(st.booleans()):
                arguments["x-dead-letter-routing-key"] = draw(NAMES)
            queues.append({"name": q, "vhost": vhost, "durable": draw(st.booleans()),
                           "auto_delete": draw(st.booleans()), "arguments": arguments})  # fmt: skip
        sources = [*x_names, "amq.direct", "amq.topic"]
        for _ in range(draw(st.integers(0, 4))):
            source = draw(st.sampled_from(sources))
            to_exchange = bool(x_names) and draw(st.booleans())
            if not to_exchange and not q_names:
                continue
            destination = draw(st.sampled_from(x_names if to_exchange else q_names))
            source_type = x_types.get(source, "direct")
            key = (
                str(draw(st.integers(1, 9)))
                if source_type == "x-consistent-hash"
                else draw(NAMES | st.just(""))
            )
            arguments = {}
            if source_type == "headers" and draw(st.booleans()):
                arguments = {"x-match": draw(st.sampled_from(["all", "any"])), "h": draw(NAMES)}
            bindings.append({"source": source, "vhost": vhost, "destination": destination,
                             "destination_type": "exchange" if to_exchange else "queue",
                             "routing_key": key, "arguments": arguments})  # fmt: skip
    return {"vhosts": vhosts, "users": users, "permissions": permissions, "exchanges": exchanges,
            "queues": queues, "bindings": bindings}  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definitions())
def test_dump_reads_back_to_the_same_definitions(d: dict[str, Any]) -> None:
    assume(validate_definitions(d) == [])
    text = dump_yaml(d)
    loaded = load("dumped.yaml", text=text).definitions
    assert dump_yaml(loaded) == text
    as_definitions = load(
        "defs.json", text=json.dumps({"rabbit_version": "3.10.8", **d})
    ).definitions
    assert loaded == as_definitions
