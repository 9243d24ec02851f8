"""x-consistent-hash: weights, stability, what is hashed, validation."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections import Counter

import pytest

from warrenmq.exchanges import (
    PRECONDITION_FAILED,
    BindingRejected,
    ConsistentHashRouter,
    InvalidArguments,
    make_exchange_type,
)

KEYS = [f"order-{i}" for i in range(100_000)]


def shares(router: ConsistentHashRouter, keys: list[str]) -> Counter:
    counts: Counter = Counter()
    for key in keys:
        result = router.route(key)
        assert len(result) == 1
        counts[result[0]] += 1
    return counts


def test_distribution_follows_the_weights_within_5_percent() -> None:
    weights = {"q1": 1, "q2": 2, "q3": 3, "q4": 10}
    router = ConsistentHashRouter()
    for queue, weight in weights.items():
        router.bind(queue, str(weight))
    counts = shares(router, KEYS)
    total = sum(weights.values())
    for queue, weight in weights.items():
        expected = len(KEYS) * weight / total
        assert abs(counts[queue] - expected) / expected < 0.05, (queue, counts)


def test_adding_a_destination_moves_only_its_share_and_only_to_it() -> None:
    router = ConsistentHashRouter()
    for i in range(4):
        router.bind(f"q{i}", "10")
    before = {key: router.route(key) for key in KEYS}
    router.bind("q4", "10")
    after = {key: router.route(key) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert 0.18 < len(moved) / len(KEYS) < 0.22  # about 1/5
    assert {after[key] for key in moved} == {("q4",)}
    # Taking it away again restores every key's destination.
    router.unbind("q4", "10")
    assert {key: router.route(key) for key in KEYS} == before


def test_removing_a_destination_moves_its_keys_away_from_it() -> None:
    router = ConsistentHashRouter()
    for i in range(4):
        router.bind(f"q{i}", "5")
    router.unbind("q1", "5")
    counts = shares(router, KEYS[:20_000])
    assert set(counts) == {"q0", "q2", "q3"}


def test_same_key_same_destination_and_the_cache_does_not_change_answers() -> None:
    cached = ConsistentHashRouter()
    uncached = ConsistentHashRouter(cache_size=0)
    for router in (cached, uncached):
        for i in range(7):
            router.bind(f"q{i}", str(i + 1))
    for key in KEYS[:5000] + KEYS[:5000]:
        assert cached.route(key) == uncached.route(key)


def test_hashing_is_stable_across_processes() -> None:
    script = (
        "from warrenmq.exchanges import ConsistentHashRouter\n"
        "r = ConsistentHashRouter()\n"
        "for i in range(5): r.bind(f'q{i}', '3')\n"
        "print(','.join(r.route(f'k{i}')[0] for i in range(200)))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_no_bindings_routes_nowhere() -> None:
    assert ConsistentHashRouter().route("k") == ()


def test_a_second_binding_of_a_destination_does_not_add_weight() -> None:
    router = ConsistentHashRouter()
    router.bind("a", "1")
    router.bind("b", "1")
    assert router.bind("a", "9")  # listed, but the ring keeps a's first weight
    assert [b.binding_key for b in router.bindings()] == ["1", "1", "9"]
    assert router.buckets() == (("a", 1), ("b", 1))
    router.unbind("a", "1")
    assert router.buckets() == (("b", 1), ("a", 9))


def test_unbind_destination_clears_the_ring() -> None:
    router = ConsistentHashRouter()
    router.bind("a", "2")
    router.bind("a", "3")
    assert len(router.unbind_destination("a")) == 2
    assert router.route("k") == ()


# --- hashing a header or a property


def test_hash_header_uses_the_header_not_the_routing_key() -> None:
    router = make_exchange_type("x-consistent-hash", {"hash-header": "user"})
    assert isinstance(router, ConsistentHashRouter)
    assert router.needs_headers and not router.needs_properties
    for i in range(4):
        router.bind(f"q{i}", "1")
    destinations = set()
    for i in range(400):
        first = router.route("key-a", {"user": f"u{i}"})
        assert router.route(f"key-{i}", {"user": f"u{i}", "other": i}) == first
        destinations.add(first)
    assert len(destinations) == 4


def test_messages_without_the_hash_header_all_go_to_one_destination() -> None:
    router = ConsistentHashRouter({"hash-header": "user"})
    for i in range(4):
        router.bind(f"q{i}", "1")
    results = {router.route(f"key-{i}", headers) for i in range(200) for headers in (None, {}, {"x": 1})}
    assert len(results) == 1 and len(results.pop()) == 1


def test_header_values_of_other_types_hash_consistently() -> None:
    router = ConsistentHashRouter({"hash-header": "h"})
    for i in range(8):
        router.bind(f"q{i}", "1")
    for value in (42, 1.5, True, b"raw", bytearray(b"raw"), {"t": [1, 2]}, [1, "x"]):
        assert router.route("a", {"h": value}) == router.route("b", {"h": value})


def test_routing_key_mode_never_decodes_properties() -> None:
    router = ConsistentHashRouter()
    router.bind("q", "1")
    assert not router.needs_properties and not router.needs_headers

    def forbidden(name: str):
        raise AssertionError("properties decoded for nothing")

    assert router.route("k", None, forbidden) == ("q",)


def test_hash_property_asks_for_that_property_only() -> None:
    router = make_exchange_type("x-consistent-hash", {"hash-property": "message_id"})
    assert isinstance(router, ConsistentHashRouter)
    assert router.needs_properties and not router.needs_headers
    for i in range(4):
        router.bind(f"q{i}", "1")
    asked: list[str] = []

    def properties(name: str):
        asked.append(name)
        return "m-17"

    first = router.route("k1", None, properties)
    assert router.route("k2", {"message_id": "other"}, properties) == first
    assert set(asked) == {"message_id"}
    assert len({router.route("k", None, {"message_id": f"m{i}"}.get) for i in range(200)}) == 4
    # A message without the property goes where every such message goes.
    assert router.route("a", None, {}.get) == router.route("b", None, lambda name: None)


def test_timestamp_property_hashes_by_seconds() -> None:
    router = ConsistentHashRouter({"hash-property": "timestamp"})
    for i in range(8):
        router.bind(f"q{i}", "1")
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    seconds = int(when.timestamp())
    assert router.route("", None, {"timestamp": when}.get) == router.route(
        "", None, {"timestamp": seconds}.get
    )


# --- validation


@pytest.mark.parametrize("key", ["1", "10", "+3", "007", "100000"])
def test_integer_weights_are_accepted(key: str) -> None:
    router = ConsistentHashRouter()
    assert router.validate_binding(key, {}) is None
    assert router.bind("q", key)
    assert router.buckets() == (("q", int(key)),)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("0", "The binding key must be greater than 0"),
        ("-2", "The binding key must be greater than 0"),
        ("", 'The binding key must be an integer: <<"">>'),
        ("abc", 'The binding key must be an integer: <<"abc">>'),
        ("1.5", 'The binding key must be an integer: <<"1.5">>'),
        (" 1", 'The binding key must be an integer: <<" 1">>'),
        ("1_0", 'The binding key must be an integer: <<"1_0">>'),
        ("\u0663", 'The binding key must be an integer: <<"\u0663">>'),  # a non-ASCII digit
    ],
)
def test_bad_weights_are_refused(key: str, text: str) -> None:
    router = ConsistentHashRouter()
    error = router.validate_binding(key, {})
    assert isinstance(error, InvalidArguments)
    assert error.reply_code == PRECONDITION_FAILED
    assert error.reply_text == text
    with pytest.raises(BindingRejected):
        router.bind("q", key)
    assert router.bindings() == ()


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({"hash-header": "h", "hash-property": "message_id"},
         "hash-header and hash-property are mutually exclusive"),
        ({"hash-property": "app_id"}, "Unsupported property: app_id"),
        ({"hash-property": "headers"}, "Unsupported property: headers"),
        ({"hash-header": 5}, "hash-header must be a string: 5"),
    ],
)
def test_bad_exchange_arguments_are_refused(arguments: dict, text: str) -> None:
    error = make_exchange_type("x-consistent-hash", arguments)
    assert isinstance(error, InvalidArguments)
    assert error.reply_code == 406
    assert error.reply_text == text


@pytest.mark.parametrize("prop", ["message_id", "correlation_id", "timestamp"])
def test_supported_properties(prop: str) -> None:
    assert isinstance(make_exchange_type("x-consistent-hash", {"hash-property": prop}), ConsistentHashRouter)
