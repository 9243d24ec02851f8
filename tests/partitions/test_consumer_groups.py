"""Partitioned streams: plain consumers read every partition, consumer groups share them out.

A group's progress in each partition is its committed offset (the highest
acked), which survives restarts and crashes, and a partition moves to
another member only once its last owner's deliveries are settled.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
from support.partitions import DEADLINE

PARTITIONS = 6
KEYS = 60
GROUP_ARG = "x-consumer-group"


def declare_stream(connect, queue: str) -> None:
    ch = connect().channel()
    ch.queue_declare(queue, durable=True, arguments={
        "x-queue-type": "stream", "x-partitions": PARTITIONS, "x-partition-key": "k"})  # fmt: skip


def publish(connect, queue: str, first: int, count: int) -> None:
    """Messages first..first+count-1; message n has key n % KEYS, and its number in the body."""
    ch = connect().channel()
    ch.confirm_delivery()
    for n in range(first, first + count):
        ch.basic_publish("", queue, str(n).encode(), pika.BasicProperties(headers={"k": f"key-{n % KEYS}"}))


class Member:
    """One consumer on a channel of its own, acking each delivery as it gets it."""

    def __init__(self, conn: pika.BlockingConnection, queue: str, name: str, seen: list[tuple[str, int, Any]],
                 arguments: dict[str, Any]) -> None:  # fmt: skip
        self.name = name
        self.seen = seen
        self.channel = conn.channel()
        self.channel.basic_qos(prefetch_count=50)
        self.channel.basic_consume(queue, self._on_message, arguments=arguments)

    def _on_message(self, ch, method, properties, body) -> None:
        self.seen.append((self.name, int(body), properties.headers))
        ch.basic_ack(method.delivery_tag)

    def close(self) -> None:
        self.channel.close()


def run_until(conn: pika.BlockingConnection, seen: list, count: int, on_progress=None) -> None:
    """Process deliveries until count have been seen (a deadline guards against a hang)."""
    deadline = time.monotonic() + DEADLINE * 4
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {len(seen)} of {count} deliveries"
        conn.process_data_events(time_limit=0.05)
        if on_progress is not None:
            on_progress(len(seen))


def group_of(conn, queue: str, group: str, names: tuple[str, ...], seen: list) -> dict[str, Member]:
    return {name: Member(conn, queue, name, seen, {GROUP_ARG: group}) for name in names}


def assert_exactly_once_in_key_order(seen: list, expected: range) -> None:
    counts = Counter(n for _name, n, _headers in seen)
    assert sorted(counts) == list(expected)
    assert [n for n, c in counts.items() if c > 1] == []
    last_by_key: dict[int, int] = {}
    for _name, n, _headers in seen:
        key = n % KEYS
        assert last_by_key.get(key, -1) < n, f"message {n} after {last_by_key[key]} of the same key"
        last_by_key[key] = n


def quiesce(ch) -> None:
    """A round trip: the broker has handled (and committed) every ack sent before it."""
    ch.basic_qos(prefetch_count=50)


def test_a_group_processes_every_message_once_in_key_order(connect, names):
    queue = names("s")
    declare_stream(connect, queue)
    conn = connect()
    seen: list = []
    members = group_of(conn, queue, "g", ("a", "b", "c"), seen)
    publish(connect, queue, 0, 6000)
    run_until(conn, seen, 6000)
    conn.process_data_events(time_limit=0.2)  # nothing more comes
    assert_exactly_once_in_key_order(seen, range(6000))
    # Each member owns two partitions, and a partition is read by one member only.
    partitions_of = defaultdict(set)
    for name, _n, headers in seen:
        partitions_of[name].add(headers["x-stream-partition"])
    assert sorted(len(p) for p in partitions_of.values()) == [2, 2, 2]
    assert set().union(*partitions_of.values()) == set(range(PARTITIONS))
    for member in members.values():
        member.close()


@pytest.mark.parametrize("crash", [False, True], ids=["clean-restart", "kill-9"])
def test_a_new_group_member_resumes_from_the_committed_offsets_after_a_restart(broker, connect, names, crash):
    queue = names("s")
    declare_stream(connect, queue)
    publish(connect, queue, 0, 3000)
    conn = connect()
    seen: list = []
    members = group_of(conn, queue, "g", ("a", "b", "c"), seen)
    run_until(conn, seen, 3000)
    quiesce(members["a"].channel)
    conn.close()
    publish(connect, queue, 3000, 1000)
    if crash:
        broker.crash_and_restart()
    else:
        broker.restart()

    conn = connect()
    after: list = []
    group_of(conn, queue, "g", ("d", "e"), after)
    run_until(conn, after, 1000)
    conn.process_data_events(time_limit=0.2)
    assert_exactly_once_in_key_order(after, range(3000, 4000))
    # Another group starts at the beginning (no offset committed): it gets all of them.
    other: list = []
    group_of(conn, queue, "other", ("f",), other)
    run_until(conn, other, 4000)
    assert_exactly_once_in_key_order(other, range(4000))


def test_unacked_deliveries_go_to_the_next_owner(connect, names):
    queue = names("s")
    declare_stream(connect, queue)
    publish(connect, queue, 0, 600)
    conn = connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    got: list[tuple[int, int]] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append((m.delivery_tag, int(b))), arguments={GROUP_ARG: "g"})
    run_until(conn, got, 600)
    for tag, n in got:
        if n < 300:
            ch.basic_ack(tag)
    quiesce(ch)
    ch.close()  # what it did not ack goes back
    seen: list = []
    group_of(conn, queue, "g", ("b",), seen)
    publish(connect, queue, 600, 60)
    run_until(conn, seen, 360)
    conn.process_data_events(time_limit=0.2)
    # The committed offset is the highest acked per partition: everything after it comes again.
    assert_exactly_once_in_key_order(seen, range(300, 660))


def test_a_member_leaving_hands_its_partitions_over_without_loss_or_duplicates(connect, names):
    """Published in three waves, so that each change of members happens while messages remain."""
    queue = names("s")
    declare_stream(connect, queue)
    conn = connect()
    seen: list = []
    members = group_of(conn, queue, "g", ("a", "b", "c"), seen)
    publish(connect, queue, 0, 2000)
    run_until(conn, seen, 1500)
    members["b"].close()  # its partitions go to a and c, after its deliveries are settled
    publish(connect, queue, 2000, 2000)
    run_until(conn, seen, 3500)
    Member(conn, queue, "d", seen, {GROUP_ARG: "g"})  # takes a share from a and c
    publish(connect, queue, 4000, 2000)
    run_until(conn, seen, 6000)
    conn.process_data_events(time_limit=0.2)
    assert_exactly_once_in_key_order(seen, range(6000))
    after_join = Counter(name for name, n, _headers in seen if n >= 4000)
    assert after_join["d"] > 0 and "b" not in after_join, after_join


def test_a_plain_consumer_reads_every_partition_with_both_headers(broker, connect, names):
    queue = names("s")
    declare_stream(connect, queue)
    publish(connect, queue, 0, 600)
    conn = connect()
    seen: list = []
    Member(conn, queue, "plain", seen, {"x-stream-offset": "first"})
    run_until(conn, seen, 600)
    conn.process_data_events(time_limit=0.2)
    assert_exactly_once_in_key_order(seen, range(600))
    partition_of_key: dict[int, int] = {}
    offsets = defaultdict(list)
    for _name, n, headers in seen:
        partition = headers["x-stream-partition"]
        assert partition_of_key.setdefault(n % KEYS, partition) == partition
        offsets[partition].append(headers["x-stream-offset"])
    assert set(offsets) <= set(range(PARTITIONS)) and len(offsets) > 1
    for partition, got in offsets.items():
        assert sorted(got) == list(range(len(got))), partition
    # A second plain consumer at `next` gets only what is published after it started.
    later: list = []
    Member(conn, queue, "later", later, {})
    publish(connect, queue, 600, 60)
    run_until(conn, later, 60)
    assert sorted(n for _name, n, _h in later) == list(range(600, 660))
    info = broker.api(f"/api/queues/%2F/{quote(queue, safe='')}")
    assert (info["type"], info["partitions"], info["messages"]) == ("stream", PARTITIONS, 660)


def test_an_integer_offset_is_refused_on_a_partitioned_stream(connect, names):
    queue = names("s")
    declare_stream(connect, queue)
    ch = connect().channel()
    ch.basic_qos(prefetch_count=10)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume(queue, lambda *a: None, arguments={"x-stream-offset": 5})
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '{queue}' in vhost '/': "
        "offsets are per partition (use first, last, next or a time)"
    )


def test_a_group_needs_a_partitioned_stream(connect, names):
    queue = names("s")
    ch = connect().channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "stream"})
    ch.basic_qos(prefetch_count=10)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume(queue, lambda *a: None, arguments={GROUP_ARG: "g"})
    assert info.value.reply_code == 406
    assert "consumer groups need a partitioned stream" in info.value.reply_text
