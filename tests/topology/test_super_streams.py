"""The `super-streams` shorthand: its expansion, its problems, its dump, and the streams on a broker."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.broker import BrokerProcess

from warrenmq.broker.topology import SuperStream, TopologyError, dump_yaml, load
from warrenmq.broker.topology.superstream import parse_max_age

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "topology.schema.json").read_text("utf-8")
)
INVOICES = """\
vhosts:
  - name: shop
super-streams:
  - name: invoices
    vhost: shop
    partitions: 3
    max-age: 7D
    max-length-bytes: 20GB
"""
REGIONS = """\
super-streams:
  - name: orders
    routing-keys:
      - amer
      - emea
      - apac
"""


def _exchange(name: str, vhost: str) -> dict[str, Any]:
    return {"name": name, "vhost": vhost, "type": "direct", "durable": True, "auto_delete": False,
            "internal": False, "arguments": {"x-super-stream": True}}  # fmt: skip


def _stream(name: str, vhost: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False,
            "arguments": {**arguments, "x-queue-type": "stream"}}  # fmt: skip


def _binding(source: str, vhost: str, key: str, order: int) -> dict[str, Any]:
    return {"source": source, "vhost": vhost, "destination": f"{source}-{key}",
            "destination_type": "queue", "routing_key": key,
            "arguments": {"x-stream-partition-order": order}}  # fmt: skip


def _problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        load("s.yaml", text=text)
    return [str(p) for p in info.value.problems]


# ------------------------------------------------------------------ expansion
def test_partitions_expand_to_an_exchange_streams_and_ordered_bindings() -> None:
    d = load("s.yaml", text=INVOICES).definitions
    assert d["exchanges"] == [_exchange("invoices", "shop")]
    retention = {"x-max-age": "7D", "x-max-length-bytes": 20_000_000_000}
    assert d["queues"] == [_stream(f"invoices-{i}", "shop", **retention) for i in range(3)]
    assert d["bindings"] == [_binding("invoices", "shop", str(i), i) for i in range(3)]
    assert [list(q["arguments"]) for q in d["queues"]] == [
        ["x-max-age", "x-max-length-bytes", "x-queue-type"]
    ] * 3


def test_routing_keys_name_the_partitions_in_the_order_given() -> None:
    d = load("s.yaml", text=REGIONS).definitions
    assert d["exchanges"] == [_exchange("orders", "/")]
    assert d["queues"] == [_stream(f"orders-{k}", "/") for k in ("amer", "apac", "emea")]
    orders = {b["routing_key"]: b["arguments"]["x-stream-partition-order"] for b in d["bindings"]}
    assert orders == {"amer": 0, "emea": 1, "apac": 2}
    assert sorted(d["bindings"], key=lambda b: b["arguments"]["x-stream-partition-order"]) == [
        _binding("orders", "/", key, order) for order, key in enumerate(("amer", "emea", "apac"))
    ]


def test_other_arguments_go_to_every_partition_as_they_are() -> None:
    text = (
        "super-streams:\n  - name: s\n    partitions: 2\n    stream-max-segment-size-bytes: 1MiB\n"
        "    arguments: {x-queue-leader-locator: balanced, x-queue-type: stream}\n"
    )
    queues = load("s.yaml", text=text).definitions["queues"]
    assert [q["arguments"] for q in queues] == [{
        "x-queue-leader-locator": "balanced", "x-queue-type": "stream",
        "x-stream-max-segment-size-bytes": 1_048_576,
    }] * 2  # fmt: skip


def test_the_super_stream_is_recorded_with_its_partitions() -> None:
    topology = load("s.yaml", text=INVOICES + REGIONS.removeprefix("super-streams:\n"))
    invoices, orders = topology.super_streams
    assert invoices == SuperStream("shop", "invoices", ("0", "1", "2"),
                                   {"x-max-age": "7D", "x-max-length-bytes": 20_000_000_000},
                                   "super-streams[0]", 4)  # fmt: skip
    assert invoices.partitions == ("invoices-0", "invoices-1", "invoices-2")
    assert invoices.numbered
    assert orders == SuperStream("/", "orders", ("amer", "emea", "apac"), {}, "super-streams[1]", 9)
    assert orders.partitions == ("orders-amer", "orders-emea", "orders-apac")
    assert not orders.numbered


def test_expanded_entities_point_at_the_super_stream_entry() -> None:
    topology = load("s.yaml", text=INVOICES)
    assert topology.location("exchange", "shop", "invoices") == ("s.yaml", 4)
    assert topology.location("queue", "shop", "invoices-2") == ("s.yaml", 4)
    binding = _binding("invoices", "shop", "1", 1)
    assert topology.location("binding", "shop", binding) == ("s.yaml", 4)


def test_an_identical_declaration_in_the_file_is_the_same_entity() -> None:
    text = REGIONS + (
        "queues:\n  - name: orders-emea\n    type: stream\n"
        "exchanges:\n  - name: orders\n    arguments: {x-super-stream: true}\n"
    )
    topology = load("s.yaml", text=text)
    assert topology.location("queue", "/", "orders-emea") == ("s.yaml", 8)
    assert topology.location("exchange", "/", "orders") == ("s.yaml", 11)
    assert topology.location("queue", "/", "orders-amer") == ("s.yaml", 2)
    assert len(topology.definitions["queues"]) == 3


def test_the_documented_example_expands_as_the_documentation_says() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "topology.md").read_text("utf-8")
    section = doc.split("## Super streams\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    topology = load("doc.yaml", text=example)
    assert [(s.name, s.partitions) for s in topology.super_streams] == [
        ("invoices", ("invoices-0", "invoices-1", "invoices-2")),
        ("orders", ("orders-amer", "orders-emea", "orders-apac")),
    ]
    assert topology.definitions["queues"][0]["arguments"] == {
        "x-max-age": "7D",
        "x-max-length-bytes": 20_000_000_000,
        "x-queue-type": "stream",
    }


# ------------------------------------------------------------------ conflicts
def test_a_partition_declared_otherwise_is_an_error_naming_both_lines() -> None:
    text = REGIONS + "queues:\n  - name: orders-emea\n    max-length: 10\n"
    assert _problems(text) == [
        "s.yaml:2: super-streams[0]: queue 'orders-emea' in vhost '/' is declared at line 8 "
        "(queues[0]) with other settings than this super stream needs (arguments.x-max-length: "
        '10 vs none, arguments.x-queue-type: none vs "stream")'
    ]


def test_an_exchange_declared_otherwise_is_an_error_naming_both_lines() -> None:
    text = "exchanges:\n  - name: orders\n    type: topic\n" + REGIONS
    assert _problems(text) == [
        "s.yaml:5: super-streams[0]: exchange 'orders' in vhost '/' is declared at line 2 "
        '(exchanges[0]) with other settings than this super stream needs (type: "topic" vs '
        '"direct", arguments.x-super-stream: none vs true)'
    ]


def test_a_super_stream_declared_twice_with_other_partitions() -> None:
    text = "super-streams:\n  - {name: s, partitions: 2}\n  - {name: s, partitions: 3}\n"
    assert _problems(text) == [
        "s.yaml:3: super-streams[1]: super stream 's' in vhost '/' is declared again with other "
        'settings than at line 2 (super-streams[0]): routing-keys: ["0", "1"] vs ["0", "1", "2"]'
    ]
    twice = (
        "super-streams:\n  - {name: s, partitions: 2}\n  - {name: s, routing-keys: ['0', '1']}\n"
    )
    assert len(load("s.yaml", text=twice).definitions["queues"]) == 2


def test_a_partition_of_two_super_streams_is_an_error() -> None:
    text = "super-streams:\n  - {name: s, routing-keys: [a-0]}\n  - {name: s-a, partitions: 1}\n"
    assert _problems(text) == [
        "s.yaml:3: super-streams[1]: queue 's-a-0' in vhost '/' is a partition of super stream "
        "'s' at line 2 (super-streams[0]) already"
    ]


def test_a_clash_with_a_retry_ladder_names_the_ladder() -> None:
    text = (
        "retry:\n  - {queue: s-0, delays: [1s], then: parked}\n"
        "super-streams:\n  - {name: s, partitions: 1}\n"
    )
    assert _problems(text) == [
        "s.yaml:4: super-streams[0]: queue 's-0' in vhost '/' is declared at line 2 (retry[0]) "
        "with other settings than this super stream needs (arguments.x-dead-letter-exchange: "
        '"s-0.retry" vs none, arguments.x-queue-type: none vs "stream")'
    ]


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("    partitions: 0\n",
         "s.yaml:3: super-streams[0].partitions: must be a whole number from 1 to 1024, not 0"),
        ("    partitions: 1025\n",
         "s.yaml:3: super-streams[0].partitions: must be a whole number from 1 to 1024, not 1025"),
        ("    partitions: true\n",
         "s.yaml:3: super-streams[0].partitions: must be a whole number from 1 to 1024, not True"),
        ("    partitions: '3'\n",
         "s.yaml:3: super-streams[0].partitions: must be a whole number from 1 to 1024, not '3'"),
        ("    partitions: 2\n    routing-keys: [a, b]\n",
         "s.yaml:4: super-streams[0].routing-keys: give either partitions or routing-keys, not both"),
        ("    max-age: 7D\n",
         "s.yaml:2: super-streams[0].partitions: one of partitions or routing-keys is required"),
        ("    routing-keys: []\n",
         "s.yaml:3: super-streams[0].routing-keys: must be a non-empty list of routing keys, not []"),
        ("    routing-keys:\n      - a\n      - ''\n",
         "s.yaml:5: super-streams[0].routing-keys[1]: must be a non-empty string, not ''"),
        ("    routing-keys:\n      - a\n      - 2\n",
         "s.yaml:5: super-streams[0].routing-keys[1]: must be a non-empty string "
         "(write it in quotes), not 2"),
        ("    routing-keys:\n      - amer\n      - emea\n      - amer\n",
         "s.yaml:6: super-streams[0].routing-keys[2]: repeats routing-keys[0] ('amer'): "
         "each partition needs a key of its own"),
        ("    routing-keys:\n      - " + "k" * 250 + "\n",
         "s.yaml:4: super-streams[0].routing-keys[0]: makes the partition name 'invoices-"
         + "k" * 250 + "' 259 bytes long; a queue name is at most 255 bytes"),
        ("    partitions: 1\n    max-age: 7d\n",
         "s.yaml:4: super-streams[0].max-age: must be an age such as 7D, 12h or 30m: digits and "
         "one unit of Y, M, D, h, m, s (M is months, m minutes), not '7d'"),
        ("    partitions: 1\n    max-age: 0D\n",
         "s.yaml:4: super-streams[0].max-age: must be an age such as 7D, 12h or 30m: digits and "
         "one unit of Y, M, D, h, m, s (M is months, m minutes), not '0D'"),
        ("    partitions: 1\n    max-length-bytes: 20G\n",
         "s.yaml:4: super-streams[0].max-length-bytes: must be a size such as 1048576, 512KB or "
         "1GiB (a whole number of bytes), not '20G'"),
        ("    partitions: 1\n    max-length-bytes: 1KB\n    arguments:\n      x-max-length-bytes: 1024\n",
         "s.yaml:4: super-streams[0].max-length-bytes: 1000 conflicts with "
         "arguments.x-max-length-bytes: 1024"),
        ("    partitions: 1\n    arguments:\n      x-message-ttl: 1000\n",
         "s.yaml:5: super-streams[0].arguments.x-message-ttl: refused for a stream: invalid arg "
         "'x-message-ttl' for queue 'invoices-0' in vhost '/' of queue type rabbit_stream_queue"),
        ("    partitions: 1\n    arguments:\n      x-queue-type: quorum\n",
         "s.yaml:5: super-streams[0].arguments.x-queue-type: must be 'stream' (partitions are "
         "streams), not 'quorum'"),
        ("    partitions: 1\n    arguments: [x]\n",
         "s.yaml:4: super-streams[0].arguments: must be a mapping, not a list"),
        ("    partitions: 1\n    vhost: nope\n",
         "s.yaml:4: super-streams[0].vhost: unknown vhost 'nope': declare it under vhosts "
         "('/' exists anyway)"),
        ("    partitions: 1\n    shards: 2\n",
         "s.yaml:4: super-streams[0].shards: unknown key 'shards' (known keys: name, vhost, "
         "partitions, routing-keys, max-age, max-length-bytes, stream-max-segment-size-bytes, "
         "arguments)"),
    ],
)  # fmt: skip
def test_a_problem_is_reported_once_at_its_key(entry: str, expected: str) -> None:
    assert _problems("super-streams:\n  - name: invoices\n" + entry) == [expected]


def test_a_missing_or_reserved_name() -> None:
    assert _problems("super-streams:\n  - partitions: 2\n") == [
        "s.yaml:2: super-streams[0].name: required key is missing"
    ]
    assert _problems("super-streams:\n  - name: amq.s\n    partitions: 2\n") == [
        "s.yaml:2: super-streams[0].name: 'amq.s' starts with 'amq.', which is reserved for the "
        "broker's exchanges and queues"
    ]


def test_an_entry_with_a_problem_adds_nothing() -> None:
    text = "super-streams:\n  - {name: s, partitions: 2, max-age: soon}\nbindings:\n  - {from: s, to: s-0}\n"
    found = _problems(text)
    assert found[0] == (
        "s.yaml:2: super-streams[0].max-age: must be an age such as 7D, 12h or 30m: digits and "
        "one unit of Y, M, D, h, m, s (M is months, m minutes), not 'soon'"
    )
    assert [p.split(": ", 2)[1] for p in found[1:]] == ["bindings[0].from", "bindings[0].to"]


@pytest.mark.parametrize("age", ["7D", "1Y", "12M", "24h", "30m", "10s", "007D"])
def test_the_schema_takes_the_ages_the_loader_takes(age: str) -> None:
    pattern = SCHEMA["$defs"]["super-stream"]["properties"]["max-age"]["pattern"]
    assert parse_max_age(age) == age
    assert re.search(pattern, age)


@pytest.mark.parametrize("age", ["7d", "0D", "D", "7", "1h30m", " 7D", "-1h", "7 D"])
def test_the_schema_refuses_the_ages_the_loader_refuses(age: str) -> None:
    pattern = SCHEMA["$defs"]["super-stream"]["properties"]["max-age"]["pattern"]
    with pytest.raises(ValueError):
        parse_max_age(age)
    assert not re.search(pattern, age)


# ------------------------------------------------------------------ dump
def test_a_complete_super_stream_is_written_back_as_an_entry() -> None:
    text = dump_yaml(
        load("s.yaml", text=INVOICES + REGIONS.removeprefix("super-streams:\n")).definitions
    )
    assert text == (
        "vhosts:\n  - name: shop\n"
        "super-streams:\n"
        "  - name: orders\n    routing-keys:\n      - amer\n      - emea\n      - apac\n"
        "  - name: invoices\n    vhost: shop\n    partitions: 3\n    max-age: 7D\n"
        "    max-length-bytes: 20GB\n"
    )
    assert dump_yaml(load("d.yaml", text=text).definitions) == text


def _broken(definitions: dict[str, Any], change: str) -> dict[str, Any]:
    """A copy of a super stream's definitions with one thing that makes it another shape."""
    d = json.loads(json.dumps(definitions))
    if change == "a binding missing in the middle":
        del d["bindings"][1]
    elif change == "a partition with other arguments":
        d["queues"][0]["arguments"]["x-max-age"] = "1D"
    elif change == "a binding more":
        d["bindings"].append({**d["bindings"][0], "routing_key": "extra"})
    elif change == "an order out of range":
        d["bindings"][0]["arguments"]["x-stream-partition-order"] = 7
    elif change == "an order that is a string":
        d["bindings"][0]["arguments"]["x-stream-partition-order"] = "0"
    elif change == "a durable-less exchange":
        d["exchanges"][0]["durable"] = False
    elif change == "an exchange flag that is not a boolean":
        d["exchanges"][0]["arguments"]["x-super-stream"] = 1
    elif change == "a partition that is classic":
        del d["queues"][0]["arguments"]["x-queue-type"]
    return d


@pytest.mark.parametrize("change", [
    "a binding missing in the middle", "a partition with other arguments", "a binding more",
    "an order out of range", "an order that is a string", "a durable-less exchange",
    "an exchange flag that is not a boolean", "a partition that is classic",
])  # fmt: skip
def test_anything_but_a_complete_super_stream_stays_plain(change: str) -> None:
    d = _broken(load("s.yaml", text=INVOICES).definitions, change)
    text = dump_yaml(d)
    assert "super-streams" not in yaml.safe_load(text)
    loaded = load("d.yaml", text=text).definitions
    assert loaded == load("d.json", text=json.dumps({"rabbit_version": "3.13.0", **d})).definitions
    assert dump_yaml(loaded) == text


def test_the_bindings_that_are_there_make_the_super_stream() -> None:
    d = load("s.yaml", text=INVOICES).definitions
    d["bindings"].pop()  # invoices-2 is no partition any more: a stream of its own
    written = yaml.safe_load(dump_yaml(d))
    assert written["super-streams"] == [{"name": "invoices", "vhost": "shop", "partitions": 2,
                                         "max-age": "7D", "max-length-bytes": "20GB"}]  # fmt: skip
    assert [q["name"] for q in written["queues"]] == ["invoices-2"]
    assert "bindings" not in written


KEYS = st.text(alphabet="abz019-._ü", min_size=1, max_size=5)
AGES = st.sampled_from([None, "7D", "12h", "1Y"])
SIZES = st.sampled_from([None, 0, 1500, 10**9, 2 * 1024**3])


@st.composite
def super_streams(draw: Any) -> str:
    """A topology file of one to three super streams (some sharing a vhost, none sharing a partition)."""
    entries = []
    partitions: set[tuple[str, str]] = set()
    for name in draw(
        st.lists(st.sampled_from(["s", "t", "s-a", "inv"]), min_size=1, max_size=3, unique=True)
    ):
        vhost = draw(st.sampled_from(["/", "v"]))
        entry: dict[str, Any] = {"name": name, "vhost": vhost}
        if draw(st.booleans()):
            count = draw(st.integers(1, 5))
            entry["partitions"], keys = count, [str(i) for i in range(count)]
        else:
            keys = draw(st.lists(KEYS, min_size=1, max_size=4, unique=True))
            entry["routing-keys"] = keys
        if any((vhost, f"{name}-{k}") in partitions for k in keys):
            continue
        partitions |= {(vhost, f"{name}-{k}") for k in keys}
        for key, value in (("max-age", draw(AGES)), ("max-length-bytes", draw(SIZES))):
            if value is not None:
                entry[key] = value
        entries.append(entry)
    return yaml.safe_dump({"vhosts": [{"name": "v"}], "super-streams": entries})


def _settings(streams: list[SuperStream]) -> list[tuple[Any, ...]]:
    return sorted((s.vhost, s.name, s.routing_keys, s.arguments) for s in streams)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(super_streams())
def test_super_streams_come_back_from_their_definitions(text: str) -> None:
    topology = load("g.yaml", text=text)
    dumped = dump_yaml(topology.definitions)
    again = load("d.yaml", text=dumped)
    assert again.definitions == topology.definitions
    assert _settings(again.super_streams) == _settings(topology.super_streams)
    assert dump_yaml(again.definitions) == dumped
    assert not {"exchanges", "queues", "bindings"} & set(yaml.safe_load(dumped))


# ------------------------------------------------------------------ on a broker
E2E = """\
super-streams:
  - name: invoices
    partitions: 3
    max-age: 7D
  - name: regions
    routing-keys: [amer, emea, apac]
"""
ARRIVAL = 30.0  # seconds a partition's messages may take to arrive


def _read_partition(channel: Any, queue: str, last: bytes) -> list[bytes]:
    """Everything a stream holds from its first offset up to the message `last`."""
    got: list[bytes] = []

    def on_message(ch: Any, method: Any, _properties: Any, body: bytes) -> None:
        got.append(body)
        ch.basic_ack(method.delivery_tag)
        if body == last:
            ch.stop_consuming()

    channel.basic_qos(prefetch_count=50)
    channel.basic_consume(queue, on_message, arguments={"x-stream-offset": "first"})
    channel.connection.call_later(ARRIVAL, channel.stop_consuming)
    started = time.monotonic()
    channel.start_consuming()
    assert time.monotonic() - started < ARRIVAL, f"{queue}: only {got!r} arrived"
    return got


@pytest.mark.parametrize(
    ("exchange", "keys"), [("invoices", ["0", "1", "2"]), ("regions", ["amer", "emea", "apac"])]
)
def test_each_partition_holds_the_messages_of_its_key(kit: Any, broker: BrokerProcess, workdir: Path,
                                                      exchange: str, keys: list[str]) -> None:  # fmt: skip
    file = kit.write(workdir, "streams.yaml", E2E)
    applied = kit.topology("apply", "--url", broker.management_url, "--yes", str(file))
    assert applied.code == 0, applied.err
    assert f"+ exchange 'invoices' in vhost '/' ({file}:2)" in applied.out
    assert f"+ queue 'regions-emea' in vhost '/' ({file}:5)" in applied.out

    sent: dict[str, list[bytes]] = {key: [] for key in keys}
    with kit.channel(broker) as channel:
        channel.confirm_delivery()
        for i in range(12):
            key = keys[(i * 7) % len(keys)]  # not round-robin, so the order is the keys'
            body = f"{key}:{i}".encode()
            channel.basic_publish(exchange, key, body, mandatory=True)
            sent[key].append(body)
        for key in keys:  # after all the others: whatever a partition holds comes before it
            channel.basic_publish(exchange, key, f"{key}:end".encode(), mandatory=True)
            sent[key].append(f"{key}:end".encode())

    for key in keys:
        with kit.channel(broker) as channel:
            assert _read_partition(channel, f"{exchange}-{key}", sent[key][-1]) == sent[key]
    assert kit.live_queue(broker, "/", "invoices-1")["arguments"] == {
        "x-max-age": "7D",
        "x-queue-type": "stream",
    }

    again = kit.topology("plan", "--url", broker.management_url, str(file))
    assert again.code == 0, again.err
    assert again.lines[-1] == "No changes."
    exported = kit.topology("export", "--url", broker.management_url)
    assert exported.code == 0, exported.err
    assert yaml.safe_load(exported.out)["super-streams"] == yaml.safe_load(E2E)["super-streams"]
