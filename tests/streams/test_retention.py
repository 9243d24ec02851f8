"""Retention: x-max-length-bytes and x-max-age delete whole old segments; offsets never change.

Every stream here has the smallest segments (x-stream-max-segment-size-bytes
below a batch's size), so each message, published as its own batch, has a
segment of its own and every append rolls: retention runs at each roll.
These tests look at the data directory, so they run against warrenmq only.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.streams import consume, declare_stream, publish, pump_until, round_trip

pytestmark = pytest.mark.warrenmq_only
TINY_SEGMENTS = {"x-stream-max-segment-size-bytes": 64}


def segments(directory: Path) -> list[tuple[int, int]]:
    """(base offset, bytes) of each segment file, oldest first."""
    return sorted((int(p.name[:20]), p.stat().st_size) for p in directory.glob("*.log"))


def test_max_length_bytes_deletes_the_oldest_segments(broker, connect, names):
    q = names()
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, q, **TINY_SEGMENTS, **{"x-max-length-bytes": 1000})
    publish(ch, q, [f"m{i}-" + "x" * 40 for i in range(40)])
    kept = segments(broker.partition_dir(q))
    start = kept[0][0]
    total = sum(size for _base, size in kept)
    assert start > 0
    assert [base for base, _size in kept] == list(range(start, 40))
    # As Kafka's retention.bytes: the oldest segment goes while the rest would still hold the limit.
    assert total >= 1000 > total - kept[0][1]
    got = consume(conn, conn.channel(), q, offset="first", wait_for=40 - start)
    assert got.offsets == list(range(start, 40))
    assert got.bodies == [f"m{i}-" + "x" * 40 for i in range(start, 40)]  # offsets did not move
    assert round_trip(ch, q).message_count == 40 - start


def test_max_age_deletes_segments_older_than_it_at_the_next_roll(broker, connect, names):
    q = names()
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, q, **TINY_SEGMENTS, **{"x-max-age": "1s"})
    publish(ch, q, ["old0", "old1", "old2"])
    time.sleep(1.5)
    assert [base for base, _size in segments(broker.partition_dir(q))] == [0, 1, 2]  # no roll yet
    publish(ch, q, ["new0", "new1"])
    assert [base for base, _size in segments(broker.partition_dir(q))] == [3, 4]
    got = consume(conn, conn.channel(), q, offset="first", wait_for=2)
    assert (got.bodies, got.offsets) == (["new0", "new1"], [3, 4])
    assert round_trip(ch, q).message_count == 2


def test_a_consumer_behind_the_new_start_goes_on_from_it(broker, connect, names):
    q = names()
    conn = connect()
    ch = conn.channel()
    declare_stream(ch, q, **TINY_SEGMENTS, **{"x-max-length-bytes": 600})
    publish(ch, q, [f"a{i}" for i in range(3)])
    reader_ch = conn.channel()
    reader = consume(conn, reader_ch, q, offset="first", prefetch=1, wait_for=1)
    publish(ch, q, [f"b{i}" for i in range(20)])
    start = segments(broker.partition_dir(q))[0][0]
    assert start > 1
    reader_ch.basic_ack(reader.got[0].tag)
    pump_until(conn, lambda: len(reader.got) == 2)
    assert reader.offsets == [0, start]


@pytest.mark.restarts
def test_retention_survives_a_restart(broker, connect, names):
    """The limits are the topic's settings: after a restart the next roll applies them still."""
    q = names()
    ch = connect().channel()
    declare_stream(ch, q, **TINY_SEGMENTS, **{"x-max-length-bytes": 1000})
    publish(ch, q, [f"m{i}-" + "x" * 40 for i in range(5)])
    assert segments(broker.partition_dir(q))[0][0] == 0
    broker.restart()
    ch = connect().channel()
    publish(ch, q, [f"n{i}-" + "x" * 40 for i in range(30)])
    assert segments(broker.partition_dir(q))[0][0] > 5
