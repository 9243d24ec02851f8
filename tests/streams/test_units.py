"""The stream modules on their own: parsing, the offset header's bytes, tracked offsets, retention."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from pamqp.commands import Basic

from warrenmq.amqp.codec import check_properties, decode_properties, encode_properties
from warrenmq.broker.stream import StreamQueue, apply_stream_retention
from warrenmq.broker.stream_declare import parse_max_age, stream_log_config
from warrenmq.broker.stream_header import with_offset_header
from warrenmq.broker.stream_offsets import (
    ConsumerOffsets,
    OffsetSpec,
    last_batch_start,
    parse_offset_arg,
    resolve_start,
)
from warrenmq.logstore import LogConfig, LogManager

NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [("10s", 10_000), ("30m", 1_800_000), ("1h", 3_600_000), ("7D", 604_800_000),
     ("1M", 2_592_000_000), ("1Y", 31_536_000_000), ("01h", 3_600_000)],
)  # fmt: skip
def test_max_age_units(text, ms):
    assert parse_max_age(text) == ms


@pytest.mark.parametrize("text", ["", "h", "1", "0s", "-1h", " 1h", "1.5h", "1H", "1d", "1hh"])
def test_max_age_refusals(text):
    assert parse_max_age(text) is None


def test_offset_specifications():
    moment = datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC)
    assert parse_offset_arg("first", NOW) == OffsetSpec("first")
    assert parse_offset_arg("last", NOW) == OffsetSpec("last")
    assert parse_offset_arg("next", NOW) == OffsetSpec("next")
    assert parse_offset_arg(42, NOW) == OffsetSpec("offset", 42)
    assert parse_offset_arg(moment, NOW) == OffsetSpec("timestamp", 1_700_000_000_000)
    assert parse_offset_arg("1h", NOW) == OffsetSpec("timestamp", NOW - 3_600_000)
    for bad in ("1x", "bogus", "5", True, 2.5, None, b"first", {"a": 1}):
        assert parse_offset_arg(bad, NOW) is None


@pytest.mark.parametrize(
    "props",
    [
        Basic.Properties(),
        Basic.Properties(content_type="text/plain", content_encoding="gzip", delivery_mode=2),
        Basic.Properties(headers={"a": 1, "b": "two"}, priority=3, expiration="100"),
        Basic.Properties(content_type="x", headers={}, correlation_id="c", app_id="app"),
        Basic.Properties(headers={"x-stream-offset": 99, "k": "v"}),  # a publisher's own: replaced
    ],
)
def test_the_offset_header_is_added_and_the_rest_kept(props):
    raw = encode_properties(props)
    edited = with_offset_header(raw, 2**40 + 7)
    assert check_properties(edited)
    before, after = decode_properties(raw), decode_properties(edited)
    expected_headers = {**(before.headers or {}), "x-stream-offset": 2**40 + 7}
    assert after.headers == expected_headers
    assert list(after.headers)[-1] == "x-stream-offset" or "x-stream-offset" in (before.headers or {})
    for name in ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                 "expiration", "app_id"):  # fmt: skip
        assert getattr(after, name) == getattr(before, name)
    header_type = edited[edited.index(b"x-stream-offset") + len(b"x-stream-offset")]
    assert header_type == ord("l")


def test_committed_offsets_are_written_at_flush_and_forgotten_with_their_stream(tmp_path: Path):
    with LogManager(str(tmp_path)) as manager:
        offsets = ConsumerOffsets(manager.offsets_store("consumer-offsets"))
        a, b, other = (ConsumerOffsets.key("/", "s", "a"), ConsumerOffsets.key("/", "s", "b"),
                       ConsumerOffsets.key("/", "s2", "a"))  # fmt: skip
        offsets.commit(a, 5)
        assert offsets.committed(a) == 5  # noted
        offsets.flush()
        offsets.commit(b, 1)
        offsets.commit(other, 9)
        offsets.flush()
    with LogManager(str(tmp_path)) as manager:
        offsets = ConsumerOffsets(manager.offsets_store("consumer-offsets"))
        assert (offsets.committed(a), offsets.committed(b), offsets.committed(other)) == (5, 1, 9)
        offsets.forget_below("/", "s", 3)  # b's next offset (2) is gone, a's (6) is not
        assert (offsets.committed(a), offsets.committed(b)) == (5, None)
        offsets.forget_queue("/", "s")
        assert (offsets.committed(a), offsets.committed(other)) == (None, 9)


def stream_on(manager: LogManager, **arguments) -> StreamQueue:
    config = stream_log_config(LogConfig(fsync="never"), {"x-queue-type": "stream", **arguments})
    log = manager.create_topic("/\x00s", 1, config).partition(0)
    offsets = ConsumerOffsets(manager.offsets_store("consumer-offsets"))
    return StreamQueue("/", "s", log, arguments=arguments, on_dirty=lambda _q: None, offsets=offsets)


def append(stream: StreamQueue, timestamp: int, *bodies: bytes) -> None:
    for body in bodies:
        stream.enqueue(timestamp, 0, b"\x00\x01s", b"\x00\x00", body, b"\x00\x00\x01s\x00\x00")
    stream.flush_appends()


def test_last_is_the_last_batch_and_timestamps_use_the_time_index(tmp_path: Path):
    with LogManager(str(tmp_path)) as manager:
        stream = stream_on(manager)
        log = stream.log
        assert last_batch_start(log) == 0
        append(stream, NOW, b"a", b"b")
        append(stream, NOW + 1000, b"c", b"d", b"e")
        assert last_batch_start(log) == 2
        assert resolve_start(OffsetSpec("last"), log) == 2
        assert resolve_start(OffsetSpec("first"), log) == 0
        assert resolve_start(OffsetSpec("next"), log) == 5
        assert resolve_start(OffsetSpec("timestamp", NOW + 1), log) == 2
        assert resolve_start(OffsetSpec("timestamp", NOW + 5000), log) == 5
        assert resolve_start(OffsetSpec("offset", -3), log) == 0
        assert resolve_start(OffsetSpec("offset", 9), log) == 9
        assert stream.message_count == 5


def test_the_upkeep_pass_applies_max_age_without_an_append(tmp_path: Path):
    with LogManager(str(tmp_path)) as manager:
        stream = stream_on(manager, **{"x-max-age": "1h", "x-stream-max-segment-size-bytes": 64})
        stream.now_ms = lambda: NOW + 240_000  # the clock of the appends: nothing is old yet
        for i in range(4):
            append(stream, NOW + i * 60_000, f"m{i}".encode())
        assert [s.base_offset for s in stream.log.segments] == [0, 1, 2, 3]
        stream.now_ms = lambda: NOW + 3_600_000 + 90_000  # m0 and m1 are more than an hour old
        apply_stream_retention([stream, object()])
        assert [s.base_offset for s in stream.log.segments] == [2, 3]
        assert stream.message_count == 2
        stream.now_ms = lambda: NOW + 10 * 3_600_000
        apply_stream_retention([stream])
        assert [s.base_offset for s in stream.log.segments] == [3]  # the active one stays
