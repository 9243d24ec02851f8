"""Recovery after an unclean stop: torn and corrupt tails are cut at the last valid batch."""

from __future__ import annotations

import logging
import os

import pytest
from support.logstore import crash, records

from warrenmq.logstore import LogConfig
from warrenmq.logstore.records import BATCH_HEADER_SIZE


def _three_batches(make_manager):
    manager = make_manager(LogConfig(fsync="never", index_interval_bytes=128))
    part = manager.create_topic("t").partition(0)
    part.append(records(10, tag=b"a"))
    part.append(records(10, tag=b"b"))
    last = part.append(records(10, tag=b"c"))
    path = part.active.path
    size_before_last = part.active.size - (part.active.size - _position_of(part, last.start))
    crash(manager)
    return path, size_before_last


def _position_of(part, offset: int) -> int:
    pos, _epoch, _keep = part.active.records_in_batch_before(offset)
    return pos


@pytest.mark.parametrize("cut_into_last_batch", [1, BATCH_HEADER_SIZE - 1, BATCH_HEADER_SIZE + 7])
def test_a_file_cut_mid_batch_is_cut_back_to_the_last_valid_batch(
    make_manager, caplog, cut_into_last_batch
) -> None:
    path, last_batch_pos = _three_batches(make_manager)
    with open(path, "r+b") as f:
        f.truncate(last_batch_pos + cut_into_last_batch)
    with caplog.at_level(logging.WARNING, logger="warrenmq.logstore"):
        manager = make_manager()
    part = manager.topic("t").partition(0)
    assert part.log_end_offset == 20
    assert [r.value for r in part.read(10, 100)] == [r[2] for r in records(10, tag=b"b")]
    assert os.path.getsize(path) == last_batch_pos
    message = "\n".join(r.getMessage() for r in caplog.records)
    assert os.path.basename(path) in message and "offset 20" in message
    # New appends continue at the recovered end.
    assert part.append(records(1)).start == 20


def test_a_flipped_byte_in_the_last_batch_is_cut(make_manager, caplog) -> None:
    path, last_batch_pos = _three_batches(make_manager)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(last_batch_pos + (size - last_batch_pos) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))
    with caplog.at_level(logging.WARNING, logger="warrenmq.logstore"):
        manager = make_manager()
    part = manager.topic("t").partition(0)
    assert part.log_end_offset == 20
    assert "CRC mismatch" in caplog.text and os.path.basename(path) in caplog.text


def test_garbage_after_the_last_batch_is_cut(make_manager) -> None:
    path, _pos = _three_batches(make_manager)
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\x00" * 4096)  # a preallocated or half-written tail
    part = make_manager().topic("t").partition(0)
    assert part.log_end_offset == 30
    assert os.path.getsize(path) == size


def test_segments_after_a_corrupt_one_are_deleted(make_manager, caplog) -> None:
    manager = make_manager(LogConfig(fsync="never", segment_bytes=400))
    part = manager.create_topic("t").partition(0)
    for _ in range(12):
        part.append(records(3))
    assert len(part.segments) >= 4
    second = part.segments[1]
    crash(manager)
    with open(second.path, "r+b") as f:
        f.truncate(os.path.getsize(second.path) - 5)
    with caplog.at_level(logging.WARNING, logger="warrenmq.logstore"):
        part = make_manager().topic("t").partition(0)
    assert len(part.segments) == 2
    assert second.base_offset <= part.log_end_offset < second.next_offset
    offsets = [r.offset for r in part.read(0, 1000)] + [
        r.offset for r in part.read(second.base_offset, 1000)
    ]
    assert offsets == list(range(part.log_end_offset))
    assert "later segments" in caplog.text
    assert part.append(records(1)).start == offsets[-1] + 1


def test_indexes_are_rebuilt_not_trusted_after_a_crash(make_manager) -> None:
    manager = make_manager(LogConfig(fsync="never", index_interval_bytes=64))
    part = manager.create_topic("t").partition(0)
    for i in range(20):
        part.append(records(5, start_ts=1_000_000 + i * 100))
    index_path = part.active.index.path
    crash(manager)
    with open(index_path, "wb") as f:  # a stale, lying index file
        f.write(bytes.fromhex("00000005000000010000000a00000002"))
    part = make_manager().topic("t").partition(0)
    for offset in (0, 7, 33, 99):
        assert part.read(offset, 1)[0].offset == offset
    assert part.offset_for_time(1_000_000 + 1_050) == 55


def test_clean_shutdown_trusts_indexes_and_keeps_everything(make_manager) -> None:
    manager = make_manager(LogConfig(fsync="never", segment_bytes=2000, index_interval_bytes=64))
    part = manager.create_topic("t").partition(0)
    written = []
    for i in range(30):
        written += part.append(records(4, start_ts=2_000_000 + i * 10))
    manager.close()
    manager = make_manager()
    assert manager.recovered_cleanly
    part = manager.topic("t").partition(0)
    assert part.log_end_offset == len(written)
    got = []
    offset = 0
    while offset < part.log_end_offset:
        batch = part.read(offset, 7)
        got += [r.offset for r in batch]
        offset = batch[-1].offset + 1
    assert got == list(written)
