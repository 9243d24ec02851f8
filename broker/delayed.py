"""Delayed delivery: what an `x-delayed-message` exchange holds, on a log, by due time.

An exchange of type `x-delayed-message` routes as its `x-delayed-type`
(direct, fanout, topic, headers, x-consistent-hash): its bindings are that
type's. A message whose `x-delay` header is a positive number of
milliseconds is not routed when it is published: it is held by the
exchange's DelayedStore and routed through the exchange's bindings as they
are when it falls due. A missing, negative or zero `x-delay` routes at once.

The store is a one-partition log topic plus a small index in memory:

- Each held message is one record, laid out as a queue's records are
  (`message.py`): headers = flags | exchange + routing key | properties,
  value = body, key null, and the timestamp is the due time (ms since the
  epoch). The `x-delay` header in the stored properties is already negated,
  as the RabbitMQ plugin does on delivery, so that a consumer can tell the
  message was delayed and a second delayed exchange on the way does not
  hold it again.
- A record with key `settled` lists (u64 each) the offsets of messages that
  were routed, or dropped; it is appended once the queue appends of their
  routing are durable.
- In memory: a SortedList of `due << 64 | offset` ints (about 50 bytes per
  pending message) and a bitmap of the pending offsets (one bit per
  record). Bodies stay on disk, except a bounded cache of messages due soon.

At start the log is scanned from its start: messages are pending unless a
later `settled` record names them. Whole segments below the lowest offset
still pending (or routed and not yet settled) are deleted. A first segment
kept alive by a few long delays is evacuated (when it is at most half
pending, or the whole log at most a quarter): its pending messages are
copied to the end of the log in one batch together with a `settled` record
for the originals (a batch is written and recovered whole, so a crash
leaves either the originals or the copies, never both), and the segment is
deleted once the copies are durable.

One timer, for the earliest due time, routes what is due, up to
ROUTE_BATCH messages per event-loop turn. A second one reads back, in
offset order and a few at a time, the messages due within READ_AHEAD_MS,
so that a burst falling due is routed from memory.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sortedcontainers import SortedList

from warrenmq.logstore import PartitionLog

if TYPE_CHECKING:
    from .queue import Queue

log = logging.getLogger("warrenmq.broker")

DELAYED_TYPE = "x-delayed-message"
DELAYED_TYPE_ARG = "x-delayed-type"

SETTLED_KEY = b"settled"
MAX_DUE_MS = 1 << 62  # far beyond any real date; keeps the i64 timestamp from overflowing
_SHIFT = 64
_MASK = (1 << _SHIFT) - 1

APPEND_BATCH = 32  # records per batch: a message read back alone decodes a small batch
ROUTE_BATCH = 1000  # messages routed per event-loop turn
SETTLED_BATCH = 8192  # offsets per settled record
CACHE_BUDGET_BYTES = 8 * 1024 * 1024  # bodies kept in memory ahead of their due time
CACHE_HORIZON_MS = 5_000  # a message held this close to its due time stays in memory
READ_AHEAD_MS = 1_000  # messages due this soon are read back ahead of time
READ_AHEAD_STEP_MS = 100  # one read-ahead step per this long, at most (reads are batched)
READ_AHEAD_BATCH = 64  # at most this many per read-ahead step (each step stays a few ms)
READ_GAP = 48  # offsets this close are read together: decoding a few records beats a pread
READ_SPAN_MAX = 4096
TIMER_MAX_S = 30.0  # re-arm at least this often, so a wall-clock step is noticed
MAINTAIN_AFTER_S = 2.0
EVACUATE_STEP = 4096  # records looked at per evacuation step
_BIG_ENDIAN = sys.byteorder == "big"

# Sizes of the fixed-size field-table values (type octet excluded).
_FIXED_SIZES = {
    ord(k): n
    for k, n in (("t", 1), ("b", 1), ("B", 1), ("s", 2), ("u", 2), ("I", 4), ("i", 4),
                 ("l", 8), ("L", 8), ("f", 4), ("d", 8), ("D", 5), ("T", 8), ("V", 0))
}  # fmt: skip
_SIZED = frozenset(b"SxFA")
_INTS = {
    ord("b"): struct.Struct(">b"), ord("B"): struct.Struct(">B"), ord("s"): struct.Struct(">h"),
    ord("u"): struct.Struct(">H"), ord("I"): struct.Struct(">i"), ord("i"): struct.Struct(">I"),
    ord("l"): struct.Struct(">q"), ord("L"): struct.Struct(">q"),
}  # fmt: skip
_SIGNED = frozenset(b"bsIlL")
_FLOATS = {ord("f"): struct.Struct(">f"), ord("d"): struct.Struct(">d")}
_U32 = struct.Struct(">I")
_X_DELAY = b"x-delay"
_HEADERS_FLAG = 0x2000
_CONTENT_TYPE = 0x8000
_CONTENT_ENCODING = 0x4000


# ----------------------------------------------------------------- x-delay
def _find_x_delay(properties: bytes) -> tuple[int, int, int, int, int] | None:
    """Locate x-delay: (delay ms, table length position, value type position, value end, type).

    None when the message has no x-delay header, or one that is no number
    (the plugin routes those at once). Integers of every width count;
    floats are truncated and strings of digits parsed, as the plugin does.
    """
    if len(properties) < 2:
        return None
    flags = properties[0] << 8 | properties[1]
    if not flags & _HEADERS_FLAG or flags & 1:
        return None
    try:
        pos = 2
        if flags & _CONTENT_TYPE:
            pos += 1 + properties[pos]
        if flags & _CONTENT_ENCODING:
            pos += 1 + properties[pos]
        table_pos = pos
        end = pos + 4 + _U32.unpack_from(properties, pos)[0]
        pos += 4
        while pos < end:
            n = properties[pos]
            name = properties[pos + 1 : pos + 1 + n]
            pos += 1 + n
            kind = properties[pos]
            size = _FIXED_SIZES.get(kind)
            if size is not None:
                value_end = pos + 1 + size
            elif kind in _SIZED:
                value_end = pos + 5 + _U32.unpack_from(properties, pos + 1)[0]
            else:
                return None
            if name == _X_DELAY:
                delay = _delay_value(kind, properties, pos + 1, value_end)
                if delay is None:
                    return None
                return delay, table_pos, pos, value_end, kind
            pos = value_end
    except (IndexError, struct.error):
        return None
    return None


def _delay_value(kind: int, data: bytes, start: int, end: int) -> int | None:
    fmt = _INTS.get(kind)
    if fmt is not None:
        return fmt.unpack_from(data, start)[0]
    fmt = _FLOATS.get(kind)
    if fmt is not None:
        value = fmt.unpack_from(data, start)[0]
        return int(value) if value == value and abs(value) < 2.0**63 else None
    if kind in (0x53, 0x78):  # S, x: a string of digits
        text = data[start + 4 : end]
        try:
            return int(text.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return None
    return None


def x_delay(properties: bytes) -> int | None:
    """The message's x-delay in ms (None when absent or not a number)."""
    found = _find_x_delay(properties)
    return None if found is None else found[0]


def negate_x_delay(properties: bytes) -> bytes:
    """The properties with x-delay set to minus itself, every other byte as it was.

    A signed integer is negated in place; any other type becomes a signed
    64-bit integer (the table length is adjusted). Properties without a
    positive x-delay come back unchanged.
    """
    found = _find_x_delay(properties)
    if found is None or found[0] <= 0:
        return properties
    delay, table_pos, type_pos, value_end, kind = found
    if kind in _SIGNED:
        fmt = _INTS[kind]
        return properties[: type_pos + 1] + fmt.pack(-delay) + properties[value_end:]
    new_value = b"l" + struct.pack(">q", -min(delay, 1 << 63))
    grown = len(new_value) - (value_end - type_pos)
    table_len = _U32.unpack_from(properties, table_pos)[0] + grown
    return (
        properties[:table_pos] + _U32.pack(table_len) + properties[table_pos + 4 : type_pos]
        + new_value + properties[value_end:]
    )  # fmt: skip


class Hold:
    """Decides, during one routing, whether a delayed exchange reached holds the message.

    Passed to VirtualHost.route as `hold`; the exchanges that held the
    message are collected in `exchanges`. The x-delay header is read at
    most once, and only when a delayed exchange is reached.
    """

    __slots__ = ("properties", "exchanges", "_delay")

    def __init__(self, properties: bytes) -> None:
        self.properties = properties
        self.exchanges: dict[Any, None] = {}  # each once, though several routing keys reach it
        self._delay = -1

    @property
    def delay(self) -> int:
        if self._delay == -1:
            found = x_delay(self.properties)
            self._delay = found if found is not None and found > 0 else 0
        return self._delay

    def __call__(self, exchange: Any) -> bool:
        if self.delay <= 0 or exchange.delayed is None or exchange.delayed.deleted:
            return False
        self.exchanges[exchange] = None
        return True


def due_time(now_ms: int, delay: int) -> int:
    return min(now_ms + delay, MAX_DUE_MS)


def delayed_topic_name(vhost: str, exchange: str) -> str:
    """The log topic of a delayed exchange's store.

    It starts with NUL: a queue's topic is `<vhost> NUL <queue>`, and no
    vhost name is empty, so the two kinds never share a name.
    """
    return f"\x00delayed\x00{vhost}\x00{exchange}"


def _pack_offsets(offsets: list[int]) -> bytes:
    arr = array("Q", offsets)
    if not _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _unpack_offsets(value: bytes | None) -> array:
    arr = array("Q")
    if value:
        arr.frombytes(value[: len(value) - len(value) % 8])
        if not _BIG_ENDIAN:
            arr.byteswap()
    return arr


class _Round:
    """The messages one timer call routed: settled once their queue appends are durable."""

    __slots__ = ("offsets", "queues", "waiting")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.queues: set[Queue] = set()
        self.waiting = 0


# A function that routes one due message through the exchange now (bindings as
# they are now), enqueues it, and returns the queues it reached.
Deliver = Callable[[int, bytes, bytes, bytes], "tuple[Queue, ...]"]


class DelayedStore:
    """The held messages of one delayed exchange; see the module docstring.

    For publisher confirms it stands in for a queue: a publish it holds
    waits, like one routed to a durable queue, until `log.durable_future(
    last_appended)` completes (attributes `durable`, `deleted`, `log`,
    `last_appended`).
    """

    log_topic = ""  # set by the broker: the topic it deletes with the exchange

    def __init__(
        self,
        name: str,
        log: PartitionLog,
        *,
        durable: bool,
        deliver: Deliver,
        on_dirty: Callable[[DelayedStore], None],
        now_ms: Callable[[], int],
    ) -> None:
        self.name = name
        self.log = log
        self.durable = durable
        self.deleted = False
        self.last_appended = -1
        self._deliver = deliver
        self._on_dirty = on_dirty
        self.now_ms = now_ms
        self._dirty = False
        # This turn's held messages: (due, headers, body).
        self._pending_appends: list[tuple[int, bytes, bytes]] = []
        # The index: due << 64 | offset for each pending message, and the pending bitmap.
        self._due: SortedList = SortedList()
        self._base = log.log_start_offset  # offset of bit 0
        self._bits = bytearray()
        self._first_byte = 0  # no bit is set below this byte
        self.pending = 0
        # Routed, not yet settled on disk: offset -> None.
        self._inflight: dict[int, None] = {}
        self._new_rounds: list[_Round] = []
        self._to_settle: list[int] = []
        # Messages due soon, in memory: offset -> (headers, body).
        self._cache: dict[int, tuple[bytes, bytes]] = {}
        self._cache_bytes = 0
        # Read-ahead: index keys up to this one have been looked at (and read back).
        self._ahead_key = -1
        self._ahead_timer: asyncio.TimerHandle | None = None
        self._ahead_at = 0
        self._ahead_last = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        self._started = False
        self._maintain_handle: asyncio.TimerHandle | None = None
        self._evacuating: list[int] | None = None  # [segment base, next offset to look at, end]
        self.counters = {"held": 0, "routed": 0, "unroutable": 0, "evacuated": 0}
        self._restore()

    # ---------------------------------------------------------------- bitmap
    def _set_bit(self, offset: int) -> None:
        rel = offset - self._base
        i = rel >> 3
        bits = self._bits
        if i >= len(bits):
            bits.extend(bytes(i + 1 - len(bits) + 256))
        bits[i] |= 1 << (rel & 7)

    def _clear_bit(self, offset: int) -> bool:
        """Clear offset's bit; True when it was set."""
        rel = offset - self._base
        if rel < 0:
            return False
        i = rel >> 3
        bits = self._bits
        if i >= len(bits):
            return False
        mask = 1 << (rel & 7)
        if not bits[i] & mask:
            return False
        bits[i] &= ~mask & 0xFF
        return True

    def _is_pending(self, offset: int) -> bool:
        rel = offset - self._base
        if rel < 0:
            return False
        i = rel >> 3
        return i < len(self._bits) and bool(self._bits[i] & (1 << (rel & 7)))

    def _first_pending(self) -> int | None:
        """The lowest pending offset (amortised: the scan start only moves up)."""
        bits = self._bits
        i = self._first_byte
        n = len(bits)
        while i < n and not bits[i]:
            i += 1
        self._first_byte = i
        if i >= n:
            return None
        byte = bits[i]
        return self._base + (i << 3) + ((byte & -byte).bit_length() - 1)

    def _trim_bits(self) -> None:
        """Drop the bitmap's all-clear head once it is worth a copy."""
        self._first_pending()
        k = self._first_byte
        if k >= 65536:
            del self._bits[:k]
            self._base += k << 3
            self._first_byte = 0

    def _count_pending(self, start: int, end: int) -> int:
        """Pending offsets in [start, end)."""
        lo = max(start, self._base) - self._base
        hi = min(end - self._base, len(self._bits) << 3)
        if lo >= hi:
            return 0
        value = int.from_bytes(self._bits[lo >> 3 : ((hi - 1) >> 3) + 1], "little") >> (lo & 7)
        return (value & ((1 << (hi - lo)) - 1)).bit_count()

    # --------------------------------------------------------------- restore
    def _restore(self) -> None:
        """Rebuild the index: every message is pending unless a later settled record names it."""
        plog = self.log
        start, end = plog.log_start_offset, plog.log_end_offset
        self._base = start
        self._bits = bytearray((end - start + 7) // 8 + 1)
        if end == start:
            return
        dues = array("q", bytes(8 * (end - start)))
        bits = self._bits
        offset = start
        while offset < end:
            records = plog.read(offset, max_records=4096, max_bytes=8 << 20)
            if not records:
                break
            for rec in records:
                rel = rec.offset - start
                if rec.key is None:
                    bits[rel >> 3] |= 1 << (rel & 7)
                    dues[rel] = rec.timestamp
                elif rec.key == SETTLED_KEY:
                    for settled in _unpack_offsets(rec.value):
                        r = settled - start
                        if 0 <= r < end - start:
                            bits[r >> 3] &= ~(1 << (r & 7)) & 0xFF
            offset = records[-1].offset + 1
        keys = []
        for i, byte in enumerate(bits):
            while byte:
                low = byte & -byte
                rel = (i << 3) + low.bit_length() - 1
                keys.append(dues[rel] << _SHIFT | (start + rel))
                byte ^= low
        self._due = SortedList(keys)
        self.pending = len(keys)
        if keys:
            log.info("delayed exchange %s: %d messages pending", self.name, len(keys))

    def start(self) -> None:
        """Arm the timers (at broker start, once queues and bindings are back)."""
        self._started = True
        self._arm()
        self._arm_read_ahead()
        self._schedule_maintain()

    # ------------------------------------------------------------------ hold
    def hold(self, due: int, headers: bytes, body: bytes) -> None:
        """Keep a message until due (written at this turn's flush)."""
        if self.deleted:
            return
        if not self._pending_appends:
            self._mark_dirty()
        self._pending_appends.append((due, headers, body))

    def _mark_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            self._on_dirty(self)

    def flush_appends(self) -> None:
        """End of turn: append held messages, settle durably routed ones, drop settled segments."""
        self._dirty = False
        if self.deleted:
            return
        if self._pending_appends:
            self._append_held()
        if self._new_rounds:
            rounds, self._new_rounds = self._new_rounds, []
            for rnd in rounds:
                self._await_round(rnd)
        if self._to_settle:
            self._write_settled()

    def _append_held(self) -> None:
        items, self._pending_appends = self._pending_appends, []
        now = self.now_ms()
        cache = self._cache
        due_index = self._due
        earliest = None
        for i in range(0, len(items), APPEND_BATCH):
            chunk = items[i : i + APPEND_BATCH]
            offsets = self.log.append([(due, None, body, headers) for due, headers, body in chunk])
            base = offsets.start
            for j, (due, headers, body) in enumerate(chunk):
                offset = base + j
                self._set_bit(offset)
                due_index.add(due << _SHIFT | offset)
                if earliest is None or due < earliest:
                    earliest = due
                if due - now <= CACHE_HORIZON_MS:
                    size = len(body) + len(headers)
                    if self._cache_bytes + size <= CACHE_BUDGET_BYTES:
                        cache[offset] = (headers, body)
                        self._cache_bytes += size
            self.last_appended = offsets.stop - 1
        self.pending += len(items)
        self.counters["held"] += len(items)
        if self._started:
            if self._timer is None or earliest < self._timer_at:
                self._arm()
            if self._ahead_timer is None or earliest - READ_AHEAD_MS < self._ahead_at:
                self._arm_read_ahead()

    # ----------------------------------------------------------------- timer
    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.deleted or not self._due:
            return
        due = self._due[0] >> _SHIFT
        self._timer_at = due
        wait = min(max(0.0, (due - self.now_ms()) / 1000), TIMER_MAX_S)
        self._timer = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        """Route what is due (at most ROUTE_BATCH now; the rest on the next turn)."""
        self._timer = None
        if self.deleted:
            return
        now = self.now_ms()
        due_index = self._due
        picked: list[int] = []
        while due_index and len(picked) < ROUTE_BATCH:
            key = due_index[0]
            if key >> _SHIFT > now:
                break
            due_index.pop(0)
            offset = key & _MASK
            if self._clear_bit(offset):
                picked.append(offset)
        if picked:
            self._route(picked)
        if due_index and due_index[0] >> _SHIFT <= now:
            self._timer_at = now
            self._timer = asyncio.get_running_loop().call_soon(self._fire)
        else:
            self._arm()

    def _route(self, offsets: list[int]) -> None:
        """Route picked messages (in due order) through the exchange as it is now."""
        messages = self._read(offsets)
        rnd = _Round()
        deliver = self._deliver
        routed = unroutable = 0
        for offset in offsets:
            self.pending -= 1
            item = messages.get(offset)
            if item is None:  # unreadable (cannot happen for a pending offset): settle it
                log.error("delayed exchange %s: offset %d could not be read; dropped", self.name, offset)
                rnd.offsets.append(offset)
                continue
            headers, body = item
            flags = headers[0]
            ex_len = headers[1]
            rk_end = 3 + ex_len + headers[2 + ex_len]
            try:
                queues = deliver(flags, headers[1:rk_end], headers[rk_end:], body)
            except Exception:
                log.exception("delayed exchange %s: routing a due message failed", self.name)
                queues = ()
            if queues:
                rnd.queues.update(queues)
                routed += 1
            else:
                unroutable += 1
            rnd.offsets.append(offset)
            self._inflight[offset] = None
        self.counters["routed"] += routed
        self.counters["unroutable"] += unroutable
        self._new_rounds.append(rnd)
        self._mark_dirty()

    def _read(self, offsets: list[int]) -> dict[int, tuple[bytes, bytes]]:
        """The (headers, body) of each offset: from the cache, else read back."""
        out: dict[int, tuple[bytes, bytes]] = {}
        cache = self._cache
        missing = []
        for offset in offsets:
            item = cache.pop(offset, None)
            if item is None:
                missing.append(offset)
            else:
                self._cache_bytes -= len(item[0]) + len(item[1])
                out[offset] = item
        if missing:
            self._read_back(missing, out)
        return out

    def _read_back(self, offsets: list[int], out: dict[int, tuple[bytes, bytes]]) -> None:
        """Read records back from the log into out; offsets close together in one read."""
        offsets = sorted(offsets)
        i = 0
        n = len(offsets)
        while i < n:
            first = offsets[i]
            j = i + 1
            while (j < n and offsets[j] - offsets[j - 1] <= READ_GAP
                   and offsets[j] - first < READ_SPAN_MAX):  # fmt: skip
                j += 1
            wanted = offsets[i:j]
            last = wanted[-1]
            k = 0
            position = first
            while position <= last:  # a read stops at max_bytes: go on where it stopped
                try:
                    records = self.log.read(position, max_records=last - position + 1, max_bytes=8 << 20)
                except Exception:
                    log.exception("delayed exchange %s: reading offset %d failed", self.name, position)
                    records = []
                if not records:
                    break
                for rec in records:
                    while k < len(wanted) and wanted[k] < rec.offset:
                        k += 1
                    if k < len(wanted) and wanted[k] == rec.offset:
                        out[rec.offset] = (rec.headers, rec.value or b"")
                position = records[-1].offset + 1
            i = j

    # ------------------------------------------------------------ read-ahead
    def _arm_read_ahead(self) -> None:
        """Wake when the next message not yet looked at comes within READ_AHEAD_MS."""
        if self._ahead_timer is not None:
            self._ahead_timer.cancel()
            self._ahead_timer = None
        if self.deleted:
            return
        due_index = self._due
        i = due_index.bisect_right(self._ahead_key)
        if i >= len(due_index):
            return
        at = max((due_index[i] >> _SHIFT) - READ_AHEAD_MS, self._ahead_last + READ_AHEAD_STEP_MS)
        self._ahead_at = at
        wait = min(max(0.0, (at - self.now_ms()) / 1000), TIMER_MAX_S)
        self._ahead_timer = asyncio.get_running_loop().call_later(wait, self._read_ahead)

    def _read_ahead(self) -> None:
        """Read back, in offset order, the messages due within READ_AHEAD_MS (a step at a time)."""
        self._ahead_timer = None
        if self.deleted:
            return
        now = self.now_ms()
        self._ahead_last = now
        limit = (now + READ_AHEAD_MS) << _SHIFT | _MASK
        cache = self._cache
        wanted = []
        last = self._ahead_key
        for key in self._due.irange(self._ahead_key, limit, inclusive=(False, True)):
            last = key
            offset = key & _MASK
            if offset not in cache:
                wanted.append(offset)
            if len(wanted) >= READ_AHEAD_BATCH:
                break
        self._ahead_key = last
        if wanted:
            got: dict[int, tuple[bytes, bytes]] = {}
            self._read_back(wanted, got)
            for offset, item in got.items():
                size = len(item[0]) + len(item[1])
                if self._cache_bytes + size > CACHE_BUDGET_BYTES:
                    break  # the rest is read when due
                if self._is_pending(offset):
                    cache[offset] = item
                    self._cache_bytes += size
        if len(wanted) >= READ_AHEAD_BATCH:
            self._ahead_at = now
            self._ahead_timer = asyncio.get_running_loop().call_later(0.002, self._read_ahead)
        else:
            self._arm_read_ahead()

    # ------------------------------------------------------------ settlement
    def _await_round(self, rnd: _Round) -> None:
        """Settle a round once the appends that routed it are durable (after this flush)."""
        futures = []
        for queue in rnd.queues:
            if queue.deleted or queue.last_appended < 0:
                continue
            try:
                fut = queue.log.durable_future(queue.last_appended)
            except Exception:  # the queue's log failed to sync: leave it unsettled
                log.warning("delayed exchange %s: queue '%s' cannot sync", self.name, queue.name)
                return
            if fut is not None:
                futures.append(fut)
        rnd.queues = set()
        if not futures:
            self._to_settle.extend(rnd.offsets)
            return
        rnd.waiting = len(futures)
        for fut in futures:
            fut.add_done_callback(lambda f, r=rnd: self._round_durable(r, f))

    def _round_durable(self, rnd: _Round, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is not None:
            rnd.waiting = -1  # may be lost: leave unsettled, so a restart routes it again
            return
        rnd.waiting -= 1
        if rnd.waiting == 0 and not self.deleted:
            self._to_settle.extend(rnd.offsets)
            self._mark_dirty()

    def _write_settled(self) -> None:
        offsets, self._to_settle = self._to_settle, []
        now = self.now_ms()
        records = [
            (now, SETTLED_KEY, _pack_offsets(offsets[i : i + SETTLED_BATCH]), b"")
            for i in range(0, len(offsets), SETTLED_BATCH)
        ]
        rng = self.log.append(records)
        self.last_appended = rng.stop - 1
        inflight = self._inflight
        for offset in offsets:
            inflight.pop(offset, None)
        self._release_segments()

    def _low_water_mark(self) -> int:
        """Every offset below this is settled on disk."""
        lwm = self._first_pending()
        if lwm is None:
            lwm = self.log.log_end_offset
        if self._inflight:
            lwm = min(lwm, min(self._inflight))
        return lwm

    def _release_segments(self) -> None:
        """Delete whole segments below the low-water mark (never the active one)."""
        segments = self.log.segments
        if len(segments) > 1 and segments[0].next_offset <= self._low_water_mark():
            self.log.delete_segments_below(self._low_water_mark())
        self._trim_bits()
        if len(self.log.segments) > 1:
            self._schedule_maintain()

    # ------------------------------------------------------------- maintain
    def _schedule_maintain(self, after: float = MAINTAIN_AFTER_S) -> None:
        """Look at the first segment in `after` seconds (or sooner, if already planned)."""
        if self.deleted or len(self.log.segments) < 2:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        handle = self._maintain_handle
        if handle is not None:
            if handle.when() <= loop.time() + after:
                return
            handle.cancel()
        self._maintain_handle = loop.call_later(after, self._maintain)

    def _maintain(self) -> None:
        """Evacuate a first segment that only a few pending messages keep alive, a step at a time."""
        self._maintain_handle = None
        if self.deleted or self.log.closed:
            return
        segments = self.log.segments
        if len(segments) < 2:
            self._evacuating = None
            return
        first = segments[0]
        if self._evacuating is None or self._evacuating[0] != first.base_offset:
            if self._inflight and min(self._inflight) < first.next_offset:
                self._schedule_maintain(0.05)  # routed (or copied) messages there settle soon
                return
            # Worth a copy when the segment is at most half pending, or when the
            # whole log is at most a quarter pending (copying a denser first
            # segment then frees the sparse ones behind it).
            records = first.next_offset - first.base_offset
            in_first = self._count_pending(first.base_offset, first.next_offset)
            in_log = self.log.log_end_offset - self.log.log_start_offset
            if in_first * 2 > records and self.pending * 4 > in_log:
                self._evacuating = None
                self._release_segments()  # mostly still pending: not worth a copy yet
                return
            self._evacuating = [first.base_offset, first.base_offset, first.next_offset]
        _base, position, end = self._evacuating
        records = self.log.read(position, max_records=EVACUATE_STEP, max_bytes=4 << 20)
        picked = [rec for rec in records
                  if rec.offset < end and rec.key is None and self._is_pending(rec.offset)]  # fmt: skip
        if picked:
            self._copy_forward(picked)
        position = records[-1].offset + 1 if records else end
        if position >= end:
            self._evacuating = None
            self._release_segments()
            self._schedule_maintain(0.01)  # the next segment may be as sparse
        else:
            self._evacuating[1] = position
            self._maintain_handle = asyncio.get_running_loop().call_later(0.002, self._maintain)

    def _copy_forward(self, recs: list[Any]) -> None:
        now = self.now_ms()
        batch = [(rec.timestamp, None, rec.value, rec.headers) for rec in recs]
        batch.append((now, SETTLED_KEY, _pack_offsets([rec.offset for rec in recs]), b""))
        rng = self.log.append(batch)  # one batch: copies and the settling of the originals
        self.last_appended = rng.stop - 1
        # The originals' segment goes only once the copies are durable.
        originals = [rec.offset for rec in recs]
        fut = self.log.durable_future(rng.stop - 1)
        if fut is not None:
            self._inflight.update(dict.fromkeys(originals))
            fut.add_done_callback(lambda f: self._copies_durable(originals, f))
        for i, rec in enumerate(recs):
            new = rng.start + i
            self._clear_bit(rec.offset)
            self._set_bit(new)
            self._due.remove(rec.timestamp << _SHIFT | rec.offset)
            self._due.add(rec.timestamp << _SHIFT | new)
            cached = self._cache.pop(rec.offset, None)
            if cached is not None:
                self._cache[new] = cached
        self.counters["evacuated"] += len(recs)

    def _copies_durable(self, originals: list[int], fut: asyncio.Future) -> None:
        if self.deleted or fut.cancelled() or fut.exception() is not None:
            return  # not durable: the originals stay, and so does their segment
        for offset in originals:
            self._inflight.pop(offset, None)
        if not self.log.closed:
            self._release_segments()

    # ------------------------------------------------------------- lifecycle
    def stop_timers(self) -> None:
        for handle in (self._timer, self._maintain_handle, self._ahead_timer):
            if handle is not None:
                handle.cancel()
        self._timer = None
        self._maintain_handle = None
        self._ahead_timer = None
        self._started = False

    @property
    def settling(self) -> bool:
        """Routed messages whose settled record is not written yet."""
        return bool(self._inflight)

    def delete(self) -> None:
        """The exchange is gone: drop every held message (the broker deletes the topic)."""
        self.stop_timers()
        self.deleted = True
        self._due = SortedList()
        self._bits = bytearray()
        self._cache.clear()
        self._cache_bytes = 0
        self._pending_appends.clear()
        self._inflight.clear()
        self._new_rounds.clear()
        self._to_settle.clear()
        self.pending = 0

    def __repr__(self) -> str:
        return f"DelayedStore({self.name!r}, pending={self.pending})"
