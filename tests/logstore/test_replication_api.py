"""What replication will build on: leader epochs, high watermark and truncate_to."""

from __future__ import annotations

from support.logstore import records

from warrenmq.logstore import LogConfig


def test_leader_epochs_are_stamped_cached_and_persisted(make_manager) -> None:
    manager = make_manager(LogConfig(fsync="never", segment_bytes=600))
    part = manager.create_topic("t").partition(0)
    part.become_leader(1)
    part.append(records(5))
    part.become_leader(3)
    part.append(records(5))
    assert part.epochs.entries == [(1, 0), (3, 5)]
    assert part.epochs.end_offset_for(1, part.log_end_offset) == (1, 5)
    assert part.epochs.end_offset_for(2, part.log_end_offset) == (1, 5)
    assert part.epochs.end_offset_for(3, part.log_end_offset) == (3, 10)
    assert part.epochs.end_offset_for(0, part.log_end_offset) == (-1, -1)
    manager.close()
    part = make_manager().topic("t").partition(0)
    assert part.epochs.entries == [(1, 0), (3, 5)]


def test_truncate_to_cuts_exactly_even_inside_a_batch(make_manager) -> None:
    manager = make_manager(LogConfig(fsync="never", segment_bytes=700))
    part = manager.create_topic("t").partition(0)
    part.become_leader(1)
    for _ in range(6):
        part.append(records(4))
    part.become_leader(2)
    part.append(records(4))
    assert len(part.segments) > 2
    before = part.read(0, 100) + part.read(part.segments[1].base_offset, 100)
    part.truncate_to(10)  # inside the third batch
    assert part.log_end_offset == 10
    assert part.epochs.entries == [(1, 0)]
    kept = []
    offset = 0
    while offset < part.log_end_offset:
        kept += part.read(offset, 100)
        offset = kept[-1].offset + 1
    assert kept == [r for r in before if r.offset < 10]
    assert part.append(records(1)).start == 10
    manager.close()
    part = make_manager().topic("t").partition(0)
    assert part.log_end_offset == 11


def test_readers_stop_at_the_high_watermark(make_manager) -> None:
    part = make_manager().create_topic("t").partition(0)
    part.append(records(10))
    assert part.high_watermark == 10
    part.update_high_watermark(4)
    assert [r.offset for r in part.read(0, 100)] == [0, 1, 2, 3]
    assert part.read(4, 100) == []
    part.append(records(2))
    assert part.high_watermark == 4 and part.log_end_offset == 12
