"""Sparse indexes of one segment: offset -> file position, and timestamp -> offset.

Both live in memory as arrays while the segment is open and are written to
their files when the segment rolls or the log closes. After an unclean stop
they are rebuilt from the segment rather than trusted (see LogSegment.recover).

Entry formats on disk (big-endian), as Kafka's:
  .index      relative offset u32, position u32             (8 bytes)
  .timeindex  timestamp i64, relative offset u32            (12 bytes)

A time entry (T, r) promises that every record of the segment before relative
offset r has a timestamp <= T; T is the running maximum, so entries never go
down even when record timestamps do.
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_left, bisect_right

from .fileio import write_all

_OFFSET_ENTRY = struct.Struct(">II")
_TIME_ENTRY = struct.Struct(">qI")


class OffsetIndex:
    """Relative offset -> byte position of the batch that starts there."""

    __slots__ = ("path", "rel_offsets", "positions")

    def __init__(self, path: str) -> None:
        self.path = path
        self.rel_offsets = array("I")
        self.positions = array("I")

    def append(self, rel_offset: int, position: int) -> None:
        self.rel_offsets.append(rel_offset)
        self.positions.append(position)

    def lookup(self, rel_offset: int) -> tuple[int, int]:
        """The last entry at or below rel_offset, or (0, 0) for the segment start."""
        i = bisect_right(self.rel_offsets, rel_offset) - 1
        if i < 0:
            return 0, 0
        return self.rel_offsets[i], self.positions[i]

    def truncate_after_position(self, position: int) -> None:
        """Drop entries that point at or past position (after a truncation)."""
        i = bisect_left(self.positions, position)
        del self.rel_offsets[i:]
        del self.positions[i:]

    def clear(self) -> None:
        del self.rel_offsets[:]
        del self.positions[:]

    def __len__(self) -> int:
        return len(self.rel_offsets)

    def write(self) -> None:
        data = b"".join(
            _OFFSET_ENTRY.pack(r, p) for r, p in zip(self.rel_offsets, self.positions, strict=True)
        )
        _write_file(self.path, data)

    def load(self, segment_size: int) -> bool:
        """Read the file; False (and empty) when missing or not sane."""
        self.clear()
        data = _read_file(self.path)
        if data is None or len(data) % _OFFSET_ENTRY.size:
            return False
        last_r = last_p = -1
        for r, p in _OFFSET_ENTRY.iter_unpack(data):
            if r <= last_r or p <= last_p or p >= segment_size:
                self.clear()
                return False
            self.append(r, p)
            last_r, last_p = r, p
        return True


class TimeIndex:
    """Running-maximum timestamp -> relative offset."""

    __slots__ = ("path", "timestamps", "rel_offsets")

    def __init__(self, path: str) -> None:
        self.path = path
        self.timestamps = array("q")
        self.rel_offsets = array("I")

    def append(self, timestamp: int, rel_offset: int) -> None:
        if self.rel_offsets and rel_offset <= self.rel_offsets[-1]:
            return
        self.timestamps.append(timestamp)
        self.rel_offsets.append(rel_offset)

    def start_for(self, timestamp: int) -> int:
        """A relative offset before which every record is older than timestamp."""
        i = bisect_left(self.timestamps, timestamp) - 1
        return self.rel_offsets[i] if i >= 0 else 0

    def truncate_after_offset(self, rel_offset: int) -> None:
        """Drop entries at or past rel_offset."""
        i = bisect_left(self.rel_offsets, rel_offset)
        del self.timestamps[i:]
        del self.rel_offsets[i:]

    def clear(self) -> None:
        del self.timestamps[:]
        del self.rel_offsets[:]

    def last(self) -> tuple[int, int] | None:
        if not self.rel_offsets:
            return None
        return self.timestamps[-1], self.rel_offsets[-1]

    def write(self) -> None:
        data = b"".join(
            _TIME_ENTRY.pack(t, r) for t, r in zip(self.timestamps, self.rel_offsets, strict=True)
        )
        _write_file(self.path, data)

    def load(self, rel_end: int) -> bool:
        """Read the file; False (and empty) when missing or not sane."""
        self.clear()
        data = _read_file(self.path)
        if data is None or len(data) % _TIME_ENTRY.size:
            return False
        last_t = None
        last_r = -1
        for t, r in _TIME_ENTRY.iter_unpack(data):
            if r <= last_r or r > rel_end or (last_t is not None and t < last_t):
                self.clear()
                return False
            self.timestamps.append(t)
            self.rel_offsets.append(r)
            last_t, last_r = t, r
        return True


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
