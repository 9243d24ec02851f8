"""A partition's log: ordered segments, offsets, durability, retention and recovery.

This is the part callers use. It puts LogSegments in order, appends batches
to the active one and rolls it by size and age, reads from any offset below
the high watermark, finds offsets by time, deletes whole old segments for
retention, truncates for replication, and tracks durability: which offsets an
fsync has covered, with futures that complete when a given offset is durable.

Offsets: log_start_offset <= ... < log_end_offset (LEO, the next offset to be
written). Readers see only offsets below the high watermark; on a single node
the high watermark follows the LEO, replication will move it separately.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import time
from bisect import bisect_right
from collections.abc import Sequence
from time import perf_counter

from .commit import GroupCommitter, SyncJob, run_job
from .config import LogConfig
from .epochs import LeaderEpochCache
from .errors import LogClosedError, OffsetOutOfRangeError
from .fileio import fsync_dir, write_file_atomic
from .records import Record, RecordInput, encode_batch
from .segment import NO_TIMESTAMP, LogSegment

log = logging.getLogger("warrenmq.logstore")

RECOVERY_POINT_FILE = "recovery-point"
_ALWAYS, _INTERVAL, _NEVER = "always", "interval", "never"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PartitionLog:
    """One partition of a topic, in its own directory; see the module docstring."""

    def __init__(
        self,
        directory: str,
        config: LogConfig | None = None,
        *,
        clean: bool = False,
        committer: GroupCommitter | None = None,
        clock_ms=_now_ms,
    ) -> None:
        self.directory = directory
        self.config = config or LogConfig()
        self.clock_ms = clock_ms
        self._committer = committer or GroupCommitter()
        self._stats = self._committer.stats  # per-batch observations, see stats.py
        self._policy = self.config.fsync
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self._closed = False
        # Durability: offsets below _flushed_offset are fsynced.
        self._flushed_offset = 0
        self._rolled_unflushed: list[LogSegment] = []
        self._dir_dirty = False
        self._sync_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush_ms = 0
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self.sync_error: BaseException | None = None
        # Replication keeps the high watermark itself; alone, it follows the LEO.
        self.hw_follows_leo = True
        self._high_watermark = 0
        os.makedirs(directory, exist_ok=True)
        self.epochs = LeaderEpochCache(directory)
        self._load(clean)

    # ---------------------------------------------------------------- offsets
    @property
    def active(self) -> LogSegment:
        return self.segments[-1]

    @property
    def log_start_offset(self) -> int:
        return self.segments[0].base_offset

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        if self.hw_follows_leo:
            return self.segments[-1].next_offset
        return self._high_watermark

    def update_high_watermark(self, offset: int) -> None:
        """Set the high watermark (replication), never past the LEO."""
        self.hw_follows_leo = False
        self._high_watermark = max(self.log_start_offset, min(offset, self.log_end_offset))

    @property
    def flushed_offset(self) -> int:
        """Offsets below this are on disk (fsynced)."""
        return self._flushed_offset

    @property
    def durable_offset(self) -> int:
        """Offsets below this are durable under the fsync policy (for confirms).

        Only `always` waits for an fsync. `interval` and `never` count an append
        as durable at once, as Kafka's flush.ms does: the timer of `interval`
        only bounds how much a power loss can take.
        """
        if self._policy == _ALWAYS:
            return self._flushed_offset
        return self.segments[-1].next_offset

    @property
    def size_bytes(self) -> int:
        return sum(seg.size for seg in self.segments)

    # ------------------------------------------------------------------ load
    def _load(self, clean: bool) -> None:
        names = os.listdir(self.directory)
        bases = []
        for name in names:
            if name.endswith(".tmp"):
                os.unlink(os.path.join(self.directory, name))
            elif name.endswith(".log") and len(name) == 24 and name[:20].isdigit():
                bases.append(int(name[:20]))
        bases.sort()
        present = set(bases)
        for name in names:  # indexes whose segment is gone
            stem = name.split(".", 1)[0]
            if name.endswith((".index", ".timeindex")) and stem.isdigit() and int(stem) not in present:
                os.unlink(os.path.join(self.directory, name))
        recovery_point = self._read_recovery_point()
        interval = self.config.index_interval_bytes
        for i, base in enumerate(bases):
            next_base = bases[i + 1] if i + 1 < len(bases) else None
            trusted = clean or (next_base is not None and next_base <= recovery_point)
            seg = LogSegment.open(self.directory, base, interval, trusted)
            if self.segments and seg.base_offset != self.segments[-1].next_offset:
                log.warning(
                    "recovery: %s: expected a segment at offset %d; deleting %s and later segments",
                    self.directory,
                    self.segments[-1].next_offset,
                    os.path.basename(seg.path),
                )
                seg.delete()
                for later in bases[i + 1 :]:
                    LogSegment(self.directory, later, interval).delete()
                break
            self.segments.append(seg)
        if not self.segments:
            self.segments.append(LogSegment.create(self.directory, 0, interval))
            self._dir_dirty = True
        self._bases = [seg.base_offset for seg in self.segments]
        self.epochs.truncate_from_end(self.log_end_offset)
        self._epoch = self.epochs.latest_epoch
        if not clean:
            # What recovery kept may still be only in the page cache: make it
            # durable once, so durable_offset means the same after a restart.
            for seg in self.segments:
                if seg.base_offset >= recovery_point or seg is self.active:
                    os.fdatasync(seg.fd)
            fsync_dir(self.directory)
            self._dir_dirty = False
        self._flushed_offset = self.log_end_offset
        self._high_watermark = self.log_end_offset
        self._last_flush_ms = self.clock_ms()

    def _read_recovery_point(self) -> int:
        try:
            with open(os.path.join(self.directory, RECOVERY_POINT_FILE), encoding="ascii") as f:
                return int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def checkpoint(self) -> None:
        """Persist the recovery point: segments wholly below it are not re-checked.

        Not fsynced: the file only ever names offsets that are already on disk,
        so a lost or stale checkpoint just means more to re-check.
        """
        self._check_open()
        write_file_atomic(
            os.path.join(self.directory, RECOVERY_POINT_FILE),
            str(self._flushed_offset).encode("ascii"),
            durable=False,
        )

    def request_flush(self) -> None:
        """Fsync what is appended so far: in the next commit round, or now without a loop."""
        self._check_open()
        if self._has_loop():
            self._schedule_sync(now=True)
        else:
            self.flush()

    @staticmethod
    def _has_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    # ---------------------------------------------------------------- append
    def append(self, records: Sequence[RecordInput], leader_epoch: int | None = None) -> range:
        """Append records as one batch; returns their offsets.

        Each record is (timestamp ms, key, value, headers bytes). The batch is
        written with one os.write; its durability follows the fsync policy.
        """
        if self._closed:
            raise LogClosedError(f"log {self.directory} is closed")
        seg = self.segments[-1]
        base = seg.next_offset
        n = len(records)
        if not n:
            return range(base, base)
        started = perf_counter()
        if leader_epoch is None:
            leader_epoch = self._epoch
        elif leader_epoch > self._epoch:
            self.become_leader(leader_epoch)
        batch, first_ts, max_ts = encode_batch(base, leader_epoch, records)
        if seg.size and (
            not seg.can_hold(len(batch), base + n - 1, self.config.segment_bytes)
            or max_ts - seg.first_timestamp > self.config.segment_ms
        ):
            seg = self._roll()
        seg.append(batch, base, n, first_ts, max_ts)
        if not self._sync_pending and self._policy != _NEVER:
            self._schedule_sync()
        stats = self._stats
        stats.append_seconds.observe(perf_counter() - started)
        stats.append_records.observe(n)
        return range(base, base + n)

    def roll(self) -> None:
        """Start a new active segment now (no-op when the active one is empty)."""
        self._check_open()
        if self.active.size:
            self._roll()

    def _roll(self) -> LogSegment:
        old = self.active
        old.seal()
        self._rolled_unflushed.append(old)
        seg = LogSegment.create(self.directory, old.next_offset, self.config.index_interval_bytes)
        self.segments.append(seg)
        self._bases.append(seg.base_offset)
        self._dir_dirty = True
        # A rolled segment is made durable whatever the policy, as Kafka does,
        # so the recovery point can move past it (in the next commit round).
        if not self._sync_pending and self._has_loop():
            self._schedule_sync(now=True)
        return seg

    # ------------------------------------------------------------ durability
    def _schedule_sync(self, now: bool = False) -> None:
        """Arrange an fsync: after an append (by policy), or now (a roll, a request).

        With a running event loop the fsync runs in a commit round; without one
        (tools, some tests) durability is synchronous: `always` fsyncs inside
        append, `interval` at the first append after the interval, and a roll
        alone waits for flush() or close().
        """
        self._sync_pending = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            if now or self._policy == _ALWAYS:
                self._committer.request(self)
            elif self._timer is None:
                self._timer = loop.call_later(
                    self.config.fsync_interval_ms / 1000, self._interval_elapsed
                )
            return
        self._sync_pending = False
        if self._policy == _ALWAYS or (
            self._policy == _INTERVAL
            and self.clock_ms() - self._last_flush_ms >= self.config.fsync_interval_ms
        ):
            self.flush()

    def _interval_elapsed(self) -> None:
        self._timer = None
        if not self._closed:
            self._committer.request(self)

    def sync_prepare(self) -> SyncJob:
        """Called by the committer on the loop: what the next fsync round covers."""
        self._sync_pending = False
        if self._closed:
            return SyncJob([], self._flushed_offset)
        segs = self._rolled_unflushed + [self.active]
        self._rolled_unflushed = []
        job = SyncJob(
            [os.dup(seg.fd) for seg in segs],
            self.log_end_offset,
            self.directory if self._dir_dirty else None,
            records=max(0, self.log_end_offset - self._flushed_offset),
        )
        self._dir_dirty = False
        return job

    def sync_done(self, job: SyncJob) -> None:
        """Called by the committer on the loop when the round's fsyncs returned."""
        self._last_flush_ms = self.clock_ms()
        if job.error is not None:
            self.sync_error = job.error
            log.error("fsync failed in %s: %s", self.directory, job.error)
            waiters, self._waiters = self._waiters, []
            for _o, _s, fut in waiters:
                if not fut.done():
                    fut.set_exception(job.error)
            return
        if job.end_offset > self._flushed_offset:
            self._flushed_offset = min(job.end_offset, self.log_end_offset)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        durable = self.durable_offset
        waiters = self._waiters
        while waiters and waiters[0][0] < durable:
            fut = heapq.heappop(waiters)[2]
            if not fut.done():
                fut.set_result(None)

    def flush(self) -> None:
        """Fsync everything appended so far, now, on this thread."""
        self._check_open()
        job = self.sync_prepare()
        run_job(job)
        self.sync_done(job)
        if job.error is not None:
            raise job.error

    def durable_future(self, offset: int) -> asyncio.Future | None:
        """A future done when offset is durable, or None if it already is."""
        if offset < self.durable_offset:
            return None
        if self.sync_error is not None:
            raise self.sync_error
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (offset, next(self._seq), fut))
        if not self._sync_pending:
            self._schedule_sync()
        return fut

    async def wait_durable(self, offset: int) -> None:
        """Return once offset is durable under the fsync policy."""
        fut = self.durable_future(offset)
        if fut is not None:
            await fut

    # ------------------------------------------------------------------ read
    def _segment_index(self, offset: int) -> int:
        return bisect_right(self._bases, offset) - 1

    def read(self, offset: int, max_records: int = 1000, max_bytes: int = 1 << 20) -> list[Record]:
        """Records from offset on, below the high watermark (empty at the end).

        Raises OffsetOutOfRangeError below the log start.
        """
        self._check_open()
        if offset < self.log_start_offset:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, self.log_end_offset)
        limit = self.high_watermark
        i = self._segment_index(offset)
        segments = self.segments
        while i < len(segments) and offset < limit:
            out = segments[i].read(offset, max_records, max_bytes, limit)
            if out:
                return out
            i += 1
        return []

    def offset_for_time(self, timestamp: int) -> int | None:
        """The first offset whose record timestamp is >= timestamp, or None."""
        self._check_open()
        limit = self.high_watermark
        for seg in self.segments:
            found = seg.offset_for_time(timestamp)
            if found is not None:
                return found if found < limit else None
        return None

    # ------------------------------------------------------------- retention
    def delete_segments_below(self, offset: int) -> int:
        """Delete whole segments whose records are all below offset (never the active one)."""
        self._check_open()
        n = 0
        while len(self.segments) > 1 and self.segments[0].next_offset <= offset:
            self._delete_oldest()
            n += 1
        return n

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete old segments by the topic's retention_ms and retention_bytes."""
        self._check_open()
        cfg = self.config
        n = 0
        if cfg.retention_ms >= 0:
            now = self.clock_ms() if now_ms is None else now_ms
            while len(self.segments) > 1 and (
                self.segments[0].max_timestamp < now - cfg.retention_ms
            ):
                self._delete_oldest()
                n += 1
        if cfg.retention_bytes >= 0:
            total = self.size_bytes
            while len(self.segments) > 1 and total - self.segments[0].size >= cfg.retention_bytes:
                total -= self.segments[0].size
                self._delete_oldest()
                n += 1
        return n

    def _delete_oldest(self) -> None:
        seg = self.segments.pop(0)
        self._bases.pop(0)
        if seg in self._rolled_unflushed:
            self._rolled_unflushed.remove(seg)
        seg.delete()
        self._dir_dirty = True

    # ---------------------------------------------------------- replication
    def truncate_to(self, offset: int) -> None:
        """Remove every record at or after offset (replication's divergence repair)."""
        self._check_open()
        if offset >= self.log_end_offset:
            return
        interval = self.config.index_interval_bytes
        if offset <= self.log_start_offset:
            for seg in self.segments:
                seg.delete()
            self.segments = [LogSegment.create(self.directory, offset, interval)]
            self._bases = [offset]
        else:
            while self.segments[-1].base_offset >= offset:
                self.segments.pop().delete()
                self._bases.pop()
            seg = self.segments[-1]
            pos, epoch, keep = seg.records_in_batch_before(offset)
            for path in (seg.index.path, seg.time_index.path):
                if os.path.exists(path):
                    os.unlink(path)
            seg.truncate_bytes(pos)
            if keep:
                batch, first_ts, max_ts = encode_batch(
                    keep[0].offset, epoch, [(r.timestamp, r.key, r.value, r.headers) for r in keep]
                )
                seg.append(batch, keep[0].offset, len(keep), first_ts, max_ts)
        self._rolled_unflushed = [s for s in self._rolled_unflushed if s in self.segments]
        self._dir_dirty = True
        self.epochs.truncate_from_end(self.log_end_offset)
        self._epoch = self.epochs.latest_epoch
        self._flushed_offset = min(self._flushed_offset, self.log_end_offset)
        self._high_watermark = min(self._high_watermark, self.log_end_offset)
        self.flush()
        self.checkpoint()

    def become_leader(self, epoch: int) -> None:
        """Start a new leader epoch at the current log end."""
        self.epochs.assign(epoch, self.log_end_offset)
        self._epoch = self.epochs.latest_epoch

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Seal the active segment, fsync everything, write the checkpoint, close files."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.active.seal()
        self.flush()
        self.checkpoint()
        self._closed = True
        for seg in self.segments:
            seg.close()

    def delete(self) -> None:
        """Close and remove every file of this partition."""
        if not self._closed:
            if self._timer is not None:
                self._timer.cancel()
            self._closed = True
        for seg in self.segments:
            seg.delete()
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        os.rmdir(self.directory)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"log {self.directory} is closed")

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.directory!r}, start={self.log_start_offset}, "
            f"end={self.log_end_offset}, segments={len(self.segments)})"
        )


__all__ = ["PartitionLog", "NO_TIMESTAMP"]
