"""`warrenmq log dump`: print a queue's log records straight from a data directory.

Like Kafka's kafka-dump-log, it reads the segment files itself instead of
opening the log through LogManager: opening a PartitionLog may run recovery,
cut a torn tail or rewrite index files, and the dump must never change the
data directory, even while a broker is running on it. So every file is opened
read-only, every batch is checked (length, base offset, CRC) before it is
shown, and the dump stops quietly at the first batch that is not whole yet:
the tail a running broker is still writing, or one a crash left torn.

The index files are used as hints only (a running broker writes them when a
segment rolls or the log closes, so they may be missing or behind): a
position taken from an index is used only when the batch there starts at the
offset the index promises; otherwise the segment is read from its start.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any, TextIO

from warrenmq.amqp.codec import decode_properties
from warrenmq.logstore.errors import CorruptBatchError
from warrenmq.logstore.index import OffsetIndex, TimeIndex
from warrenmq.logstore.names import escape_name
from warrenmq.logstore.records import (
    BATCH_HEADER_SIZE,
    LENGTH_PREFIX,
    BatchHeader,
    Record,
    check_batch,
    decode_into,
    read_header,
)
from warrenmq.logstore.segment import MAX_RELATIVE_OFFSET, READ_CHUNK, segment_file_name
from warrenmq.logstore.topic import read_topic_meta

from .message import FLAG_PERSISTENT, exchange_of, routing_key_of, split_record_headers

PROG = "warrenmq log dump"
BODY_PREVIEW_BYTES = 60
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")
# Basic properties in wire order, as pamqp names them -> the names users know (pika's).
_PROPERTY_NAMES = (
    ("content_type", "content_type"),
    ("content_encoding", "content_encoding"),
    ("headers", "headers"),
    ("delivery_mode", "delivery_mode"),
    ("priority", "priority"),
    ("correlation_id", "correlation_id"),
    ("reply_to", "reply_to"),
    ("expiration", "expiration"),
    ("message_id", "message_id"),
    ("timestamp", "timestamp"),
    ("message_type", "type"),
    ("user_id", "user_id"),
    ("app_id", "app_id"),
    ("cluster_id", "cluster_id"),
)


class DumpError(Exception):
    """A problem the user must fix (bad path, queue, partition or time); exit status 2."""


# ------------------------------------------------------------------ the CLI
def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `log dump` on the top-level subcommands."""
    log = sub.add_parser("log", help="inspect queue logs on disk")
    log_sub = log.add_subparsers(dest="log_command", required=True, metavar="COMMAND")
    dump = log_sub.add_parser(
        "dump",
        help="print a queue's log records from a data directory",
        description="Print each record of a queue's log, read directly from the data "
        "directory (read-only; safe while a broker runs on it).",
    )
    dump.add_argument("queue", metavar="QUEUE", help="queue name")
    dump.add_argument("--vhost", default="/", help="virtual host (default /)")
    dump.add_argument("--data-dir", default="./data", help="data directory (default ./data)")
    dump.add_argument("--partition", type=_non_negative, default=0, metavar="N",
                      help="partition number (default 0)")  # fmt: skip
    start = dump.add_mutually_exclusive_group()
    start.add_argument("--from-offset", type=_non_negative, metavar="N",
                       help="start at this offset (default: the log start)")  # fmt: skip
    start.add_argument("--from-time", metavar="T",
                       help="start at the first record published at or after T: ISO 8601 "
                            "(2026-11-21T10:00:00Z, or a date) or epoch milliseconds")  # fmt: skip
    dump.add_argument("--limit", type=_non_negative, metavar="K", help="print at most K records")
    dump.add_argument("--json", action="store_true", help="one JSON object per line")
    dump.set_defaults(run=run)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run `log dump`; 0 when done, 2 (with one line on stderr) for a user error."""
    try:
        from_time = parse_time(args.from_time) if args.from_time is not None else None
        partition_dir = find_partition_dir(args.data_dir, args.vhost, args.queue, args.partition)
        return dump(partition_dir, args.from_offset, from_time, args.limit, args.json, sys.stdout)
    except DumpError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `| head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def dump(
    partition_dir: str,
    from_offset: int | None,
    from_time: int | None,
    limit: int | None,
    as_json: bool,
    out: TextIO,
) -> int:
    """Write the partition's records from the chosen start to out, one line each."""
    segments = list_segments(partition_dir)
    start = from_offset or 0
    if from_time is not None:
        found = offset_for_time(segments, from_time)
        if found is None:
            return 0  # nothing published at or after that time
        start = found
    for record in islice(read_records(segments, start), limit):
        fields = describe(record)
        out.write((json.dumps(fields, ensure_ascii=False) if as_json else as_text(fields)) + "\n")
    out.flush()
    return 0


# --------------------------------------------------------- finding the log
def parse_time(text: str) -> int:
    """Epoch milliseconds from ISO 8601 (a zone-less time is UTC) or from epoch ms."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise DumpError(
            f"bad --from-time {text!r}: use ISO 8601 (2026-11-21T10:00:00Z or 2026-11-21) "
            "or epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(milliseconds=1)


def find_partition_dir(data_dir: str, vhost: str, queue: str, partition: int) -> str:
    """The directory of the queue's partition; DumpError naming what is missing."""
    if not os.path.isdir(data_dir):
        raise DumpError(f"no data directory at {data_dir}")
    topics_dir = os.path.join(data_dir, "topics")
    if not os.path.isdir(topics_dir):
        raise DumpError(f"{data_dir} is not a warrenmq data directory (it has no topics/)")
    wanted = f"{vhost}\x00{queue}"
    topic_dir = os.path.join(topics_dir, escape_name(wanted))
    meta = read_topic_meta(topic_dir)
    if meta is None or meta[0] != wanted:
        # A long name is shortened on disk, so look at every topic's own name.
        topic_dir, meta = _scan_topics(topics_dir, wanted)
        if meta is None:
            raise DumpError(_no_such_queue(topics_dir, vhost, queue))
    partitions = meta[1]
    if partition >= partitions:
        raise DumpError(
            f"queue '{queue}' in vhost '{vhost}' has {partitions} partition(s); "
            f"no partition {partition}"
        )
    partition_dir = os.path.join(topic_dir, str(partition))
    if not os.path.isdir(partition_dir):
        raise DumpError(f"partition directory {partition_dir} is missing")
    return partition_dir


def _scan_topics(topics_dir: str, wanted: str) -> tuple[str, Any]:
    for entry in sorted(os.listdir(topics_dir)):
        path = os.path.join(topics_dir, entry)
        meta = read_topic_meta(path)
        if meta is not None and meta[0] == wanted:
            return path, meta
    return "", None


def queue_names(topics_dir: str) -> list[tuple[str, str]]:
    """(vhost, queue) of every queue log in the directory, sorted."""
    found = []
    for entry in os.listdir(topics_dir):
        meta = read_topic_meta(os.path.join(topics_dir, entry))
        if meta is None or meta[0].startswith("\x00"):  # not a queue (a delayed exchange's)
            continue
        vhost, sep, queue = meta[0].partition("\x00")
        if sep:
            found.append((vhost, queue))
    return sorted(found)


def _no_such_queue(topics_dir: str, vhost: str, queue: str, shown: int = 20) -> str:
    queues = queue_names(topics_dir)
    same = [q for v, q in queues if v == vhost]
    if same:
        listed, total, where = same, len(same), f"queues in vhost '{vhost}'"
    elif queues:
        listed = [f"{q} (vhost '{v}')" for v, q in queues]
        total, where = len(queues), f"no queues in vhost '{vhost}'; queues elsewhere"
    else:
        return f"no queue '{queue}' in vhost '{vhost}': the data directory holds no queues"
    more = f", and {total - shown} more" if total > shown else ""
    return f"no queue '{queue}' in vhost '{vhost}' ({where}: {', '.join(listed[:shown])}{more})"


# ------------------------------------------------------ reading, read-only
class SegmentFile:
    """One .log file and its index files, opened read-only."""

    def __init__(self, directory: str, base_offset: int) -> None:
        self.base_offset = base_offset
        self.path = os.path.join(directory, segment_file_name(base_offset))
        self.stem = self.path[:-4]
        self.fd = -1
        self.size = 0

    def open(self) -> bool:
        """False when the broker deleted the segment (retention) since it was listed."""
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        # What a broker appends after this point is left for the next dump.
        self.size = os.fstat(self.fd).st_size
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def batches(self, pos: int, expected_base: int) -> Iterator[tuple[BatchHeader, bytes, int]]:
        """(header, buffer, position in buffer) of each whole, checked batch from pos.

        Stops at the first batch that is torn or fails its checks.
        """
        buf = b""
        buf_start = pos
        while pos + BATCH_HEADER_SIZE <= self.size:
            bpos = pos - buf_start
            if len(buf) - bpos < BATCH_HEADER_SIZE:
                buf, buf_start, bpos = self._read(pos, READ_CHUNK), pos, 0
                if len(buf) < BATCH_HEADER_SIZE:  # the file shrank meanwhile
                    return
            size = read_header(buf, bpos).batch_length + LENGTH_PREFIX
            if size < BATCH_HEADER_SIZE or pos + size > self.size:
                return
            if len(buf) - bpos < size:
                buf, buf_start, bpos = self._read(pos, max(READ_CHUNK, size)), pos, 0
            try:
                header = check_batch(buf, bpos, expected_base)
            except CorruptBatchError:
                return
            yield header, buf, bpos
            pos += size
            expected_base = header.next_offset

    def _read(self, pos: int, length: int) -> bytes:
        return os.pread(self.fd, min(length, self.size - pos), pos)

    def start_for_offset(self, offset: int) -> tuple[int, int]:
        """(byte position, base offset) of a batch at or before offset, from the index."""
        index = OffsetIndex(self.stem + ".index")
        if offset <= self.base_offset or not index.load(self.size):
            return 0, self.base_offset
        rel, pos = index.lookup(offset - self.base_offset)
        if pos and self._batch_starts_at(pos, self.base_offset + rel):
            return pos, self.base_offset + rel
        return 0, self.base_offset

    def _batch_starts_at(self, pos: int, offset: int) -> bool:
        head = os.pread(self.fd, BATCH_HEADER_SIZE, pos)
        return len(head) == BATCH_HEADER_SIZE and read_header(head).base_offset == offset

    def time_index(self) -> TimeIndex:
        index = TimeIndex(self.stem + ".timeindex")
        index.load(MAX_RELATIVE_OFFSET + 1)
        return index

    def sealed_max_timestamp(self, next_base: int) -> int | None:
        """The segment's newest timestamp, when its index has the final entry a roll writes."""
        last = self.time_index().last()
        if last is not None and self.base_offset + last[1] == next_base:
            return last[0]
        return None


def list_segments(partition_dir: str) -> list[SegmentFile]:
    names = (_SEGMENT_NAME.match(name) for name in os.listdir(partition_dir))
    bases = sorted(int(m.group(1)) for m in names if m)
    return [SegmentFile(partition_dir, base) for base in bases]


def read_records(segments: list[SegmentFile], start: int) -> Iterator[Record]:
    """Every record from offset start (or the log start, if later) to the end."""
    first = 0
    for i, seg in enumerate(segments):
        if seg.base_offset <= start:
            first = i
    for seg in segments[first:]:
        if not seg.open():
            continue
        try:
            pos, base = seg.start_for_offset(start)
            for header, buf, bpos in seg.batches(pos, base):
                if header.next_offset <= start:
                    continue
                records: list[Record] = []
                decode_into(records, buf, bpos, header, start, header.next_offset)
                yield from records
        finally:
            seg.close()


def offset_for_time(segments: list[SegmentFile], timestamp: int) -> int | None:
    """The first offset whose record timestamp is >= timestamp (docs/storage.md's walk)."""
    for i, seg in enumerate(segments):
        if i + 1 < len(segments):
            newest = seg.sealed_max_timestamp(segments[i + 1].base_offset)
            if newest is not None and newest < timestamp:
                continue
        if not seg.open():
            continue
        try:
            rel = seg.time_index().start_for(timestamp)
            pos, base = seg.start_for_offset(seg.base_offset + rel)
            for header, buf, bpos in seg.batches(pos, base):
                if header.max_timestamp < timestamp:
                    continue
                records: list[Record] = []
                decode_into(records, buf, bpos, header, header.base_offset, header.next_offset)
                for record in records:
                    if record.timestamp >= timestamp:
                        return record.offset
        finally:
            seg.close()
    return None


# ------------------------------------------------------------ presentation
def describe(record: Record) -> dict[str, Any]:
    """A record as plain fields (JSON-ready): where it came from, properties, body preview."""
    body = record.value or b""
    fields: dict[str, Any] = {"offset": record.offset, "timestamp": record.timestamp,
                              "time": iso_time(record.timestamp)}  # fmt: skip
    try:
        flags, exchange_rk, properties = split_record_headers(record.headers)
        fields["exchange"] = exchange_of(exchange_rk)
        fields["routing_key"] = routing_key_of(exchange_rk)
    except IndexError:
        fields["undecodable_headers"] = record.headers.hex()
    else:
        fields["persistent"] = bool(flags & FLAG_PERSISTENT)
        fields["flags"] = flags
        fields["properties"] = decoded_properties(properties)
    preview = body[:BODY_PREVIEW_BYTES]
    fields["body_size"] = len(body)
    fields["body_preview"] = printable(preview)
    fields["body_truncated"] = len(body) > len(preview)
    return fields


def decoded_properties(raw: bytes) -> dict[str, Any]:
    """The properties present, by name; {"undecodable": hex} for bytes that do not parse."""
    try:
        props = decode_properties(raw)
    except ValueError:
        return {"undecodable": raw.hex()}
    present = raw[0] << 8 | raw[1]
    return {
        name: plain(getattr(props, attr))
        for attr, name in _PROPERTY_NAMES
        if present & props.flags[attr]
    }


def plain(value: Any) -> Any:
    """A field-table value as JSON can hold it."""
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, Decimal):
        return str(value)
    return value


def printable(data: bytes) -> str:
    """Text for a body preview: UTF-8 where it decodes, '.' for anything not printable."""
    text = data.decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else "." for ch in text)


def iso_time(ms: int) -> str:
    """ISO 8601 UTC with milliseconds; the bare number when out of datetime's range."""
    try:
        when = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return str(ms)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_text(fields: dict[str, Any]) -> str:
    """One line: offset, time, exchange, routing key, flags, properties, body preview."""
    parts = [f"offset={fields['offset']}", f"time={fields['time']}"]
    if "undecodable_headers" in fields:
        parts.append(f"headers=<undecodable {fields['undecodable_headers']}>")
    else:
        parts += [
            f"exchange={_quote(fields['exchange'])}",
            f"routing_key={_quote(fields['routing_key'])}",
            f"persistent={'yes' if fields['persistent'] else 'no'}",
            f"properties={json.dumps(fields['properties'], ensure_ascii=False)}",
        ]
    more = "..." if fields["body_truncated"] else ""
    parts += [f"size={fields['body_size']}", f"body={_quote(fields['body_preview'])}{more}"]
    return " ".join(parts)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
