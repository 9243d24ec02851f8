"""One segment of a partition: a .log file of record batches and its two indexes.

A segment knows its base offset, its size and the offset after its last
record. It appends whole batches, reads records from any offset, finds the
first record at or after a timestamp, and recovers itself after an unclean
stop by re-checking every batch and cutting a torn or corrupt tail. It knows
nothing of the other segments: PartitionLog puts them in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterator

from .errors import CorruptBatchError
from .fileio import write_all
from .index import OffsetIndex, TimeIndex
from .records import (
    BATCH_HEADER_SIZE,
    LENGTH_PREFIX,
    BatchHeader,
    Record,
    check_batch,
    decode_into,
    read_header,
)

log = logging.getLogger("warrenmq.logstore")

READ_CHUNK = 256 * 1024
MAX_READ_CHUNK = 8 * 1024 * 1024
_unpack_length = struct.Struct(">i").unpack_from
# Relative offsets and positions are u32 in the indexes.
MAX_SEGMENT_BYTES = 2**31 - 1
MAX_RELATIVE_OFFSET = 2**32 - 2
NO_TIMESTAMP = -(2**63)


def segment_file_name(base_offset: int, suffix: str = ".log") -> str:
    return f"{base_offset:020d}{suffix}"


class LogSegment:
    """A .log file with its .index and .timeindex; see the module docstring."""

    __slots__ = (
        "base_offset",
        "path",
        "index",
        "time_index",
        "fd",
        "size",
        "next_offset",
        "max_timestamp",
        "first_timestamp",
        "index_interval",
        "_bytes_since_index",
    )

    def __init__(self, directory: str, base_offset: int, index_interval: int) -> None:
        self.base_offset = base_offset
        self.path = os.path.join(directory, segment_file_name(base_offset))
        stem = self.path[:-4]
        self.index = OffsetIndex(stem + ".index")
        self.time_index = TimeIndex(stem + ".timeindex")
        self.fd = -1
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp = NO_TIMESTAMP
        self.first_timestamp = NO_TIMESTAMP
        self.index_interval = index_interval
        self._bytes_since_index = 0

    # ------------------------------------------------------------------ open
    @classmethod
    def create(cls, directory: str, base_offset: int, index_interval: int) -> LogSegment:
        """A new, empty segment (an empty leftover file of the same name is reused)."""
        seg = cls(directory, base_offset, index_interval)
        seg.fd = os.open(seg.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        return seg

    @classmethod
    def open(
        cls, directory: str, base_offset: int, index_interval: int, trusted: bool
    ) -> LogSegment:
        """Open an existing segment.

        trusted: the segment was closed cleanly (or lies below the recovery
        point), so its index files are loaded after a sanity check and only the
        tail after the last index entry is re-checked. Otherwise, or when a
        check fails, every batch is re-checked and the indexes are rebuilt.
        """
        seg = cls(directory, base_offset, index_interval)
        seg.fd = os.open(seg.path, os.O_RDWR | os.O_APPEND)
        seg.size = os.fstat(seg.fd).st_size
        if not (trusted and seg._load_trusted()):
            seg.recover()
        return seg

    def _load_trusted(self) -> bool:
        if not self.index.load(self.size):
            return False
        rel_start, pos = self.index.lookup(MAX_RELATIVE_OFFSET + 1)
        if not self.time_index.load(MAX_RELATIVE_OFFSET + 1):
            self.index.clear()
            return False
        last_time = self.time_index.last()
        if last_time is not None and last_time[1] < rel_start:
            # Entries are written together; a time index behind the offset
            # index cannot give the running maximum, so rebuild both.
            self.index.clear()
            self.time_index.clear()
            return False
        running_max = last_time[0] if last_time is not None else NO_TIMESTAMP
        next_offset = self.base_offset + rel_start
        try:
            for _pos, header in self._scan(pos, next_offset, verify=True):
                next_offset = header.next_offset
                running_max = max(running_max, header.max_timestamp)
        except CorruptBatchError:
            self.index.clear()
            self.time_index.clear()
            return False
        self.next_offset = next_offset
        self.max_timestamp = running_max
        if self.size:
            self.first_timestamp = read_header(os.pread(self.fd, BATCH_HEADER_SIZE, 0)).first_timestamp
        self._bytes_since_index = self.size - pos
        return True

    def recover(self) -> int:
        """Re-check every batch, rebuild both indexes, cut an invalid tail.

        Returns the number of bytes cut (0 when the segment was whole).
        """
        self.index.clear()
        self.time_index.clear()
        self.next_offset = self.base_offset
        self.max_timestamp = NO_TIMESTAMP
        self.first_timestamp = NO_TIMESTAMP
        self._bytes_since_index = 0
        valid = 0
        try:
            for pos, header in self._scan(0, self.base_offset, verify=True):
                self._note_batch(pos, header)
                valid = pos + header.size
        except CorruptBatchError as exc:
            log.warning(
                "recovery: %s: invalid batch at offset %d (byte %d): %s; cutting %d bytes",
                self.path,
                self.next_offset,
                valid,
                exc,
                self.size - valid,
            )
        cut = self.size - valid
        if cut:
            os.ftruncate(self.fd, valid)
            self.size = valid
        return cut

    def _note_batch(self, pos: int, header: BatchHeader) -> None:
        """Account for a batch written at pos: indexes, offsets, timestamps."""
        if self._bytes_since_index >= self.index_interval:
            rel = header.base_offset - self.base_offset
            self.index.append(rel, pos)
            self.time_index.append(self.max_timestamp, rel)
            self._bytes_since_index = 0
        self._bytes_since_index += header.size
        self.next_offset = header.next_offset
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
        if self.first_timestamp == NO_TIMESTAMP:
            self.first_timestamp = header.first_timestamp

    # ---------------------------------------------------------------- append
    def can_hold(self, batch_size: int, last_offset: int, max_bytes: int) -> bool:
        """Whether a batch fits here without passing the size or offset limits."""
        if self.size == 0:
            return True
        return (
            self.size + batch_size <= min(max_bytes, MAX_SEGMENT_BYTES)
            and last_offset - self.base_offset <= MAX_RELATIVE_OFFSET
        )

    def append(
        self, batch: bytes, base_offset: int, count: int, first_ts: int, max_ts: int
    ) -> None:
        """Write one encoded batch at the end of the file."""
        if self._bytes_since_index >= self.index_interval:
            rel = base_offset - self.base_offset
            self.index.append(rel, self.size)
            self.time_index.append(self.max_timestamp, rel)
            self._bytes_since_index = 0
        write_all(self.fd, batch)
        n = len(batch)
        self.size += n
        self._bytes_since_index += n
        self.next_offset = base_offset + count
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
        if self.first_timestamp == NO_TIMESTAMP:
            self.first_timestamp = first_ts

    # ------------------------------------------------------------------ read
    def _scan(
        self, pos: int, expected_base: int | None, verify: bool, end: int | None = None
    ) -> Iterator[tuple[int, BatchHeader]]:
        """Yield (position, header) of each batch from pos to the end of the file."""
        for pos_, header, _buf, _bpos in self._batches(pos, expected_base, verify, end):
            yield pos_, header

    def _batches(
        self,
        pos: int,
        expected_base: int | None,
        verify: bool,
        end: int | None = None,
        chunk: int = READ_CHUNK,
    ) -> Iterator[tuple[int, BatchHeader, bytes, int]]:
        """Yield (position, header, buffer, position in buffer) of each batch."""
        end = self.size if end is None else end
        buf = b""
        buf_start = pos
        while pos < end:
            bpos = pos - buf_start
            if len(buf) - bpos < BATCH_HEADER_SIZE:
                buf = os.pread(self.fd, chunk, pos)
                buf_start, bpos = pos, 0
                if len(buf) < BATCH_HEADER_SIZE:
                    if verify:
                        raise CorruptBatchError(f"truncated batch header at byte {pos}")
                    return
            size = _unpack_length(buf, bpos + 8)[0] + LENGTH_PREFIX
            if size < BATCH_HEADER_SIZE or pos + size > end:
                if verify:
                    raise CorruptBatchError(f"batch at byte {pos} runs past the end of the file")
                return
            if len(buf) - bpos < size:
                buf = os.pread(self.fd, max(chunk, size), pos)
                buf_start, bpos = pos, 0
            header = check_batch(buf, bpos, expected_base) if verify else read_header(buf, bpos)
            yield pos, header, buf, bpos
            pos += size
            expected_base = header.next_offset

    def read(self, offset: int, max_records: int, max_bytes: int, limit: int) -> list[Record]:
        """Records from offset (or the next one present), below limit.

        Stops at max_records, or once max_bytes of keys and values are read
        (always at least one record).
        """
        out: list[Record] = []
        if offset >= limit or offset >= self.next_offset:
            return out
        _rel, pos = self.index.lookup(offset - self.base_offset)
        # One pread should usually cover the answer (records here are ~300 B).
        chunk = max(READ_CHUNK, min(max_bytes, max_records * 512, MAX_READ_CHUNK))
        budget = max_bytes
        for _pos, header, buf, bpos in self._batches(pos, None, False, chunk=chunk):
            if header.next_offset <= offset:
                continue
            if header.base_offset >= limit:
                break
            budget = decode_into(out, buf, bpos, header, offset, limit, max_records, budget)
            if budget <= 0 or len(out) >= max_records:
                break
        return out

    def offset_for_time(self, timestamp: int) -> int | None:
        """The first offset here whose record timestamp is >= timestamp, if any."""
        if self.max_timestamp < timestamp:
            return None
        start = self.time_index.start_for(timestamp)
        _rel, pos = self.index.lookup(start)
        for _pos, header, buf, bpos in self._batches(pos, None, verify=False):
            if header.max_timestamp < timestamp:
                continue
            batch: list[Record] = []
            decode_into(batch, buf, bpos, header, header.base_offset, header.next_offset)
            for rec in batch:
                if rec.timestamp >= timestamp:
                    return rec.offset
        return None

    def records_in_batch_before(self, offset: int) -> tuple[int, int, list[Record]]:
        """For truncation: (position, epoch, records below offset) of the batch holding offset."""
        _rel, pos = self.index.lookup(offset - self.base_offset)
        for bpos_file, header, buf, bpos in self._batches(pos, None, verify=False):
            if header.next_offset > offset:
                records: list[Record] = []
                decode_into(records, buf, bpos, header, header.base_offset, offset)
                return bpos_file, header.leader_epoch, records
        return self.size, 0, []

    # ------------------------------------------------------------- lifecycle
    def truncate_bytes(self, position: int) -> None:
        """Cut the file at position (a batch boundary) and rebuild the state."""
        os.ftruncate(self.fd, position)
        self.size = position
        self.recover()

    def seal(self) -> None:
        """Add the final time entry (segment max) and write both index files."""
        if self.next_offset > self.base_offset:
            self.time_index.append(self.max_timestamp, self.next_offset - self.base_offset)
        self.index.write()
        self.time_index.write()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def delete(self) -> None:
        self.close()
        for path in (self.path, self.index.path, self.time_index.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def __repr__(self) -> str:
        return f"LogSegment({self.path!r}, next_offset={self.next_offset}, size={self.size})"
