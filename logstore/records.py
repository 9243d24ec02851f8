"""The record batch: the unit that is written, checksummed, recovered and replicated.

Layout (big-endian; docs/storage.md has the full table):

    base_offset   i64   offset of the first record
    batch_length  i32   bytes that follow this field
    leader_epoch  i32   epoch of the leader that appended the batch
    magic         u8    format version (1)
    crc           u32   CRC-32 (zlib) of everything after this field
    attributes    i16   reserved, 0
    record_count  i32
    first_ts      i64   timestamp (ms) of the first record
    max_ts        i64   largest record timestamp in the batch
    records...

and each record:

    timestamp     i64   ms
    key_length    i32   -1 for a null key
    value_length  i32   -1 for a null value (a tombstone in a compacted log)
    headers_len   i32
    key, value, headers bytes

Offsets are implicit: record i of a batch has offset base_offset + i. The
encoder is written for speed: one struct pack per record and one join per batch.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

from .errors import CorruptBatchError

MAGIC = 1
BATCH_HEADER = struct.Struct(">qiiBIhiqq")
BATCH_HEADER_SIZE = BATCH_HEADER.size  # 43
# Offset of the CRC-covered part: everything after the crc field.
CRC_START = 8 + 4 + 4 + 1 + 4
# batch_length counts the bytes after base_offset and batch_length themselves.
LENGTH_PREFIX = 12
RECORD_HEADER = struct.Struct(">qiii")
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 20
# The header fields after the CRC, packed separately so the CRC can cover them.
_TAIL = struct.Struct(">hiqq")
_HEAD = struct.Struct(">qiiBI")

_pack_record = RECORD_HEADER.pack
_unpack_record = RECORD_HEADER.unpack_from
_unpack_batch = BATCH_HEADER.unpack_from
_crc32 = zlib.crc32


class Record(NamedTuple):
    """One record as read back from the log."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: bytes


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    record_count: int
    first_timestamp: int
    max_timestamp: int

    @property
    def size(self) -> int:
        """Bytes of the whole batch on disk."""
        return self.batch_length + LENGTH_PREFIX

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count


# A record handed to append: (timestamp ms, key, value, headers).
RecordInput = tuple[int, "bytes | None", "bytes | None", bytes]


def encode_batch(
    base_offset: int, leader_epoch: int, records: Sequence[RecordInput]
) -> tuple[bytes, int, int]:
    """Encode records as one batch; returns (bytes, first timestamp, max timestamp)."""
    parts: list[bytes] = [b""]
    append = parts.append
    max_ts = first_ts = records[0][0]
    for ts, key, value, headers in records:
        if ts > max_ts:
            max_ts = ts
        if key is None:
            if value is None:
                append(_pack_record(ts, -1, -1, len(headers)))
            else:
                append(_pack_record(ts, -1, len(value), len(headers)))
                append(value)
        else:
            append(_pack_record(ts, len(key), -1 if value is None else len(value), len(headers)))
            append(key)
            if value is not None:
                append(value)
        if headers:
            append(headers)
    parts[0] = _TAIL.pack(0, len(records), first_ts, max_ts)
    body = b"".join(parts)
    head = _HEAD.pack(base_offset, len(body) + 9, leader_epoch, MAGIC, _crc32(body))
    return head + body, first_ts, max_ts


def read_header(buf: bytes | memoryview, pos: int = 0) -> BatchHeader:
    """Decode the fixed header of the batch that starts at pos (no checks)."""
    return BatchHeader._make(_unpack_batch(buf, pos))


def check_batch(buf: bytes, pos: int, expected_base: int | None = None) -> BatchHeader:
    """Validate the batch at buf[pos:]; raise CorruptBatchError naming what is wrong.

    Checks the length against the buffer, the base offset, the magic byte, the
    CRC and that the records exactly fill the batch.
    """
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptBatchError(f"truncated batch header ({len(buf) - pos} bytes)")
    header = read_header(buf, pos)
    end = pos + header.size
    if header.batch_length < BATCH_HEADER_SIZE - LENGTH_PREFIX or end > len(buf):
        raise CorruptBatchError(
            f"batch length {header.batch_length} runs past the end of the data"
        )
    if expected_base is not None and header.base_offset != expected_base:
        raise CorruptBatchError(
            f"batch base offset {header.base_offset}, expected {expected_base}"
        )
    if header.magic != MAGIC:
        raise CorruptBatchError(f"unknown batch magic {header.magic}")
    if _crc32(memoryview(buf)[pos + CRC_START : end]) != header.crc:
        raise CorruptBatchError(f"CRC mismatch in batch at offset {header.base_offset}")
    if header.record_count <= 0:
        raise CorruptBatchError(f"batch with {header.record_count} records")
    p = pos + BATCH_HEADER_SIZE
    for _ in range(header.record_count):
        if p + RECORD_HEADER_SIZE > end:
            raise CorruptBatchError("record header runs past the end of its batch")
        _ts, klen, vlen, hlen = _unpack_record(buf, p)
        if klen < -1 or vlen < -1 or hlen < 0:
            raise CorruptBatchError("negative record field length")
        p += RECORD_HEADER_SIZE + max(klen, 0) + max(vlen, 0) + hlen
    if p != end:
        raise CorruptBatchError("records do not fill their batch exactly")
    return header


def decode_into(
    out: list[Record],
    buf: bytes,
    pos: int,
    header: BatchHeader,
    first: int,
    limit: int,
    max_records: int = 1 << 62,
    max_bytes: int = 1 << 62,
) -> int:
    """Append to out the records of one batch with offsets in [first, limit).

    Stops once out holds max_records, or once the keys and values added reach
    max_bytes; returns the byte budget left (<= 0 means the budget is spent).
    One plain loop, no generator: this is the read path of every backlog.
    """
    offset = header.base_offset
    p = pos + BATCH_HEADER_SIZE
    new = tuple.__new__
    append = out.append
    for _ in range(header.record_count):
        if offset >= limit:
            break
        ts, klen, vlen, hlen = _unpack_record(buf, p)
        p += RECORD_HEADER_SIZE
        if offset < first:
            p += (klen if klen > 0 else 0) + (vlen if vlen > 0 else 0) + hlen
            offset += 1
            continue
        if klen >= 0:
            key = buf[p : p + klen]
            p += klen
            max_bytes -= klen
        else:
            key = None
        if vlen >= 0:
            value = buf[p : p + vlen]
            p += vlen
            max_bytes -= vlen
        else:
            value = None
        if hlen:
            headers = buf[p : p + hlen]
            p += hlen
        else:
            headers = b""
        append(new(Record, (offset, ts, key, value, headers)))
        offset += 1
        if len(out) >= max_records or max_bytes <= 0:
            return max_bytes if max_bytes <= 0 else 0
    return max_bytes
