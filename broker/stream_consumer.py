"""A stream consumer: its own position in the stream's log, its credit, its tracked offset.

`consume_stream` is basic.consume on a stream, with RabbitMQ 4.x's checks in
its order: the consumer arguments (`x-stream-offset` must be readable,
`x-priority` belongs to other queue types), then a prefetch is required
(406), automatic acknowledgement is refused (540), and so is a channel-wide
(global) prefetch limit in force (540). `exclusive` is accepted and has no
effect, as in RabbitMQ.

Deliveries are tracked on the channel session like any other, with the
consumer itself in the place of the queue: the session settles through it.
So an ack returns credit and commits the offset of a tracked consumer;
basic.nack, basic.reject and basic.recover only return credit (RabbitMQ 4.x
treats every settlement of a stream delivery so): nothing is redelivered,
nothing is dead-lettered. A reject or nack without requeue counts as done
with, like an ack, and so commits too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pamqp import commands

from warrenmq.amqp import ChannelError, ConnectionError
from warrenmq.amqp.codec import encode_short
from warrenmq.amqp.constants import NOT_IMPLEMENTED, PRECONDITION_FAILED

from .consumer import Consumer
from .message import Message, split_record_headers
from .stream import StreamQueue
from .stream_declare import QUEUE_TYPE_MODULE, type_name
from .stream_header import with_offset_header
from .stream_offsets import (
    NEXT,
    OFFSET_ARG,
    TRACKING_ARG,
    ConsumerOffsets,
    invalid_offset_reason,
    parse_offset_arg,
    resolve_start,
    tracking_wanted,
)

if TYPE_CHECKING:
    from .session import ChannelSession

READ_BATCH = 512
READ_BYTES = 1 << 20
# Consumer arguments of the other queue types: a stream refuses them.
REFUSED_CONSUMER_ARGUMENTS = ("x-priority", "x-cancel-on-ha-failover")
GROUP_ARG = "x-consumer-group"  # partitioned streams only (partitioned_stream_consumer.py)
_new_message = tuple.__new__


@dataclass(eq=False)
class StreamConsumer(Consumer):
    """basic.consume on a stream (`queue` is a StreamQueue); `position` is the next offset it reads."""

    position: int = 0
    offsets_key: bytes | None = None  # where its acks commit; None: not tracked
    acked_high: int = -1
    _ahead: list[Message] = field(default_factory=list)  # read from the segments, from _ahead_base
    _ahead_base: int = 0

    def can_take(self) -> bool:
        """Credit left and a socket that can take more (a stream ignores channel-wide limits)."""
        return self.unacked < self.prefetch and self.channel.owner.writable

    def pump(self, budget: int) -> int:
        """Deliver what the credit allows, at most budget messages; returns how many.

        Messages go out in slices of the stream's tail or of the read-ahead,
        with the work of `deliver` inlined: a replay is nothing but this loop.
        The socket's state cannot change within it (writes happen after it).
        """
        channel = self.channel
        room = min(budget, self.prefetch - self.unacked)
        if room <= 0 or not channel.owner.writable:
            return 0
        number, ctag, track = channel.number, self.tag_short, channel.track
        next_tag, send = channel.next_delivery_tag, channel.conn.send_deliver
        sent = 0
        while sent < room:
            batch = self._take(room - sent)
            if not batch:
                break
            for msg in batch:
                tag = next_tag()
                track(tag, self, msg, self)
                _offset, _flags, exrk, props, body, _expires = msg
                send(number, ctag, tag, False, exrk, props, body)
            sent += len(batch)
        if sent:
            self.unacked += sent
            channel.counters["deliver"] += sent
            self.queue.counters["delivered"] += sent
        return sent

    def _take(self, n: int) -> list[Message]:
        """Up to n messages from the position on (the tail, else the read-ahead); moves the position."""
        queue = self.queue
        log = queue.log
        pos = self.position
        if pos >= log.log_end_offset:
            return []
        start = log.log_start_offset
        if pos < start:  # retention went past it: go on from the oldest message left
            pos = start
        batch = queue.tail_slice(pos, n)
        if batch:
            if self._ahead:  # caught up with the tail: the read-ahead is done with
                self._ahead = []
        else:
            i = pos - self._ahead_base
            if not 0 <= i < len(self._ahead):
                self._read_ahead(pos)
                i = 0
            batch = self._ahead[i : i + n]
        self.position = pos + len(batch)
        return batch

    def _read_ahead(self, pos: int) -> None:
        """Read the next records from the segments, each with its offset header added.

        A stream's records mostly share their headers (flags, exchange, routing
        key, properties), so each distinct one is split once per read.
        """
        ahead: list[Message] = []
        append = ahead.append
        split: dict[bytes, tuple[int, bytes, bytes]] = {}
        for rec in self.queue.log.read(pos, max_records=READ_BATCH, max_bytes=READ_BYTES):
            parts = split.get(rec.headers)
            if parts is None:
                parts = split[rec.headers] = split_record_headers(rec.headers)
            flags, exrk, props = parts
            offset = rec.offset
            append(_new_message(Message, (offset, flags, exrk, with_offset_header(props, offset),
                                          rec.value or b"", 0)))  # fmt: skip
        self._ahead, self._ahead_base = ahead, pos

    def deliver(self, queue: Any, msg: Message, redelivered: bool) -> None:
        channel = self.channel
        tag = channel.next_delivery_tag()
        channel.counters["deliver"] += 1
        self.unacked += 1
        channel.track(tag, self, msg, self)
        self.queue.counters["delivered"] += 1
        channel.conn.send_deliver(
            channel.number, self.tag_short, tag, False, msg.exchange_rk, msg.properties, msg.body
        )

    # ------------------------------------------ the session settles through these
    @property
    def deleted(self) -> bool:
        return self.queue.deleted

    def settle(self, offset: int) -> None:
        """Acked (or rejected without requeue): a tracked consumer commits its highest such offset."""
        self.queue.counters["acked"] += 1
        if self.queue.deleted:  # an ack after the stream went: nothing to commit to
            return
        if self.offsets_key is not None and offset > self.acked_high:
            self.acked_high = offset
            self.queue.offsets.commit(self.offsets_key, offset)
            self.queue.note_commit()

    def requeue(self, msg: Message, kind: str = "returned") -> None:
        """Nothing comes back: the session has returned the credit already."""

    def dead_letter(self, msg: Message, reason: str) -> None:
        """Nothing is dead-lettered from a stream."""

    def dispatch(self) -> None:
        self.queue.dispatch()


def consume_stream(conn: Any, session: ChannelSession, queue: StreamQueue, tag: str, method: Any) -> None:
    """basic.consume on a stream (after the tag-reuse check); see the module docstring."""
    arguments = dict(method.arguments or {})
    resource = queue.resource
    spec = offset_spec(arguments, resource, queue.now_ms())
    tracked = tracking_wanted(arguments.get(TRACKING_ARG), bool(method.consumer_tag))
    if tracked is None:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid arg '{TRACKING_ARG}' for {resource}: "
            f"{{unacceptable_type,{type_name(arguments[TRACKING_ARG])}}}",
            60, 20,
        )  # fmt: skip
    if GROUP_ARG in arguments:
        raise ChannelError(
            PRECONDITION_FAILED, f"invalid arg '{GROUP_ARG}' for {resource}: consumer groups need a "
            "partitioned stream (x-partitions)", 60, 20,
        )  # fmt: skip
    check_stream_consume(session, method, resource)
    queue.flush_appends()  # "next" means after what was published before this consume
    key = ConsumerOffsets.key(queue.vhost, queue.name, tag) if tracked else None
    consumer = StreamConsumer(
        tag, encode_short(tag), session, queue, False, method.exclusive, session.prefetch_count,
        arguments, position=_start(queue, spec, key), offsets_key=key,
    )  # fmt: skip
    session.consumers[tag] = consumer
    queue.add_consumer(consumer)
    if not method.nowait:
        conn.send_method(session.number, commands.Basic.ConsumeOk(tag))
    queue.dispatch()


def check_stream_consume(session: ChannelSession, method: Any, resource: str) -> None:
    """A stream consumer needs a prefetch (406), manual acks (540) and no global limit in force (540)."""
    if session.prefetch_count == 0:
        raise ChannelError(
            PRECONDITION_FAILED, f"consumer prefetch count is not set for stream {resource}", 60, 20
        )
    if method.no_ack:
        raise ConnectionError(
            NOT_IMPLEMENTED, f"automatic acknowledgement not supported by stream {resource}", 60, 20
        )
    if session.limiter_active:
        raise ConnectionError(NOT_IMPLEMENTED, f"{resource} does not support global qos", 60, 20)


def offset_spec(arguments: dict[str, Any], resource: str, now_ms: int) -> Any:
    """The consumer's x-stream-offset (None when absent); 406 for an argument a stream refuses."""
    for key in REFUSED_CONSUMER_ARGUMENTS:
        if key in arguments:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"invalid arg '{key}' for {resource} of queue type {QUEUE_TYPE_MODULE}", 60, 20,
            )  # fmt: skip
    if OFFSET_ARG not in arguments:
        return None
    value = arguments[OFFSET_ARG]
    spec = parse_offset_arg(value, now_ms)
    if spec is None:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid arg '{OFFSET_ARG}' for {resource}: {invalid_offset_reason(value)}", 60, 20,
        )  # fmt: skip
    return spec


def _start(queue: StreamQueue, spec: Any, key: bytes | None) -> int:
    """Where the consumer starts: its spec; else after its committed offset; else next."""
    if spec is None and key is not None:
        committed = queue.offsets.committed(key)
        if committed is not None:
            return max(committed + 1, queue.log.log_start_offset)
    return resolve_start(spec or NEXT, queue.log)
