"""A compacted key -> value store on a log, like Kafka's __consumer_offsets.

Every put appends (key, value); a delete appends a tombstone (null value). On
open the log is replayed into a dict, the last record of a key winning. When
the log holds more than twice as many records as there are live keys (and at
least compact_min_records), the store compacts by copying forward: it rolls
the log, appends every live pair again, makes that durable, and deletes the
older segments. A crash anywhere in between leaves either the old records or
both (the copies are the same values), so compaction never loses a key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator

from .log import PartitionLog


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class OffsetsStore:
    """Durable dict of bytes -> bytes; see the module docstring."""

    def __init__(
        self, log: PartitionLog, *, compact_min_records: int = 10_000, clock_ms=_now_ms
    ) -> None:
        self.log = log
        self.compact_min_records = compact_min_records
        self.clock_ms = clock_ms
        self._data: dict[bytes, bytes] = {}
        self._compacted: tuple[int, int] | None = None  # (copies start, end) awaiting fsync
        self._replay()

    def _replay(self) -> None:
        offset = self.log.log_start_offset
        end = self.log.log_end_offset
        data = self._data
        while offset < end:
            records = self.log.read(offset, max_records=10_000, max_bytes=16 << 20)
            if not records:
                break
            for rec in records:
                if rec.value is None:
                    data.pop(rec.key, None)
                else:
                    data[rec.key] = rec.value
            offset = records[-1].offset + 1

    # ------------------------------------------------------------------- api
    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self._data.get(key, default)

    def __contains__(self, key: bytes) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._data.items()))

    def put(self, key: bytes, value: bytes) -> int:
        """Set key; returns the offset written (see durable_future)."""
        return self.put_many([(key, value)])

    def delete(self, key: bytes) -> int | None:
        """Remove key (a tombstone); None when it was not there."""
        if key not in self._data:
            return None
        return self.put_many([(key, None)])

    def put_many(self, items: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Set (or, with None, delete) several keys in one batch; returns the last offset."""
        now = self.clock_ms()
        records = []
        data = self._data
        for key, value in items:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
            records.append((now, key, value, b""))
        if not records:
            return self.log.log_end_offset - 1
        last = self.log.append(records)[-1]
        self._maybe_compact()
        return last

    def durable_future(self, offset: int) -> asyncio.Future | None:
        return self.log.durable_future(offset)

    async def wait_durable(self, offset: int) -> None:
        await self.log.wait_durable(offset)

    # ------------------------------------------------------------ compaction
    @property
    def record_count(self) -> int:
        return self.log.log_end_offset - self.log.log_start_offset

    def _maybe_compact(self) -> None:
        if self._compacted is not None:
            self._drop_compacted()
            return
        total = self.record_count
        if total >= self.compact_min_records and total > 2 * len(self._data):
            self.compact()

    def compact(self) -> None:
        """Copy the live pairs forward; drop the older segments once the copies are on disk.

        The fsync of the copies runs in a commit round when an event loop is
        running (the old segments go at a later put), or here without one.
        """
        self.log.roll()
        start = self.log.log_end_offset
        now = self.clock_ms()
        pairs = list(self._data.items())
        for i in range(0, len(pairs), 10_000):
            self.log.append([(now, k, v, b"") for k, v in pairs[i : i + 10_000]])
        self._compacted = (start, self.log.log_end_offset)
        self.log.request_flush()
        self._drop_compacted()

    def _drop_compacted(self) -> None:
        if self._compacted is not None and self.log.flushed_offset >= self._compacted[1]:
            self.log.delete_segments_below(self._compacted[0])
            self._compacted = None
