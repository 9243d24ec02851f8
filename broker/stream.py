"""A stream queue: one append-only log, read by every consumer from its own offset.

Consuming removes nothing. The stream keeps no delivery state of its own:
no cursor, no outstanding set, no queue-state record. Each consumer
(stream_consumer.py) has its own position and credit (its prefetch); acks
only return credit, and commit the offset of a tracked (named) consumer
(stream_offsets.py). What leaves the log leaves by retention only:
`x-max-age` and `x-max-length-bytes` are the topic's `retention_ms` and
`retention_bytes`, applied whenever the log rolls a segment and from the
broker's upkeep loop. Whole segments go; the offsets of the rest never change.

Publishing is a queue's: `enqueue` collects this turn's messages and the
broker's end-of-turn flush calls `flush_appends`, which writes them as one
record batch, writes this turn's committed offsets, and then delivers.

Memory: while the stream has consumers, a bounded tail of recent messages
(already carrying their `x-stream-offset` header) is kept for those that
keep up; one that is behind reads the segments through its own read-ahead.

The stream answers the broker, the handler, the channel sessions, the
management API and the metrics through the same attributes as a Queue,
with a stream's values: every message is ready, none is unacked, and
basic.get and queue.purge are refused (540, RabbitMQ's texts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from warrenmq.amqp import ConnectionError
from warrenmq.amqp.constants import NOT_IMPLEMENTED
from warrenmq.logstore import PartitionLog

from .message import Message
from .stream_header import with_offset_header
from .stream_offsets import ConsumerOffsets

if TYPE_CHECKING:
    from .stream_consumer import StreamConsumer

log = logging.getLogger("warrenmq.broker")

TAIL_BUDGET_BYTES = 8 * 1024 * 1024
DISPATCH_BATCH = 1000
_new_message = tuple.__new__


class StreamQueue:
    """A stream; see the module docstring."""

    durable = True
    exclusive_owner = None
    auto_delete = False
    single_active = False
    overflow = "drop-head"
    rejects_overflow = False
    retry_waiting = 0
    state_dirty = False  # nothing for the queue-state store: positions belong to consumers
    skipped: frozenset[int] = frozenset()
    outstanding: frozenset[int] = frozenset()
    unacked_count = 0

    def __init__(self, vhost: str, name: str, log: PartitionLog, *, arguments: dict[str, Any],
                 on_dirty: Callable[[StreamQueue], None], offsets: ConsumerOffsets) -> None:  # fmt: skip
        self.vhost = vhost
        self.name = name
        self.log = log
        self.arguments = arguments
        self.offsets = offsets
        self.resource = f"queue '{name}' in vhost '{vhost}'"
        self.state_key = f"queue\x00{vhost}\x00{name}".encode("utf-8", "surrogateescape")
        self.consumers: list[StreamConsumer] = []
        self.had_consumers = False
        self.deleted = False
        self.last_appended = -1
        self.on_dead_letter: Callable[..., None] | None = None  # never called: nothing dies here
        self.on_unused_expired: Callable[..., None] | None = None
        self.counters = {"published": 0, "delivered": 0, "acked": 0, "redelivered": 0,
                         "get": 0, "get_no_ack": 0, "get_empty": 0, "deliver_no_ack": 0}  # fmt: skip
        self._on_dirty = on_dirty
        self._pending: list[tuple[int, None, bytes, bytes]] = []
        self._pending_msgs: list[tuple[int, bytes, bytes, bytes]] = []
        self._tail: list[Message] = []  # consecutive offsets from _tail_base
        self._tail_base = log.log_end_offset
        self._tail_bytes = 0
        self._rr = 0
        self._dispatch_scheduled = False
        self._commit_noted = False

    # ------------------------------------------------------------- publishing
    def enqueue(self, timestamp: int, flags: int, exchange_rk: bytes, properties: bytes,
                body: bytes, headers: bytes) -> None:  # fmt: skip
        """Add a message to this turn's batch (written by flush_appends)."""
        if not self._pending:
            self._on_dirty(self)
        self._pending.append((timestamp, None, body, headers))
        self._pending_msgs.append((flags, exchange_rk, properties, body))

    def admits(self, size: int) -> bool:
        return True

    def flush_appends(self) -> int:
        """Write this turn's batch and committed offsets, then deliver; returns messages written."""
        self._commit_noted = False
        records = self._pending
        n = len(records)
        if n:
            metas = self._pending_msgs
            self._pending, self._pending_msgs = [], []
            active = self.log.active
            base = self.log.append(records).start
            self.last_appended = base + n - 1
            self.counters["published"] += n
            if self.consumers:
                self._keep_in_tail(base, metas)
            if self.log.active is not active:  # a segment rolled: time for retention
                self.apply_retention()
        self.offsets.flush()
        if n and self.consumers:
            self.dispatch()
        return n

    def _keep_in_tail(self, base: int, metas: list[tuple[int, bytes, bytes, bytes]]) -> None:
        if base != self._tail_base + len(self._tail):
            self._tail, self._tail_base, self._tail_bytes = [], base, 0
        tail = self._tail
        added = 0
        for i, (flags, exrk, props, body) in enumerate(metas):
            offset = base + i
            tail.append(_new_message(Message, (offset, flags, exrk, self.with_headers(props, offset), body, 0)))
            added += len(body)
        self._tail_bytes += added
        if self._tail_bytes > TAIL_BUDGET_BYTES:
            self._drop_tail_below(self._tail_base + len(tail) // 2)

    def _drop_tail_below(self, offset: int) -> None:
        cut = min(max(0, offset - self._tail_base), len(self._tail))
        if cut:
            self._tail_bytes -= sum(len(m.body) for m in self._tail[:cut])
            del self._tail[:cut]
            self._tail_base += cut

    def with_headers(self, properties: bytes, offset: int) -> bytes:
        """A record's properties as delivered: with its `x-stream-offset` header."""
        return with_offset_header(properties, offset)

    def tail_slice(self, offset: int, n: int) -> list[Message]:
        """Up to n recent messages kept in memory from offset on; empty when it is not there."""
        i = offset - self._tail_base
        if 0 <= i < len(self._tail):
            return self._tail[i : i + n]
        return []

    # --------------------------------------------------------------- delivery
    def dispatch(self) -> None:
        """Let every consumer with credit read on, at most DISPATCH_BATCH deliveries per call.

        Consumers take turns starting from a rotating one, so a consumer with
        a large prefetch cannot keep the others waiting; the rest of a long
        backlog follows on the next event-loop turn.
        """
        consumers = self.consumers
        if self.deleted or not consumers:
            return
        n = len(consumers)
        budget = DISPATCH_BATCH
        start = self._rr % n
        self._rr += 1
        for i in range(n):
            budget -= consumers[(start + i) % n].pump(budget)
            if budget <= 0:
                self._dispatch_later()
                return

    def _dispatch_later(self) -> None:
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch_again)

    def _dispatch_again(self) -> None:
        self._dispatch_scheduled = False
        self.dispatch()

    def note_commit(self) -> None:
        """A tracked consumer committed: have the end-of-turn flush write it (once per turn)."""
        if not self._commit_noted:
            self._commit_noted = True
            self._on_dirty(self)

    def add_consumer(self, consumer: StreamConsumer) -> None:
        self.consumers.append(consumer)
        self.had_consumers = True

    def remove_consumer(self, consumer: StreamConsumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        if not self.consumers:
            self._tail, self._tail_base, self._tail_bytes = [], self.log.log_end_offset, 0

    # -------------------------------------------------------------- retention
    def apply_retention(self) -> int:
        """Delete whole segments past x-max-age / x-max-length-bytes; returns how many."""
        if self.deleted or self.log.closed:
            return 0
        deleted = self.log.apply_retention(self.now_ms())
        if deleted:
            start = self.log.log_start_offset
            self._drop_tail_below(start)
            self.forget_offsets_below(start)
        return deleted

    def forget_offsets_below(self, log_start: int) -> None:
        """Retention took every message below log_start: the offsets committed below it go too."""
        self.offsets.forget_below(self.vhost, self.name, log_start)

    def forget_consumer_offsets(self) -> None:
        """The stream is deleted: so are its named consumers' offsets."""
        self.offsets.forget_queue(self.vhost, self.name)

    # --------------------------------------------------- what a stream refuses
    def take(self) -> None:
        raise ConnectionError(NOT_IMPLEMENTED, f"basic.get not supported by stream queues {self.resource}", 60, 70)

    def purge(self) -> int:
        raise ConnectionError(NOT_IMPLEMENTED, f"queue.purge not supported by stream queues {self.resource}", 50, 30)

    # ------------------------------------- the rest of a queue's interface
    def touch(self) -> None:
        """A stream never expires (x-expires is refused): nothing to restart."""

    def delivered(self, offset: int) -> None:
        """Nothing to do: positions belong to consumers."""

    def settle(self, offset: int) -> None:
        """Nothing to do: acks return credit to their consumer (StreamConsumer.settle)."""

    def requeue(self, msg: Message, kind: str = "returned") -> None:
        """Nothing to do: a stream redelivers nothing."""

    def dead_letter(self, msg: Message, reason: str) -> None:
        """Nothing to do: nothing dies in a stream."""

    def release_settled_segments(self) -> None:
        """Nothing to do: only retention deletes a stream's segments."""

    @property
    def message_count(self) -> int:
        """Every message the log holds (RabbitMQ reports the same, from a lagging sample)."""
        return self.log.log_end_offset - self.log.log_start_offset

    @property
    def ready(self) -> int:
        return self.message_count

    @property
    def ready_bytes(self) -> int:
        """The bytes the log holds (records, with their stored headers)."""
        return 0 if self.log.closed else self.log.size_bytes

    @property
    def cursor(self) -> int:
        """The lowest position of a consumer (the log end without one): for the lag metric."""
        end = self.log.log_end_offset
        lowest = min((c.position for c in self.consumers), default=end)
        return max(self.log.log_start_offset, min(lowest, end))

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return f"StreamQueue({self.vhost!r}, {self.name!r}, end={self.log.log_end_offset})"


def apply_stream_retention(queues: Iterable[Any]) -> None:
    """The upkeep loop's pass: each stream deletes what aged out (or outgrew its limit)."""
    for whole in queues:
        for queue in getattr(whole, "stream_partitions", (whole,)):
            if not isinstance(queue, StreamQueue):
                continue
            try:
                queue.apply_retention()
            except OSError:  # the next pass tries again; the upkeep loop must go on
                log.exception("retention of stream '%s' in vhost '%s' failed", queue.name, queue.vhost)
