"""A queue on the log: a cursor, the deliveries not yet settled, and its consumers.

State, and why it is enough:

- `cursor`: the next offset never delivered. Every offset below it has been
  delivered, so it is settled unless it is outstanding.
- `outstanding`: offsets delivered and not settled (unacked) plus those
  waiting to be redelivered (`requeued`, a sorted list served before the
  cursor, so a requeued message comes back in its original position).
- The log below min(outstanding, cursor) is all settled: whole segments
  under it are deleted.

`(cursor, outstanding)` is what survives a restart (written to the offsets
store at the end of each turn that changed it); after a restart the
outstanding offsets are redelivered with `redelivered` set. Memory grows
with unacked and requeued messages, not with the backlog: a backlog is read
back from the segment files in batches, and only a bounded tail of recent
appends is kept in memory for consumers that keep up.

Appends are batched per event-loop turn: `enqueue` collects, the broker's
end-of-turn flush calls `flush_appends`, which writes one batch and then
dispatches to consumers round-robin within their prefetch credit.
"""

from __future__ import annotations

import asyncio
import struct
import time
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sortedcontainers import SortedList

from warrenmq.logstore import PartitionLog

from .deadletter import set_long_header
from .message import (
    FLAG_PERSISTENT,
    NO_EXPIRY,
    TTL_ZERO,
    Message,
    expires_at,
    has_expiration,
    priority,
    split_record_headers,
)
from .retention import RetentionTimer, releasable_below, retain_settled_ms

if TYPE_CHECKING:
    from .consumer import Consumer

TAIL_BUDGET_BYTES = 8 * 1024 * 1024
DISPATCH_BATCH = 1000
READ_BATCH = 512
_new_message = tuple.__new__
_STATE_HEAD = struct.Struct(">QQ")  # format version, cursor


def _int_arg(arguments: dict[str, Any], key: str) -> int | None:
    value = arguments.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def encode_state(cursor: int, outstanding: set[int] | list[int], skipped: set[int] | list[int] = (),
                 delivery_counts: dict[int, int] | None = None) -> bytes:  # fmt: skip
    """Version 3: cursor; then the outstanding offsets, the skipped offsets and
    (offset, delivery count) pairs, each list preceded by its length."""
    counts = delivery_counts or {}
    out = array("q", sorted(outstanding))
    out.extend(sorted(skipped))
    for offset in sorted(counts):
        out.extend((offset, counts[offset]))
    return (
        _STATE_HEAD.pack(3, cursor)
        + struct.pack(">QQQ", len(outstanding), len(skipped), len(counts))
        + out.tobytes()
    )


def decode_state(value: bytes) -> tuple[int, list[int], list[int], dict[int, int]]:
    """(cursor, outstanding, skipped, delivery counts); older versions lack the later parts."""
    version, cursor = _STATE_HEAD.unpack_from(value)
    pos = _STATE_HEAD.size
    if version >= 3:
        n_out, n_skip, n_counts = struct.unpack_from(">QQQ", value, pos)
        pos += 24
    elif version == 2:
        n_out = struct.unpack_from(">Q", value, pos)[0]
        pos += 8
        n_skip = n_counts = None
    else:
        n_out = n_skip = n_counts = None
    rest = array("q")
    rest.frombytes(value[pos:])
    offsets = list(rest)
    if n_out is None:
        return cursor, offsets, [], {}
    if n_skip is None:
        return cursor, offsets[:n_out], offsets[n_out:], {}
    pairs = offsets[n_out + n_skip :]
    counts = {pairs[i]: pairs[i + 1] for i in range(0, 2 * n_counts, 2)}
    return cursor, offsets[:n_out], offsets[n_out : n_out + n_skip], counts


class Queue:
    """A queue; see the module docstring."""

    tail_budget = TAIL_BUDGET_BYTES  # bytes of recent appends kept in memory (a partition keeps less)

    def __init__(
        self,
        vhost: str,
        name: str,
        log: PartitionLog,
        *,
        durable: bool,
        exclusive_owner: Any,
        auto_delete: bool,
        arguments: dict[str, Any],
        on_dirty: Callable[[Queue], None],
        state: bytes | None = None,
    ) -> None:
        self.vhost = vhost
        self.name = name
        self.log = log
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments
        self.state_key = f"queue\x00{vhost}\x00{name}".encode("utf-8", "surrogateescape")
        self.consumers: list[Consumer] = []
        self.had_consumers = False
        self.deleted = False
        self._on_dirty = on_dirty
        self._rr = 0
        self._dispatch_scheduled = False
        # Delivery state.
        self.cursor = log.log_start_offset
        self.requeued: SortedList = SortedList()
        self._requeued_msgs: dict[int, Message] = {}
        self.outstanding: set[int] = set()
        self.ready = 0
        self.ready_bytes = 0
        # Offsets at or above the cursor settled early (expired, dropped).
        self.skipped: set[int] = set()
        # Message TTL: an index by expiry time over ready messages.
        self.ttl: int | None = _int_arg(arguments, "x-message-ttl")
        self._expiry: SortedList = SortedList()
        self._ttl_zero: list[int] = []
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_timer_at = 0
        # Length limits.
        self.max_length: int | None = _int_arg(arguments, "x-max-length")
        self.max_length_bytes: int | None = _int_arg(arguments, "x-max-length-bytes")
        overflow = arguments.get("x-overflow")
        self.overflow = overflow if isinstance(overflow, str) else "drop-head"
        # Priority queue (x-max-priority): one lane of ready offsets per priority,
        # highest first, offset order (FIFO) within a lane. Unlike a plain queue
        # this index holds every ready offset, so it grows with the backlog.
        self.max_priority: int | None = _int_arg(arguments, "x-max-priority")
        self._lanes: list[SortedList] | None = (
            [SortedList() for _ in range(self.max_priority + 1)] if self.max_priority else None
        )
        # Single active consumer: only the first consumer gets messages.
        self.single_active = arguments.get("x-single-active-consumer") is True
        # Delivery limit (quorum-queue semantics) and delayed retry (4.3's arguments).
        self.delivery_limit: int | None = _int_arg(arguments, "x-delivery-limit")
        self.delivery_counts: dict[int, int] = {}
        retry = arguments.get("x-delayed-retry-type")
        self.retry_type = retry if retry in ("all", "failed", "returned") else "disabled"
        self.retry_min = _int_arg(arguments, "x-delayed-retry-min") or 0
        self.retry_max = _int_arg(arguments, "x-delayed-retry-max")
        self._retry: SortedList = SortedList()
        self._retry_msgs: dict[int, Message] = {}
        self._retry_timer: asyncio.TimerHandle | None = None
        # Queue expiry (x-expires): deleted when unused for that long.
        self.expires_ms: int | None = _int_arg(arguments, "x-expires")
        self.last_used = time.monotonic()
        self.on_unused_expired: Callable[[Queue], None] | None = None
        self._unused_timer: asyncio.TimerHandle | None = None
        # Set by the broker: dead-letters a message that leaves this queue unconsumed.
        self.on_dead_letter: Callable[[Queue, Message, str], None] | None = None
        # x-retain-settled (retention.py): settled segments stay this long, for replay.
        self.retain_settled_ms = retain_settled_ms(arguments)
        self._retention_timer = RetentionTimer(self._retention_due, self.now_ms)
        # This turn's appends, and what is kept in memory for delivery.
        self._pending: list[tuple[int, None, bytes, bytes]] = []
        self._pending_msgs: list[tuple[int, bytes, bytes, bytes, int]] = []
        self._tail: dict[int, Message] = {}
        self._tail_bytes = 0
        self._readahead: dict[int, Message] = {}
        self.last_appended = -1
        self.state_dirty = False
        self.dirty = False
        # Records below this offset were written before the last start: their
        # transient (non-persistent) messages did not survive the restart.
        self._restart_boundary = log.log_end_offset
        # "delivered" counts every delivery and basic.get; the get and no-ack ones also apart.
        self.counters = {"published": 0, "delivered": 0, "acked": 0, "redelivered": 0,
                         "get": 0, "get_no_ack": 0, "get_empty": 0, "deliver_no_ack": 0}  # fmt: skip
        self._restore(state)
        if self.retain_settled_ms is not None:
            self.release_settled_segments()  # what fell due while the broker was down

    # ---------------------------------------------------------------- restore
    def _restore(self, state: bytes | None) -> None:
        if state is not None:
            cursor, outstanding, skipped, counts = decode_state(state)
        else:
            cursor, outstanding, skipped, counts = self.log.log_start_offset, [], [], {}
        self.delivery_counts = {o: c for o, c in counts.items() if o in set(outstanding)}
        start = self.log.log_start_offset
        self.cursor = max(cursor, start)
        self.skipped = {o for o in skipped if o >= self.cursor}
        for offset in outstanding:
            if offset >= start:
                msg = self._load(offset)
                if msg is not None:
                    self.requeued.add(offset)
                    self.outstanding.add(offset)
                    self._requeued_msgs[offset] = msg
                    self._into_lane(msg)
                    self.ready += 1
                    self.ready_bytes += len(msg.body)
                    self._track_expiry(msg)
        self._scan_backlog(self.cursor, self.log.log_end_offset)
        self._readahead.clear()

    def _scan_backlog(self, start: int, end: int) -> None:
        """Count what survived the restart in [start, end) and index when each expires."""
        offset = start
        skipped = self.skipped
        ttl = self.ttl
        while offset < end:
            records = self.log.read(offset, max_records=4096, max_bytes=8 << 20)
            if not records:
                break
            for rec in records:
                headers = rec.headers
                if rec.offset in skipped or rec.offset in self.outstanding:
                    continue
                if not headers[0] & FLAG_PERSISTENT:
                    if self._lanes is not None:
                        skipped.add(rec.offset)  # lets the cursor pass it
                    continue
                if self._lanes is not None:
                    _flags, _exrk, props = split_record_headers(headers)
                    self._lanes[min(priority(props), self.max_priority)].add(rec.offset)
                self.ready += 1
                self.ready_bytes += len(rec.value or b"")
                if ttl is not None or has_expiration(headers):
                    _flags, _exrk, props = split_record_headers(headers)
                    expires = expires_at(rec.timestamp, ttl, props)
                    if expires > 0:
                        self._expiry.add((expires, rec.offset))
            offset = records[-1].offset + 1

    # ----------------------------------------------------------------- append
    def enqueue(self, timestamp: int, flags: int, exchange_rk: bytes, properties: bytes,
                body: bytes, headers: bytes) -> None:  # fmt: skip
        """Add a message to this turn's batch (written by flush_appends)."""
        if not self._pending:
            self._on_dirty(self)
        expires = NO_EXPIRY
        if self.ttl is not None or has_expiration(properties):
            expires = expires_at(timestamp, self.ttl, properties)
        self._pending.append((timestamp, None, body, headers))
        self._pending_msgs.append((flags, exchange_rk, properties, body, expires))

    def admits(self, size: int) -> bool:
        """Whether a publish of size bytes fits under x-max-length(-bytes) (reject-publish modes)."""
        pending = len(self._pending)
        if self.max_length is not None and self.ready + pending >= self.max_length:
            return False
        if self.max_length_bytes is not None:
            pending_bytes = sum(len(m[3]) for m in self._pending_msgs)
            if self.ready_bytes + pending_bytes + size > self.max_length_bytes:
                return False
        return True

    @property
    def rejects_overflow(self) -> bool:
        limited = self.max_length is not None or self.max_length_bytes is not None
        return limited and self.overflow in ("reject-publish", "reject-publish-dlx")

    def flush_appends(self) -> int:
        """Write this turn's batch, make it deliverable, dispatch; returns messages written."""
        records = self._pending
        if not records:
            return 0
        metas = self._pending_msgs
        self._pending = []
        self._pending_msgs = []
        offsets = self.log.append(records)
        base = offsets.start
        n = len(records)
        self.last_appended = base + n - 1
        self.ready += n
        self.counters["published"] += n
        keep = self._tail_bytes < self.tail_budget
        tail = self._tail
        added = 0
        lanes = self._lanes
        for i, (flags, exrk, props, body, expires) in enumerate(metas):
            added += len(body)
            if lanes is not None:
                lanes[min(priority(props), self.max_priority)].add(base + i)
            if keep or expires:
                msg = _new_message(Message, (base + i, flags, exrk, props, body, expires))
                if keep:
                    tail[base + i] = msg
                if expires:
                    self._track_expiry(msg)
        self.ready_bytes += added
        if keep:
            self._tail_bytes += added
        if self.consumers:
            self.dispatch()
        if self._ttl_zero:
            self._expire_ttl_zero()
        self._enforce_limits()
        return n

    # --------------------------------------------------------------- delivery
    def take(self) -> tuple[Message, bool] | None:
        """The next message to deliver (requeued ones first) and its redelivered flag.

        A message found expired on the way is dead-lettered, not delivered.
        """
        while True:
            item = self._take_next()
            if item is None:
                return None
            msg = item[0]
            if msg.expires > 0:
                self._expiry.discard((msg.expires, msg.offset))
                if msg.expires <= self.now_ms():
                    self._expired(msg, was_requeued=item[1])
                    continue
            count = self.delivery_counts.get(msg.offset) if item[1] else None
            if count:
                msg = msg._replace(properties=set_long_header(msg.properties, "x-delivery-count", count))
                return msg, True
            return item

    def _take_next(self) -> tuple[Message, bool] | None:
        if self._lanes is not None:
            return self._take_next_by_priority()
        if self.requeued:
            offset = self.requeued.pop(0)
            msg = self._requeued_msgs.pop(offset, None) or self._load(offset)
            if msg is None:  # gone (cannot happen while outstanding), skip it
                self.outstanding.discard(offset)
                return self._take_next()
            self._took(msg)
            return msg, True
        end = self.log.log_end_offset
        skipped = self.skipped
        while self.cursor < end:
            offset = self.cursor
            self.cursor = offset + 1
            if skipped and offset in skipped:
                skipped.discard(offset)
                continue
            msg = self._tail.pop(offset, None)
            if msg is not None:
                self._tail_bytes -= len(msg.body)
            else:
                msg = self._load(offset)
                if msg is None:
                    continue  # a transient message from before the restart
            self._took(msg)
            return msg, False
        return None

    def _take_next_by_priority(self) -> tuple[Message, bool] | None:
        """Highest lane first; within a lane the lowest offset (requeued or fresh)."""
        for lane in reversed(self._lanes):
            while lane:
                offset = lane.pop(0)
                if offset in self.requeued:
                    self.requeued.remove(offset)
                    msg = self._requeued_msgs.pop(offset, None) or self._load(offset)
                    if msg is None:
                        self.outstanding.discard(offset)
                        continue
                    self._took(msg)
                    return msg, True
                msg = self._tail.pop(offset, None)
                if msg is not None:
                    self._tail_bytes -= len(msg.body)
                else:
                    msg = self._load(offset)
                self._passed(offset)
                if msg is None:
                    continue
                self._took(msg)
                return msg, False
        return None

    def _passed(self, offset: int) -> None:
        """A fresh offset left the ready set out of order: keep the cursor the lowest one left."""
        self.skipped.add(offset)
        end = self.log.log_end_offset
        while self.cursor < end and self.cursor in self.skipped:
            self.skipped.discard(self.cursor)
            self.cursor += 1

    def _out_of_lane(self, msg: Message | None) -> None:
        if self._lanes is not None and msg is not None:
            self._lanes[min(priority(msg.properties), self.max_priority)].discard(msg.offset)

    def _into_lane(self, msg: Message) -> None:
        if self._lanes is not None:
            self._lanes[min(priority(msg.properties), self.max_priority)].add(msg.offset)

    def _took(self, msg: Message) -> None:
        self.ready -= 1
        self.ready_bytes -= len(msg.body)
        self.state_dirty_mark()

    def _load(self, offset: int) -> Message | None:
        """A message from the log (read ahead in batches), None if it did not survive."""
        msg = self._readahead.pop(offset, None)
        if msg is None:
            records = self.log.read(offset, max_records=READ_BATCH, max_bytes=1 << 20)
            boundary = self._restart_boundary
            ahead = {}
            for rec in records:
                flags, exrk, props = split_record_headers(rec.headers)
                if rec.offset < boundary and not flags & FLAG_PERSISTENT:
                    continue
                expires = NO_EXPIRY
                if self.ttl is not None or has_expiration(props):
                    expires = expires_at(rec.timestamp, self.ttl, props)
                ahead[rec.offset] = _new_message(
                    Message, (rec.offset, flags, exrk, props, rec.value or b"", expires)
                )
            msg = ahead.pop(offset, None)
            self._readahead = ahead
        return msg

    def dispatch(self) -> None:
        """Give ready messages to consumers with credit, round-robin.

        At most DISPATCH_BATCH deliveries per call: the rest follow on the next
        event-loop turn, after the sockets were written, so a consumer without
        a prefetch limit cannot make one call queue a whole backlog in memory,
        and a full socket (which stops its channel's credit) throttles it.
        """
        consumers = self.consumers
        if not consumers or self.ready <= 0:
            return
        if self.single_active:
            consumers = consumers[:1]  # the others wait their turn
        n = len(consumers)
        idle = 0
        budget = DISPATCH_BATCH
        while self.ready > 0 and idle < n:
            if budget == 0:
                self._dispatch_later()
                return
            budget -= 1
            consumer = consumers[self._rr % n]
            self._rr += 1
            if not consumer.can_take():
                idle += 1
                continue
            idle = 0
            item = self.take()
            if item is None:
                self.ready = 0
                break
            consumer.deliver(self, item[0], item[1])
            if not self.single_active and len(consumers) != n:  # a delivery may cancel a consumer
                n = len(consumers)
                if not n:
                    break

    def _dispatch_later(self) -> None:
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch_again)

    def _dispatch_again(self) -> None:
        self._dispatch_scheduled = False
        if not self.deleted:
            self.dispatch()

    # ------------------------------------------------------------ settlement
    def delivered(self, offset: int) -> None:
        """A delivery that waits for an ack."""
        self.outstanding.add(offset)
        self.counters["delivered"] += 1
        self.state_dirty_mark()

    def settle(self, offset: int) -> None:
        """Acked (or dropped): the message is done with."""
        self.outstanding.discard(offset)
        self.delivery_counts.pop(offset, None)
        self.counters["acked"] += 1
        self.state_dirty_mark()

    def requeue(self, msg: Message, kind: str = "returned") -> None:
        """Back to its original position, ahead of newer messages, redelivered.

        kind is "failed" (the consumer rejected or nacked it) or "returned"
        (its channel or consumer went away, or basic.recover). Each return
        counts as a delivery attempt: past x-delivery-limit the message is
        dead-lettered (reason delivery_limit); with x-delayed-retry-type
        matching kind it waits min(min x attempts, max) ms first.
        """
        if self.deleted:
            return
        offset = msg.offset
        if offset in self.requeued or offset in self._retry_msgs:
            return
        count = self.delivery_counts.get(offset, 0) + 1
        self.delivery_counts[offset] = count
        if self.delivery_limit is not None and count > self.delivery_limit:
            self.settle(offset)
            self.dead_letter(msg, "delivery_limit")
            return
        self.outstanding.add(offset)
        self.counters["redelivered"] += 1
        self.state_dirty_mark()
        if self.retry_type in ("all", kind) and self.retry_min > 0:
            delay = self.retry_min * count
            if self.retry_max is not None:
                delay = min(delay, self.retry_max)
            self._retry.add((self.now_ms() + delay, offset))
            self._retry_msgs[offset] = msg
            self._arm_retry_timer()
            return
        self._requeue_now(msg)

    def _requeue_now(self, msg: Message) -> None:
        offset = msg.offset
        self._into_lane(msg)
        self.requeued.add(offset)
        self._requeued_msgs[offset] = msg
        self.ready += 1
        self.ready_bytes += len(msg.body)
        self._track_expiry(msg)

    def _arm_retry_timer(self) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        due = self._retry[0][0]
        self._retry_timer = asyncio.get_running_loop().call_later(
            max(0.0, (due - self.now_ms()) / 1000), self._retry_due
        )

    def _retry_due(self) -> None:
        """Delayed retries whose wait is over become ready again."""
        self._retry_timer = None
        if self.deleted:
            return
        now = self.now_ms()
        while self._retry and self._retry[0][0] <= now:
            _due, offset = self._retry.pop(0)
            msg = self._retry_msgs.pop(offset, None)
            if msg is not None:
                self._requeue_now(msg)
        if self._retry:
            self._arm_retry_timer()
        self.dispatch()

    @property
    def retry_waiting(self) -> int:
        return len(self._retry)

    # ------------------------------------------------------------ expiry (queue)
    def touch(self) -> None:
        """Used (declared, consumed from, read with basic.get): the x-expires clock restarts."""
        self.last_used = time.monotonic()
        if self.expires_ms is not None and not self.consumers:
            self._arm_unused_timer()

    def _arm_unused_timer(self) -> None:
        if self._unused_timer is not None:
            self._unused_timer.cancel()
        self._unused_timer = asyncio.get_running_loop().call_later(
            self.expires_ms / 1000, self._unused_check
        )

    def _unused_check(self) -> None:
        self._unused_timer = None
        if self.deleted or self.consumers or self.expires_ms is None:
            return
        idle_ms = (time.monotonic() - self.last_used) * 1000
        if idle_ms + 1 >= self.expires_ms:
            if self.on_unused_expired is not None:
                self.on_unused_expired(self)
        else:
            self._unused_timer = asyncio.get_running_loop().call_later(
                (self.expires_ms - idle_ms) / 1000, self._unused_check
            )

    def state_dirty_mark(self) -> None:
        if not self.state_dirty:
            self.state_dirty = True
            self._on_dirty(self)

    def state_bytes(self) -> bytes:
        return encode_state(self.cursor, self.outstanding, self.skipped, self.delivery_counts)

    @property
    def settled_below(self) -> int:
        """Every offset below this is settled."""
        return min(self.outstanding) if self.outstanding else self.cursor

    def release_settled_segments(self) -> None:
        """Delete whole segments of settled messages (with x-retain-settled: once old enough)."""
        below = self.settled_below
        if self.retain_settled_ms is not None:
            below, due = releasable_below(self.log.segments, below, self.retain_settled_ms, self.now_ms())
            self._retention_timer.arm(due)
        segments = self.log.segments
        if len(segments) > 1 and segments[1].base_offset <= below:
            self.log.delete_segments_below(below)

    def _retention_due(self) -> None:
        if not self.deleted and not self.log.closed:
            self.release_settled_segments()

    # ------------------------------------------------------------- expiry
    def _track_expiry(self, msg: Message) -> None:
        if msg.expires == TTL_ZERO:
            self._ttl_zero.append(msg.offset)
        elif msg.expires > 0:
            self._expiry.add((msg.expires, msg.offset))
            if self._expiry_timer is None or msg.expires < self._expiry_timer_at:
                self._arm_expiry_timer()

    def _arm_expiry_timer(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if not self._expiry or self.deleted:
            return
        due = self._expiry[0][0]
        loop = asyncio.get_running_loop()
        self._expiry_timer_at = due
        self._expiry_timer = loop.call_later(max(0.0, (due - self.now_ms()) / 1000), self.expire_due)

    def expire_due(self) -> None:
        """Dead-letter (or drop) every ready message whose time is up, wherever it is."""
        self._expiry_timer = None
        if self.deleted:
            return
        now = self.now_ms()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _expires, offset = expiry.pop(0)
            self._expire_offset(offset)
        self._arm_expiry_timer()

    def _expire_offset(self, offset: int) -> None:
        """Expire one ready message by offset (requeued, or not yet delivered)."""
        if offset in self.requeued:
            self.requeued.remove(offset)
            msg = self._requeued_msgs.pop(offset, None) or self._load(offset)
            self.outstanding.discard(offset)
            self._out_of_lane(msg)
        elif offset >= self.cursor and offset not in self.skipped:
            msg = self._tail.pop(offset, None)
            if msg is not None:
                self._tail_bytes -= len(msg.body)
            else:
                msg = self._load(offset)
            if self._lanes is not None:
                self._out_of_lane(msg)
                self._passed(offset)
            else:
                self.skipped.add(offset)
        else:
            return  # delivered meanwhile: TTL no longer applies
        if msg is None:
            return
        self.ready -= 1
        self.ready_bytes -= len(msg.body)
        self.state_dirty_mark()
        self.dead_letter(msg, "expired")

    def _expired(self, msg: Message, was_requeued: bool) -> None:
        """A message taken for delivery turned out expired: settle it, dead-letter it."""
        if was_requeued:
            self.outstanding.discard(msg.offset)
        self.dead_letter(msg, "expired")

    def _expire_ttl_zero(self) -> None:
        """TTL 0: what no consumer took in the turn it arrived expires now."""
        offsets, self._ttl_zero = self._ttl_zero, []
        for offset in offsets:
            self._expire_offset(offset)

    def dead_letter(self, msg: Message, reason: str) -> None:
        """Hand a message that leaves unconsumed to the broker's dead-lettering."""
        if self.on_dead_letter is not None and not self.deleted:
            self.on_dead_letter(self, msg, reason)

    def _enforce_limits(self) -> None:
        """drop-head: the oldest ready messages go (dead-lettered, reason maxlen) until under the limits."""
        if self.rejects_overflow:
            return
        while (self.max_length is not None and self.ready > self.max_length) or (
            self.max_length_bytes is not None and self.ready_bytes > self.max_length_bytes
        ):
            item = self._take_next()
            if item is None:
                break
            msg, was_requeued = item
            if msg.expires > 0:
                self._expiry.discard((msg.expires, msg.offset))
            if was_requeued:
                self.outstanding.discard(msg.offset)
            self.dead_letter(msg, "maxlen")

    # ------------------------------------------------------------- queries
    @property
    def message_count(self) -> int:
        return self.ready

    @property
    def unacked_count(self) -> int:
        return len(self.outstanding) - len(self.requeued)

    def purge(self) -> int:
        """Drop every ready message (unacked ones stay); returns how many."""
        self.flush_appends()
        count = self.ready
        for offset in self.requeued:
            self.outstanding.discard(offset)
        self.requeued.clear()
        self._requeued_msgs.clear()
        self.cursor = self.log.log_end_offset
        self.skipped.clear()
        if self._lanes is not None:
            for lane in self._lanes:
                lane.clear()
        self._expiry.clear()
        self._ttl_zero.clear()
        self.ready_bytes = 0
        self._tail.clear()
        self._tail_bytes = 0
        self._readahead.clear()
        self.ready = 0
        self.state_dirty_mark()
        return count

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.had_consumers = True
        self.last_used = time.monotonic()

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            if self.single_active and self.consumers:
                self.dispatch()  # the next consumer in line becomes active
        if not self.consumers:
            self.touch()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return f"Queue({self.vhost!r}, {self.name!r}, ready={self.ready})"
