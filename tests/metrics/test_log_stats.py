"""The log's own histograms: bucket rules, and what appends and commit rounds record."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from warrenmq.logstore import Histogram, LogConfig, LogManager


def test_a_value_on_a_bound_counts_in_that_bucket() -> None:
    hist = Histogram((1, 10, 100))
    for value in (0.5, 1, 1.5, 10, 100, 101, 5000):
        hist.observe(value)
    assert hist.counts == [2, 2, 1, 2]
    assert hist.cumulative() == [(1, 2), (10, 4), (100, 5), (float("inf"), 7)]
    assert hist.count == 7
    assert hist.sum == 0.5 + 1 + 1.5 + 10 + 100 + 101 + 5000


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError):
        Histogram((1, 1, 2))
    with pytest.raises(ValueError):
        Histogram((2, 1))


def test_appends_and_commit_rounds_are_recorded_per_batch_and_per_round(tmp_path: Path) -> None:
    batches = [3, 1, 5, 2]

    async def run() -> LogManager:
        manager = LogManager(str(tmp_path / "data"), LogConfig(fsync="always"))
        log = manager.create_topic("t").partition(0)
        for size in batches:
            offsets = log.append([(1, None, b"v", b"")] * size)
            await asyncio.sleep(0)  # let a commit round start between some appends
        await log.wait_durable(offsets[-1])
        await manager.committer.wait_idle()
        return manager

    manager = asyncio.run(run())
    try:
        stats = manager.stats
        assert stats.append_records.count == len(batches)
        assert stats.append_records.sum == sum(batches)
        assert stats.append_seconds.count == len(batches)
        assert stats.append_seconds.sum > 0
        rounds = manager.committer.rounds
        assert rounds >= 1
        assert stats.fsync_seconds.count == rounds
        assert stats.round_logs.count == rounds
        assert stats.round_logs.sum == rounds  # one log, once per round
        assert stats.round_records.sum == sum(batches)  # every record made durable exactly once
    finally:
        manager.close()
