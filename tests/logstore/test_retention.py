"""Retention deletes whole segments only, never the active one, and holds across restarts."""

from __future__ import annotations

import os

from support.logstore import records

from warrenmq.logstore import LogConfig, OffsetOutOfRangeError


def _segment_files(part) -> list[str]:
    return sorted(n for n in os.listdir(part.directory) if n.endswith(".log"))


def _filled(make_manager, config: LogConfig, batches: int = 20, **kwargs):
    manager = make_manager(config, **kwargs)
    part = manager.create_topic("work", config=config).partition(0)
    for i in range(batches):
        part.append(records(5, start_ts=1_000_000 + i * 1_000))
    return manager, part


def test_delete_below_a_settled_offset_removes_whole_segments_and_survives_restart(
    make_manager,
) -> None:
    config = LogConfig(fsync="never", segment_bytes=800)
    manager, part = _filled(make_manager, config)
    bases = [s.base_offset for s in part.segments]
    assert len(bases) > 4
    settled = bases[3] + 2  # inside the fourth segment
    assert part.delete_segments_below(settled) == 3
    assert part.log_start_offset == bases[3]
    assert len(_segment_files(part)) == len(bases) - 3
    manager.close()
    part = make_manager().topic("work").partition(0)
    assert part.log_start_offset == bases[3]
    assert part.read(bases[3], 1)[0].offset == bases[3]
    try:
        part.read(bases[3] - 1, 1)
    except OffsetOutOfRangeError as exc:
        assert exc.log_start == bases[3]
    else:
        raise AssertionError("reading a deleted offset must fail")


def test_the_active_segment_is_never_deleted(make_manager) -> None:
    config = LogConfig(fsync="never", segment_bytes=800)
    _manager, part = _filled(make_manager, config)
    end = part.log_end_offset
    part.delete_segments_below(end + 100)
    assert len(part.segments) == 1
    assert part.log_start_offset == part.active.base_offset
    assert part.read(part.log_start_offset, 1000)[-1].offset == end - 1


def test_retention_by_age_uses_each_segment_newest_record(make_manager) -> None:
    now = [1_000_000]
    config = LogConfig(fsync="never", segment_bytes=800, retention_ms=5_500)
    manager, part = _filled(make_manager, config, clock_ms=lambda: now[0])
    now[0] = 1_000_000 + 19_000  # the newest record's time
    deleted = part.apply_retention()
    assert deleted > 0
    first = part.segments[0]
    assert first.max_timestamp >= now[0] - 5_500
    assert all(r.timestamp >= 1_000_000 for r in part.read(part.log_start_offset, 1000))
    start = part.log_start_offset
    manager.close()
    part = make_manager(clock_ms=lambda: now[0]).topic("work").partition(0)
    assert part.log_start_offset == start
    assert part.config.retention_ms == 5_500  # the topic's settings came back with it


def test_retention_by_size_keeps_total_at_most_the_limit(make_manager) -> None:
    config = LogConfig(fsync="never", segment_bytes=800, retention_bytes=2_000)
    manager, part = _filled(make_manager, config)
    before = part.size_bytes
    assert before > 2_000
    assert manager.apply_retention() > 0
    assert part.size_bytes - part.segments[0].size < 2_000
    assert part.size_bytes <= before


def test_rolling_by_age_uses_record_time(make_manager) -> None:
    config = LogConfig(fsync="never", segment_ms=10_000)
    manager = make_manager(config)
    part = manager.create_topic("aged", config=config).partition(0)
    part.append(records(3, start_ts=1_000_000))
    part.append(records(3, start_ts=1_009_000))
    assert len(part.segments) == 1
    part.append(records(3, start_ts=1_010_001))
    assert len(part.segments) == 2 and part.active.base_offset == 6
