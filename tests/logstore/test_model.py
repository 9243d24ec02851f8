"""Random sequences of log operations agree with a plain in-memory model.

The model is a list of records plus a log start offset. Every operation the
log supports (append, roll, read by offset, read by time, retention by
offset, age and size, clean close and reopen, crash and reopen) is run on
both, and after each step the log must answer exactly what the model says.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from warrenmq.logstore import LogConfig, LogManager, OffsetOutOfRangeError

TOPIC = "orders/../model"

record_st = st.tuples(
    st.integers(min_value=0, max_value=2_000),  # timestamp step (may go back: see below)
    st.one_of(st.none(), st.binary(max_size=12)),
    st.one_of(st.none(), st.binary(max_size=300)),
    st.binary(max_size=20),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


class LogModel(RuleBasedStateMachine):
    """One topic partition through a LogManager, against a list."""

    @initialize(
        segment_bytes=st.sampled_from([300, 700, 2_000, 1 << 20]),
        index_interval=st.sampled_from([1, 64, 4096]),
        segment_ms=st.sampled_from([5_000, 10**9]),
    )
    def setup(self, segment_bytes: int, index_interval: int, segment_ms: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="wmq-model-")
        self.clock = Clock()
        self.config = LogConfig(
            segment_bytes=segment_bytes,
            segment_ms=segment_ms,
            index_interval_bytes=index_interval,
            fsync="never",
        )
        self.records: list[tuple[int, int, bytes | None, bytes | None, bytes]] = []
        self.start = 0
        self.ts = self.clock.now
        self._open()
        self.manager.create_topic(TOPIC, 1, self.config)

    def _open(self) -> None:
        self.manager = LogManager(self.dir, self.config, clock_ms=self.clock)

    @property
    def log(self):
        return self.manager.topic(TOPIC).partition(0)

    def teardown(self) -> None:
        if getattr(self, "manager", None) is not None:
            self.manager.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def end(self) -> int:
        return self.start + len(self.live)

    @property
    def live(self):
        return [r for r in self.records if r[0] >= self.start]

    # ------------------------------------------------------------ writes
    @rule(batch=st.lists(record_st, min_size=1, max_size=8), backwards=st.booleans())
    def append(self, batch, backwards: bool) -> None:
        inputs = []
        for step, key, value, headers in batch:
            # Mostly rising timestamps, sometimes a step back (clients' clocks).
            self.ts = self.ts - step // 4 if backwards else self.ts + step
            inputs.append((self.ts, key, value, headers))
        offsets = self.log.append(inputs)
        assert list(offsets) == list(range(self.end, self.end + len(inputs)))
        for offset, (ts, key, value, headers) in zip(offsets, inputs, strict=True):
            self.records.append((offset, ts, key, value, headers))

    @rule()
    def roll(self) -> None:
        segments = len(self.log.segments)
        had_data = self.log.active.size > 0
        self.log.roll()
        assert len(self.log.segments) == segments + (1 if had_data else 0)

    # ------------------------------------------------------------- reads
    @rule(data=st.data(), max_records=st.integers(1, 20), max_bytes=st.integers(1, 2_000))
    def read_from_offset(self, data, max_records: int, max_bytes: int) -> None:
        offset = data.draw(st.integers(min_value=max(0, self.start - 3), max_value=self.end + 3))
        if offset < self.start:
            try:
                self.log.read(offset, max_records, max_bytes)
            except OffsetOutOfRangeError:
                return
            raise AssertionError(f"read below the log start {self.start} did not fail")
        got = self.log.read(offset, max_records, max_bytes)
        expected = [r for r in self.live if r[0] >= offset]
        if expected:
            assert got, f"nothing read at {offset} though {len(expected)} records follow"
        assert len(got) <= max_records
        assert [tuple(r) for r in got] == expected[: len(got)]
        sizes = [len(r.key or b"") + len(r.value or b"") for r in got]
        assert sum(sizes[:-1]) < max_bytes or len(got) <= 1

    @rule(data=st.data())
    def read_by_time(self, data) -> None:
        live = self.live
        candidates = [r[1] for r in live] + [self.ts + 1, self.clock.now - 10**6]
        target = data.draw(st.sampled_from(candidates) | st.integers(0, 2 * 10**12))
        found = self.log.offset_for_time(target)
        expected = next((r[0] for r in live if r[1] >= target), None)
        assert found == expected, (target, found, expected)

    @invariant()
    def offsets_agree(self) -> None:
        if getattr(self, "manager", None) is None:
            return
        assert self.log.log_start_offset == self.start
        assert self.log.log_end_offset == self.end
        assert self.log.high_watermark == self.end

    # --------------------------------------------------------- retention
    @rule(data=st.data())
    def delete_below(self, data) -> None:
        target = data.draw(st.integers(min_value=0, max_value=self.end + 2))
        active_base = self.log.active.base_offset
        self.log.delete_segments_below(target)
        new_start = self.log.log_start_offset
        assert self.start <= new_start <= max(self.start, min(target, active_base))
        if target >= self.end:
            assert new_start == active_base, "every settled segment but the active must go"
        self.start = new_start

    @rule(age=st.integers(min_value=0, max_value=20_000))
    def retain_by_age(self, age: int) -> None:
        self.clock.now = max(self.clock.now, self.ts)
        part = self.log
        part.config = self.config.replace(retention_ms=age)
        cutoff = self.clock.now - age
        before = self.start
        part.apply_retention()
        part.config = self.config
        new_start = part.log_start_offset
        deleted = [r for r in self.records if before <= r[0] < new_start]
        assert all(r[1] < cutoff for r in deleted), "a segment with a recent record was deleted"
        if len(part.segments) > 1:
            first = [r[1] for r in self.live if new_start <= r[0] < part.segments[1].base_offset]
            assert max(first) >= cutoff, "an expired segment was left at the head"
        self.start = new_start

    @rule(limit=st.integers(min_value=0, max_value=5_000))
    def retain_by_size(self, limit: int) -> None:
        part = self.log
        part.config = self.config.replace(retention_bytes=limit)
        part.apply_retention()
        part.config = self.config
        total = part.size_bytes
        assert len(part.segments) == 1 or total - part.segments[0].size < limit
        assert part.log_start_offset >= self.start
        self.start = part.log_start_offset

    # ------------------------------------------------------- restarts
    @rule()
    def close_and_reopen(self) -> None:
        self.manager.close()
        assert os.path.exists(os.path.join(self.dir, ".clean-shutdown"))
        self._open()
        assert self.manager.recovered_cleanly

    @precondition(lambda self: getattr(self, "manager", None) is not None)
    @rule()
    def crash_and_reopen(self) -> None:
        """Drop the manager without closing it: no marker, no sealed indexes."""
        for part in self.manager.all_logs():
            for seg in part.segments:
                seg.close()
        self.manager = None
        self._open()
        assert not self.manager.recovered_cleanly


LogModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLogModel = LogModel.TestCase
