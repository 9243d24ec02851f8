"""The pure parts of partitioned queues: the partition of a key, the arguments, sharing partitions out."""

from __future__ import annotations

import zlib
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands

from warrenmq.amqp.codec import encode_properties, encode_short
from warrenmq.broker.partition_assignment import share_partitions
from warrenmq.broker.partitioned import SummedCounters, member_state_key
from warrenmq.broker.partitioning import (
    MAX_PARTITIONS,
    header_key,
    key_bytes,
    partition_argument_error,
    partition_count,
    partition_of,
    routing_key_bytes,
)
from warrenmq.broker.topology.arguments import queue_argument_problems


# ------------------------------------------------------------ the partition of a key
def test_the_partition_of_a_key_is_its_crc32_modulo_the_partition_count():
    for key in (b"", b"order-17", "clé".encode(), bytes(range(256))):
        for n in (1, 2, 8, 1024):
            assert partition_of(key, n) == zlib.crc32(key) % n


def test_a_thousand_keys_spread_over_eight_partitions():
    counts = Counter(partition_of(f"key-{k}".encode(), 8) for k in range(1000))
    assert set(counts) == set(range(8))
    assert min(counts.values()) > 1000 / 8 / 2  # no partition starves


def test_the_routing_key_is_read_from_the_record_field_as_bytes():
    exrk = encode_short("orders") + encode_short("eu.order-17")
    assert routing_key_bytes(exrk) == b"eu.order-17"
    assert routing_key_bytes(encode_short("") + encode_short("")) == b""


def test_a_header_key_is_the_bytes_of_the_header_value_string_form():
    def props(headers):
        return encode_properties(commands.Basic.Properties(headers=headers, delivery_mode=2))

    assert header_key(props({"customer": "c-42"}), "customer") == b"c-42"
    assert header_key(props({"customer": 42}), "customer") == b"42"
    assert header_key(props({"other": "x"}), "customer") is None
    assert header_key(encode_properties(commands.Basic.Properties(delivery_mode=2)), "customer") is None
    assert header_key(b"", "customer") is None


def test_key_bytes_text_as_utf8_bytes_as_they_are_numbers_in_decimal():
    assert key_bytes("clé") == "clé".encode()
    assert key_bytes(b"\x00\xff") == b"\x00\xff"
    assert key_bytes(-7) == b"-7"
    assert key_bytes(True) == b"true"
    assert key_bytes(None) is None
    # The same string, sent as text or as bytes, picks the same partition.
    assert key_bytes("abc") == key_bytes(b"abc")


# ------------------------------------------------------------------- the arguments
def test_partition_argument_checks():
    assert partition_argument_error("x-partitions", 1, {"x-partitions": 1}) is None
    assert partition_argument_error("x-partitions", MAX_PARTITIONS, {}) is None
    assert partition_argument_error("x-partitions", 0, {}) == "{value_zero,0}"
    assert partition_argument_error("x-partitions", 1025, {}) == "{max_value_exceeded,1025}"
    assert partition_argument_error("x-partition-key", "h", {"x-partition-key": "h"}) == (
        "partition_key_but_no_partitions"
    )
    assert partition_argument_error("x-partition-key", "h", {"x-partitions": 2, "x-partition-key": "h"}) is None
    assert partition_argument_error("x-overflow", "reject-publish", {"x-partitions": 2}) == (
        "{overflow_not_supported_with_partitions,reject-publish}"
    )
    assert partition_argument_error("x-overflow", "drop-head", {"x-partitions": 2}) is None
    assert partition_argument_error("x-overflow", "reject-publish", {}) is None
    assert partition_argument_error("x-max-length", 10, {"x-partitions": 2}) is None


def test_partition_count_defaults_to_one():
    assert partition_count({}) == 1
    assert partition_count({"x-partitions": 8}) == 8


def test_partition_zero_keeps_the_state_key_of_an_unpartitioned_queue():
    assert member_state_key("/", "q", 0) == b"queue\x00/\x00q"
    assert member_state_key("/", "q", 3) == b"queue\x00/\x00q\x003"
    assert len({member_state_key("v", "q", i) for i in range(8)}) == 8


# ----------------------------------------------------------- sharing partitions out
def _counts(owners):
    return Counter(owner for owner in owners if owner is not None)


def _moves(before, after):
    return sum(1 for old, new in zip(before, after, strict=True) if old is not None and old != new)


def test_one_consumer_takes_every_partition_and_none_leaves_them_unowned():
    assert share_partitions(8, ["a"], [None] * 8) == ["a"] * 8
    assert share_partitions(4, [], ["a"] * 4) == [None] * 4


def test_joining_consumers_take_partitions_from_those_holding_most():
    one = share_partitions(8, ["a"], [None] * 8)
    two = share_partitions(8, ["a", "b"], one)
    assert two == ["a"] * 4 + ["b"] * 4
    three = share_partitions(8, ["a", "b", "c"], two)
    assert _counts(three) == {"a": 3, "b": 3, "c": 2}
    assert _moves(two, three) == 2  # only what c takes moves


def test_a_leaving_consumer_partitions_go_to_the_others_and_nothing_else_moves():
    three = ["a", "a", "a", "b", "b", "b", "c", "c"]
    after = share_partitions(8, ["a", "c"], three)
    assert _counts(after) == {"a": 4, "c": 4}
    assert [after[i] for i in (0, 1, 2, 6, 7)] == ["a", "a", "a", "c", "c"]


def test_more_consumers_than_partitions_leaves_the_late_ones_idle():
    owners = share_partitions(2, ["a", "b", "c"], [None, None])
    assert owners == ["a", "b"]
    # The idle one steps in when an owner leaves.
    assert share_partitions(2, ["b", "c"], owners) == ["c", "b"]


@given(
    partitions=st.integers(1, 40),
    before=st.lists(st.sampled_from("abcdef"), min_size=0, max_size=6, unique=True),
    after=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True),
)
def test_sharing_is_balanced_and_keeps_every_partition_it_can(partitions, before, after):
    current = share_partitions(partitions, before, [None] * partitions)
    owners = share_partitions(partitions, after, current)
    counts = [_counts(owners).get(c, 0) for c in after]
    assert all(owner in after for owner in owners)
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == partitions
    # A balanced assignment must move at least this many: each staying consumer keeps
    # at most its share, the larger shares going to those that hold the most.
    held = sorted((_counts(current).get(c, 0) for c in after), reverse=True)
    base, extra = divmod(partitions, len(after))
    keepable = sum(min(h, base + (i < extra)) for i, h in enumerate(held))
    kept = sum(1 for old, new in zip(current, owners, strict=True) if old is not None and old == new)
    assert kept == keepable
    assert owners == share_partitions(partitions, after, current)  # deterministic


# ------------------------------------------------------------------------ counters
def test_summed_counters_add_the_wholes_own_counts_to_the_partitions():
    class Part:
        def __init__(self, published):
            self.counters = {"published": published, "get": 0}

    own = {"published": 0, "get": 0}
    counters = SummedCounters(own, [Part(3), Part(4)])
    assert counters["published"] == 7
    counters["get"] += 1
    counters["get"] += 1
    assert counters["get"] == 2 and own["get"] == 2
    assert counters.get("published", 0) == 7 and counters.get("missing", 0) == 0
    assert dict(counters) == {"published": 7, "get": 2}


def test_topology_files_are_checked_as_the_broker_checks_declares():
    def problems(arguments):
        return dict(queue_argument_problems(arguments))

    assert problems({"x-partitions": 8, "x-partition-key": "customer"}) == {}
    assert problems({"x-partitions": 0}) == {"x-partitions": "must be from 1 to 1024, not 0"}
    assert problems({"x-partitions": 1025}) == {"x-partitions": "must be from 1 to 1024, not 1025"}
    assert problems({"x-partition-key": "customer"}) == {
        "x-partition-key": "needs x-partitions (a partition key alone is refused by the broker)"
    }
    assert problems({"x-partitions": 2, "x-overflow": "reject-publish"}) == {
        "x-overflow": "must be drop-head on a queue with x-partitions, not 'reject-publish'"
    }
