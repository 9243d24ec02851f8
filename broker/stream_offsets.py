"""Where a stream consumer starts, and the offsets the broker keeps for named consumers.

`x-stream-offset` (a basic.consume argument) says where a consumer starts:

| value | start |
|---|---|
| `first` | the log start (the oldest offset retention kept) |
| `last` | the first offset of the last record batch: the messages the queue appended in its last event-loop turn that had any (RabbitMQ: the last chunk) |
| `next` (the default) | the log end: only messages published from now on |
| an integer | that offset; below the log start, the log start; past the log end, it waits for that offset |
| a timestamp (AMQP `T`, seconds) | the first message published at or after it (the time index), else the log end |
| an interval (`7D`, `1h`, `30m`, `10s`, ...) | as a timestamp, now minus the interval |

Anything else is refused, as RabbitMQ's check_consume_arguments refuses a
string it cannot read as an interval: 406 `invalid arg 'x-stream-offset' ...:
{invalid_stream_offset_arg,{longstr,<<"1x">>}}`. (A string that RabbitMQ
crashes on, such as `bogus`, and values it accepts and then crashes on, such
as a boolean or a float, get the same 406.)

Named consumers (LavinMQ's convention): a consumer whose tag the client
chose, or that asks with `x-stream-automatic-offset-tracking: true`, has its
position tracked by the broker. Its acks commit the highest offset it acked;
`ConsumerOffsets` collects the commits of a turn and writes them in one
append to the `consumer-offsets` store, from the broker's end-of-turn flush,
which runs before anything the ack caused reaches a client. Consuming again
with the same tag and no `x-stream-offset` resumes after the committed
offset, across restarts and crashes. `x-stream-automatic-offset-tracking:
false` turns tracking off for a named tag.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any, NamedTuple

from warrenmq.logstore import OffsetsStore, PartitionLog

from .stream_declare import parse_max_age, type_name

OFFSET_ARG = "x-stream-offset"
TRACKING_ARG = "x-stream-automatic-offset-tracking"
_OFFSET = struct.Struct(">q")


class OffsetSpec(NamedTuple):
    """A parsed `x-stream-offset`: kind is first, last, next, offset or timestamp (value: ms)."""

    kind: str
    value: int = 0


NEXT = OffsetSpec("next")


def parse_offset_arg(value: Any, now_ms: int) -> OffsetSpec | None:
    """The start a consumer asked for; None when RabbitMQ would refuse (or crash on) it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return OffsetSpec("offset", value)
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        return OffsetSpec("timestamp", int(moment.timestamp()) * 1000)
    if isinstance(value, str):
        if value in ("first", "last", "next"):
            return OffsetSpec(value)
        interval = parse_max_age(value)
        if interval is not None:
            return OffsetSpec("timestamp", now_ms - interval)
    return None


def invalid_offset_reason(value: Any) -> str:
    """RabbitMQ's reason term for a refused `x-stream-offset`, Erlang-printed."""
    return f"{{invalid_stream_offset_arg,{{{type_name(value)},{_erlang(value)}}}}}"


def resolve_start(spec: OffsetSpec, log: PartitionLog) -> int:
    """The first offset a consumer with this specification reads."""
    start, end = log.log_start_offset, log.log_end_offset
    if spec.kind == "first":
        return start
    if spec.kind == "last":
        return last_batch_start(log)
    if spec.kind == "offset":
        return max(spec.value, start)
    if spec.kind == "timestamp":
        found = log.offset_for_time(spec.value)
        return end if found is None else found
    return end


def last_batch_start(log: PartitionLog) -> int:
    """The base offset of the log's last record batch (the log end when it is empty)."""
    end = log.log_end_offset
    for segment in reversed(log.segments):
        if segment.next_offset > segment.base_offset:
            _pos, _epoch, before = segment.records_in_batch_before(end - 1)
            return end - 1 - len(before)
    return end


def tracking_wanted(value: Any, client_named: bool) -> bool | None:
    """Whether a consumer's offset is tracked; None when the argument is not a boolean."""
    if value is None:
        return client_named
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    return None


class ConsumerOffsets:
    """Committed offsets of tracked stream consumers, written once per event-loop turn.

    Keys are `vhost NUL queue NUL consumer tag`, values the highest acked
    offset as an i64. `commit` only notes the value; `flush` (called from the
    broker's end-of-turn flush, through each stream's `flush_appends`)
    writes every noted value in one append.
    """

    def __init__(self, store: OffsetsStore) -> None:
        self._store = store
        self._pending: dict[bytes, int] = {}

    @staticmethod
    def key(vhost: str, queue: str, tag: str) -> bytes:
        return f"{vhost}\x00{queue}\x00{tag}".encode("utf-8", "surrogateescape")

    @staticmethod
    def group_key(vhost: str, queue: str, group: str, partition: int) -> bytes:
        """A consumer group's key for one partition: an empty tag (no consumer has one), then both."""
        return ConsumerOffsets.partition_prefix(vhost, queue, partition) + group.encode("utf-8", "surrogateescape")

    @staticmethod
    def partition_prefix(vhost: str, queue: str, partition: int) -> bytes:
        return f"{vhost}\x00{queue}\x00\x00{partition}\x00".encode("utf-8", "surrogateescape")

    def forget_partition_below(self, vhost: str, queue: str, partition: int, log_start: int) -> None:
        """Retention took one partition's messages below log_start: its groups' offsets there go too."""
        self._forget(self.partition_prefix(vhost, queue, partition), log_start - 1)

    def committed(self, key: bytes) -> int | None:
        """The last offset committed under key (noted this turn, or stored), None if none."""
        if key in self._pending:
            return self._pending[key]
        raw = self._store.get(key)
        return None if raw is None else _OFFSET.unpack(raw)[0]

    def of_queue(self, vhost: str, queue: str) -> list[tuple[str, int | None, int]]:
        """Every offset committed on a queue, sorted: (tag or group, partition or None for a tag, offset).

        For `ctl offsets`: the keys say which is which (a group's tag part is empty).
        """
        prefix = self.key(vhost, queue, "")
        found = {k: _OFFSET.unpack(raw)[0] for k, raw in self._store.items() if k.startswith(prefix)}
        found.update((k, v) for k, v in self._pending.items() if k.startswith(prefix))
        rows: list[tuple[str, int | None, int]] = []
        for key, offset in found.items():
            rest = key[len(prefix):].decode("utf-8", "surrogateescape")
            if rest.startswith("\x00"):
                partition, _, group = rest[1:].partition("\x00")
                rows.append((group, int(partition), offset))
            else:
                rows.append((rest, None, offset))
        return sorted(rows, key=lambda row: (row[1] is not None, row[0], row[1] or 0))

    def commit(self, key: bytes, offset: int) -> None:
        self._pending[key] = offset

    def flush(self) -> None:
        """Write this turn's commits (one append); nothing when there are none."""
        if self._pending:
            pending, self._pending = self._pending, {}
            self._store.put_many((key, _OFFSET.pack(offset)) for key, offset in pending.items())

    def forget_queue(self, vhost: str, queue: str) -> None:
        """The stream is deleted: its consumers' offsets go, so a new one of that name starts afresh."""
        self._forget(self.key(vhost, queue, ""), None)

    def forget_below(self, vhost: str, queue: str, log_start: int) -> None:
        """Retention took every message up to these offsets: forget them (LavinMQ does too).

        A consumer coming back then starts as a new one (at `next`), as a Kafka
        consumer whose committed offset fell out of range resets to the latest.
        It also keeps the store from growing with tags that never return.
        """
        self._forget(self.key(vhost, queue, ""), log_start - 1)

    def _forget(self, prefix: bytes, below: int | None) -> None:
        for key in [k for k in self._pending if k.startswith(prefix)]:
            if below is None or self._pending[key] < below:
                del self._pending[key]
        doomed = [
            (key, None)
            for key, raw in self._store.items()
            if key.startswith(prefix) and (below is None or _OFFSET.unpack(raw)[0] < below)
        ]
        if doomed:
            self._store.put_many(doomed)


def _erlang(value: Any) -> str:
    """A decoded field value printed roughly as Erlang's ~p prints it in RabbitMQ's texts."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | bytes | bytearray):
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        if all(32 <= b < 127 for b in raw):
            text = raw.decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
            return f'<<"{text}">>'
        return "<<" + ",".join(str(b) for b in raw) + ">>"
    return str(value)
