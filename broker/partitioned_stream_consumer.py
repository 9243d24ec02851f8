"""basic.consume on a partitioned stream: a plain consumer reads every partition, a group shares them.

The checks are a stream's (stream_consumer.py), plus two of the partitioned
stream's own: an integer `x-stream-offset` is refused (406), since an offset
belongs to one partition; and `x-consumer-group` must name the group with a
non-empty string (406). A plain consumer starts in every partition where
`x-stream-offset` says (first, last, next, a timestamp, an interval; `next`
by default); a group member reads the partitions the group gives it
(stream_consumer_group.py).

The consumer's prefetch is its credit across all the partitions it reads;
it takes from them in turn, so a busy partition does not starve the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pamqp import commands

from warrenmq.amqp import ChannelError
from warrenmq.amqp.codec import encode_short
from warrenmq.amqp.constants import PRECONDITION_FAILED

from .consumer import Consumer
from .message import Message
from .stream_consumer import GROUP_ARG, check_stream_consume, offset_spec
from .stream_declare import type_name
from .stream_offsets import NEXT, OFFSET_ARG, resolve_start
from .stream_partition_reader import PartitionReader

if TYPE_CHECKING:
    from .partitioned_stream import PartitionedStream
    from .session import ChannelSession


@dataclass(eq=False)
class PartitionedStreamConsumer(Consumer):
    """A consumer of a partitioned stream: one reader per partition it reads, and shared credit."""

    group: str | None = None
    readers: list[PartitionReader] = field(default_factory=list)
    _turn: int = 0

    def can_take(self) -> bool:
        return self.unacked < self.prefetch and self.channel.owner.writable

    def pump(self, budget: int) -> int:
        """Deliver what the credit allows, at most budget messages, the partitions taking turns."""
        channel = self.channel
        room = min(budget, self.prefetch - self.unacked)
        readers = self.readers
        if room <= 0 or not readers or not channel.owner.writable:
            return 0
        number, ctag, track = channel.number, self.tag_short, channel.track
        next_tag, send = channel.next_delivery_tag, channel.conn.send_deliver
        n = len(readers)
        share = max(1, room // n)
        i = self._turn
        self._turn += 1
        sent = idle = 0
        while sent < room and idle < n:
            reader = readers[i % n]
            i += 1
            batch = reader.take(min(share, room - sent))
            if not batch:
                idle += 1
                continue
            idle = 0
            for msg in batch:
                tag = next_tag()
                track(tag, reader, msg, self)
                send(number, ctag, tag, False, msg.exchange_rk, msg.properties, msg.body)
            sent += len(batch)
            reader.member.counters["delivered"] += len(batch)
        if sent:
            self.unacked += sent
            channel.counters["deliver"] += sent
        return sent

    def deliver(self, queue: Any, msg: Message, redelivered: bool) -> None:
        raise AssertionError("a partitioned stream delivers through pump")

    def position_in(self, partition: int) -> int | None:
        """The next offset it reads in a partition, None when it does not read it."""
        for reader in self.readers:
            if reader.member.partition == partition:
                return reader.position
        return None

    def dispatch(self) -> None:
        self.queue.dispatch()


def consume_partitioned_stream(conn: Any, session: ChannelSession, whole: PartitionedStream, tag: str,
                               method: Any) -> None:  # fmt: skip
    """basic.consume on a partitioned stream (after the tag-reuse check); see the module docstring."""
    arguments = dict(method.arguments or {})
    resource = whole.resource
    spec = offset_spec(arguments, resource, whole.members[0].now_ms())
    if spec is not None and spec.kind == "offset":
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid arg '{OFFSET_ARG}' for {resource}: offsets are per partition "
            "(use first, last, next or a time)", 60, 20,
        )  # fmt: skip
    group = arguments.get(GROUP_ARG)
    if group is not None and (not isinstance(group, str) or not group):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid arg '{GROUP_ARG}' for {resource}: a non-empty string is required, "
            f"got {type_name(group)}", 60, 20,
        )  # fmt: skip
    check_stream_consume(session, method, resource)
    whole.flush_appends()  # "next" means after what was published before this consume
    consumer = PartitionedStreamConsumer(
        tag, encode_short(tag), session, whole, False, method.exclusive, session.prefetch_count,
        arguments, group=group,
    )  # fmt: skip
    if group is None:
        consumer.readers = [PartitionReader(m, consumer, resolve_start(spec or NEXT, m.log)) for m in whole.members]
    session.consumers[tag] = consumer
    whole.add_stream_consumer(consumer, spec)
    if not method.nowait:
        conn.send_method(session.number, commands.Basic.ConsumeOk(tag))
    whole.dispatch()
