"""Replay: publish records of a queue's log again, as new messages.

A queue's log keeps its messages after they are settled, until their
segment is deleted (at once, or later with `x-retain-settled`, see
retention.py). Replay reads a range of that log and appends each record
again, with its properties and body exactly as stored, either

- into a queue (the same one or another of the vhost): the record's bytes
  are appended unchanged, stored exchange, routing key and flags included,
  so it is delivered as it was the first time, as a new message; or
- `to_origin`: to where a dead-lettered record came from. Its first
  `x-death` entry (the newest death) names the exchange and routing keys it
  was published with before it died; it is routed from there through the
  bindings as they are now, with every header kept (its death history
  too, so a next death counts up as in RabbitMQ).

Which records, within [start, end):

- by default only settled ones: below the queue's cursor or skipped by it
  (acked, expired, dropped, dead-lettered), and not outstanding (unacked,
  requeued, waiting for a delayed retry). Messages still waiting in the
  queue are never duplicated;
- `include_unsettled` (`all` in the API): every record;
- `to_origin` also skips records without an x-death of this broker's.

`end` is the log end when the replay starts (and at most `to_offset`), so
replaying a queue into itself never reads its own copies. `limit` counts
the records selected (replayed, unroutable or refused); skipped ones do
not count. Records are read and appended in chunks, one event-loop turn
each, so a long replay does not stall the broker; the answer comes once
every copy is durable under the broker's fsync policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from warrenmq.amqp.codec import encode_short

from .deadletter import death_history
from .delayed import Hold
from .handler import _headers_of, _property
from .message import (
    FLAG_DEATHS_OURS,
    FLAG_EXPLICIT_KEY,
    Message,
    record_headers,
    split_record_headers,
)
from .queue import Queue

if TYPE_CHECKING:
    from warrenmq.logstore import PartitionLog

    from .server import Broker
    from .vhost import VirtualHost

CHUNK = 512  # records read and appended per event-loop turn
# (offset, flags, exchange + routing key, properties, body, the record's raw headers)
Item = tuple[int, int, bytes, bytes, bytes, bytes]


@dataclass(frozen=True)
class ReplaySpec:
    """What to replay: a start (an offset or a time, ms), an optional end and limit, and where to."""

    from_offset: int | None = None
    from_time: int | None = None
    to_offset: int | None = None  # exclusive
    limit: int | None = None
    to_queue: str | None = None  # None: the source queue itself
    to_origin: bool = False
    include_unsettled: bool = False


@dataclass
class ReplayCounts:
    """What a replay did. `next_offset` is where a following replay would continue."""

    replayed: int = 0
    skipped: int = 0
    unroutable: int = 0
    refused: int = 0  # refused by a full queue with x-overflow reject-publish(-dlx)
    first_offset: int = 0
    next_offset: int = 0

    @property
    def selected(self) -> int:
        return self.replayed + self.unroutable + self.refused

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ReplayError(Exception):
    """A replay that cannot start; `missing` is set when a queue it names does not exist."""

    def __init__(self, text: str, *, missing: bool = False) -> None:
        super().__init__(text)
        self.missing = missing


# What became of one record: the ReplayCounts field it adds to.
_REPLAYED, _SKIPPED, _UNROUTABLE, _REFUSED = "replayed", "skipped", "unroutable", "refused"


def replayable(queue: Any) -> Queue:
    """The queue, when it is one whose log replay can read (a classic queue)."""
    if not isinstance(queue, Queue):
        raise ReplayError(f"queue '{queue.name}' in vhost '{queue.vhost}' is not a classic queue")
    return queue


def target_queue(vhost: VirtualHost, source: Queue, spec: ReplaySpec) -> Queue | None:
    """The queue records are appended to; None for to_origin."""
    if spec.to_origin:
        if spec.to_queue is not None:
            raise ReplayError("to_queue and to_origin cannot be combined")
        return None
    if spec.to_queue is None:
        return source
    target = vhost.queues.get(spec.to_queue)
    if target is None:
        raise ReplayError(f"no queue '{spec.to_queue}' in vhost '{vhost.name}'", missing=True)
    return replayable(target)


def is_settled(queue: Queue, offset: int) -> bool:
    """Whether the message at offset is done with: delivered (or skipped) and not outstanding."""
    return offset not in queue.outstanding and (offset < queue.cursor or offset in queue.skipped)


def origin(flags: int, properties: bytes) -> tuple[str, tuple[str, ...]] | None:
    """(exchange, routing keys) of the first x-death entry; None without one of ours."""
    try:
        deaths = death_history(properties, bool(flags & FLAG_DEATHS_OURS))
    except ValueError:  # malformed properties: nothing to read a death from
        return None
    if not deaths or not deaths[0].routing_keys:
        return None
    return deaths[0].exchange, deaths[0].routing_keys


class Replay:
    """One replay of a source queue's log; `await run()` does it and answers the counts."""

    def __init__(self, broker: Broker, source: Queue, spec: ReplaySpec) -> None:
        self.broker = broker
        self.source = replayable(source)
        self.spec = spec
        self.vhost = broker.vhosts[source.vhost]
        self.target = target_queue(self.vhost, self.source, spec)
        broker.flush_if_dirty()  # this turn's publishes into the log, so the range is the log's
        self.start, self.end = self._range()
        self.counts = ReplayCounts(first_offset=self.start, next_offset=self.start)
        self._written: dict[PartitionLog, None] = {}

    def _range(self) -> tuple[int, int]:
        log = self.source.log
        spec = self.spec
        end = log.log_end_offset
        if spec.to_offset is not None:
            end = min(end, spec.to_offset)
        if spec.from_time is not None:
            found = log.offset_for_time(spec.from_time)
            start = end if found is None else found
        else:
            start = spec.from_offset or 0
        start = max(start, log.log_start_offset)
        return min(start, end), end

    # ------------------------------------------------------------ reading
    async def _records(self) -> AsyncIterator[Item]:
        """Yield (offset, flags, exrk, props, body, raw headers) of the range, a chunk per turn.

        Stops early when the source goes (deleted, or the broker stops).
        """
        offset = self.start
        log = self.source.log
        while offset < self.end:
            if self.source.deleted or log.closed:
                return
            offset = max(offset, log.log_start_offset)  # segments may have gone meanwhile
            if offset >= self.end:
                return
            records = log.read(offset, max_records=min(CHUNK, self.end - offset), max_bytes=8 << 20)
            if not records:
                return
            for rec in records:
                if rec.offset >= self.end:
                    return
                flags, exrk, props = split_record_headers(rec.headers)
                yield rec.offset, flags, exrk, props, rec.value or b"", rec.headers
            offset = records[-1].offset + 1
            self.broker.flush_if_dirty()
            await asyncio.sleep(0)

    def _wanted(self, offset: int) -> bool:
        return self.spec.include_unsettled or is_settled(self.source, offset)

    def _full(self) -> bool:
        return self.spec.limit is not None and self.counts.selected >= self.spec.limit

    async def origin_exchanges(self) -> set[str]:
        """The exchanges a to_origin replay would publish to (for permission checks first)."""
        seen: set[str] = set()
        selected = 0
        limit = self.spec.limit
        async with aclosing(self._records()) as records:
            async for offset, flags, _exrk, props, _body, _headers in records:
                if limit is not None and selected >= limit:
                    break
                found = origin(flags, props) if self._wanted(offset) else None
                if found is not None:
                    seen.add(found[0])
                    selected += 1
        return seen

    # ------------------------------------------------------------ writing
    async def run(self, may_publish_to: Callable[[str], bool] = lambda _name: True) -> ReplayCounts:
        """Replay the range; to_origin records whose exchange may_publish_to refuses are skipped."""
        counts = self.counts
        async with aclosing(self._records()) as records:
            async for offset, flags, exrk, props, body, headers in records:
                if self._full():
                    break
                counts.next_offset = offset + 1
                outcome = self._replay_one(
                    offset, flags, exrk, props, body, headers, may_publish_to
                )
                setattr(counts, outcome, getattr(counts, outcome) + 1)
        self.broker.flush_if_dirty()
        await self._durable()
        return counts

    def _replay_one(self, offset: int, flags: int, exrk: bytes, props: bytes, body: bytes,
                    headers: bytes, may_publish_to: Callable[[str], bool]) -> str:  # fmt: skip
        """Replay one record; the name of the count it adds to."""
        if not self._wanted(offset):
            return _SKIPPED
        if self.target is not None:
            return self._append(self.target, flags, exrk, props, body, headers)
        found = origin(flags, props)
        if found is None or not may_publish_to(found[0]):
            return _SKIPPED
        return self._to_origin(found[0], found[1], flags, props, body)

    def _append(self, queue: Queue, flags: int, exrk: bytes, props: bytes, body: bytes,
                headers: bytes) -> str:  # fmt: skip
        """Append to one queue as a publish would, x-overflow reject-publish(-dlx) included."""
        if queue.deleted:
            return _UNROUTABLE
        if queue.rejects_overflow and not queue.admits(len(body)):
            if queue.overflow == "reject-publish-dlx":
                queue.dead_letter(Message(-1, flags, exrk, props, body), "maxlen")
            return _REFUSED
        queue.enqueue(self.broker.now_ms(), flags, exrk, props, body, headers)
        self._written[queue.log] = None
        return _REPLAYED

    def _to_origin(self, exchange_name: str, keys: tuple[str, ...], flags: int, props: bytes,
                   body: bytes) -> str:  # fmt: skip
        """Route from the exchange of the first death with its routing keys, bindings as they are now."""
        vhost = self.vhost
        exchange = vhost.exchanges.get(exchange_name)
        if exchange is None:
            return _UNROUTABLE
        hold = Hold(props) if vhost.delayed_exchanges else None
        targets: dict[Queue, None] = {}
        for key in keys:
            for queue in vhost.route(exchange, key, lambda: _headers_of(props),
                                     lambda name: _property(props, name), hold=hold):  # fmt: skip
                targets[queue] = None
        # Published to the origin again: the key is its own, not a dead-letter routing key.
        flags &= ~FLAG_EXPLICIT_KEY
        exrk = encode_short(exchange_name) + encode_short(keys[0])
        outcome = _UNROUTABLE
        if hold is not None and hold.exchanges:
            self.broker.hold_delayed(hold, flags, exrk, props, body)
            for held_by in hold.exchanges:
                self._written[held_by.delayed.log] = None
            outcome = _REPLAYED
        headers = record_headers(flags, exrk, props)
        for queue in targets:
            result = self._append(queue, flags, exrk, props, body, headers)
            if result == _REPLAYED or outcome == _UNROUTABLE:
                outcome = result
        return outcome

    async def _durable(self) -> None:
        """Wait until every log written to is durable up to its end (the fsync policy decides)."""
        for log in self._written:
            if log.closed:
                continue
            future = log.durable_future(log.log_end_offset - 1)
            while future is not None and not future.done() and not log.closed:
                # A log deleted meanwhile never completes its futures: look again now and then.
                await asyncio.wait({future}, timeout=0.1)
            if future is not None and future.done():
                future.result()


async def replay(broker: Broker, source: Any, spec: ReplaySpec,
                 may_publish_to: Callable[[str], bool] = lambda _name: True) -> ReplayCounts:  # fmt: skip
    """Replay records of source's log as spec says; ReplayError when it cannot start."""
    return await Replay(broker, source, spec).run(may_publish_to)
