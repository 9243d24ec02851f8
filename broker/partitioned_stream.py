"""A partitioned stream (`x-queue-type: stream` with `x-partitions: N`): N streams under one name.

The stream's log topic has N partitions, and each is a stream of its own (a
`StreamPartition`): its log, its appends, its in-memory tail, its
retention. The whole is a `PartitionedQueue` over them, so publishing
routes by key exactly as for a partitioned queue, and counts, confirms,
declare, delete and the refusals of basic.get and queue.purge come from
the partitions.

What differs is reading. Consumers hold their positions themselves, one
per partition they read (stream_partition_reader.py): a plain consumer
reads every partition, a consumer group's members share them
(stream_consumer_group.py). Deliveries carry `x-stream-offset`, the
offset within the partition, and `x-stream-partition`, the partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from warrenmq.logstore import PartitionLog, Topic

from .partitioned import PartitionedQueue, member_state_key
from .stream import DISPATCH_BATCH, StreamQueue
from .stream_consumer_group import ConsumerGroup
from .stream_header import with_offset_header, with_partition_header
from .stream_offsets import ConsumerOffsets, OffsetSpec

if TYPE_CHECKING:
    from .partitioned_stream_consumer import PartitionedStreamConsumer


class StreamPartition(StreamQueue):
    """One partition of a partitioned stream: a stream whose readers belong to the whole."""

    retain_settled_ms = None
    in_flight = 0  # deliveries are counted by the readers

    def __init__(self, whole: PartitionedStream, partition: int, log: PartitionLog, *,
                 on_dirty: Callable[[Any], None]) -> None:  # fmt: skip
        super().__init__(whole.vhost, whole.name, log, arguments=whole.arguments, on_dirty=on_dirty,
                         offsets=whole.offsets)  # fmt: skip
        self.whole = whole
        self.partition = partition
        self.state_key = member_state_key(whole.vhost, whole.name, partition)
        self.consumers = whole.consumers  # one list: the tail is kept while the whole has consumers

    def with_headers(self, properties: bytes, offset: int) -> bytes:
        return with_partition_header(with_offset_header(properties, offset), self.partition)

    def dispatch(self) -> None:
        self.whole.dispatch()

    def dispatch_now(self) -> None:
        self.whole.dispatch()

    def forget_offsets_below(self, log_start: int) -> None:
        self.offsets.forget_partition_below(self.vhost, self.name, self.partition, log_start)

    @property
    def cursor(self) -> int:
        """The lowest position of a consumer in this partition (the log end without one)."""
        end = self.log.log_end_offset
        positions = [p for c in self.consumers if (p := c.position_in(self.partition)) is not None]
        return max(self.log.log_start_offset, min(min(positions, default=end), end))


class PartitionedStream(PartitionedQueue):
    """A partitioned stream; see the module docstring."""

    def __init__(self, vhost: str, name: str, *, arguments: dict[str, Any], offsets: ConsumerOffsets) -> None:
        super().__init__(vhost, name, durable=True, exclusive_owner=None, auto_delete=False, arguments=arguments)
        self.single_active = False
        self.offsets = offsets
        self.resource = f"queue '{name}' in vhost '{vhost}'"
        self.groups: dict[str, ConsumerGroup] = {}
        self._rr = 0
        self._dispatch_scheduled = False

    @property
    def stream_partitions(self) -> list[StreamPartition]:
        """The partitions, for the upkeep loop's retention pass."""
        return self.members  # type: ignore[return-value]

    # ------------------------------------------------------------ consumers
    def add_stream_consumer(self, consumer: PartitionedStreamConsumer, spec: OffsetSpec | None) -> None:
        self.consumers.append(consumer)
        self.had_consumers = True
        if consumer.group is not None:
            group = self.groups.get(consumer.group)
            if group is None:
                group = self.groups[consumer.group] = ConsumerGroup(consumer.group, self.stream_partitions, spec)
            group.join(consumer)

    def add_consumer(self, consumer: Any) -> None:
        self.add_stream_consumer(consumer, None)

    def remove_consumer(self, consumer: Any) -> None:
        if consumer not in self.consumers:
            return
        self.consumers.remove(consumer)
        if consumer.group is not None:
            self.groups[consumer.group].leave(consumer)
        consumer.readers = []
        for member in self.stream_partitions:
            member.remove_consumer(consumer)  # without consumers, the tails go
        self.dispatch()

    def is_active(self, consumer: Any) -> bool:
        return bool(getattr(consumer, "readers", None))

    # --------------------------------------------------------------- delivery
    def dispatch_member(self, member: Any) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        """Complete the handovers that can be, then let consumers with credit read on (bounded)."""
        if self.deleted:
            return
        for group in self.groups.values():
            if group.waiting:
                group.hand_over()
        consumers = self.consumers
        if not consumers:
            return
        n = len(consumers)
        budget = DISPATCH_BATCH
        start = self._rr % n
        self._rr += 1
        for i in range(n):
            budget -= consumers[(start + i) % n].pump(budget)
            if budget <= 0:
                if not self._dispatch_scheduled:
                    self._dispatch_scheduled = True
                    asyncio.get_running_loop().call_soon(self._dispatch_again)
                return

    def _dispatch_again(self) -> None:
        self._dispatch_scheduled = False
        self.dispatch()

    def forget_consumer_offsets(self) -> None:
        """The stream is deleted: so are its groups' offsets."""
        self.offsets.forget_queue(self.vhost, self.name)

    def __repr__(self) -> str:
        return f"PartitionedStream({self.vhost!r}, {self.name!r}, partitions={self.partitions})"


def open_partitioned_stream(vhost: str, name: str, topic: Topic, *, arguments: dict[str, Any],
                            on_dirty: Callable[[Any], None], offsets: ConsumerOffsets) -> PartitionedStream:  # fmt: skip
    """A partitioned stream over the topic's partitions."""
    whole = PartitionedStream(vhost, name, arguments=arguments, offsets=offsets)
    whole.attach([StreamPartition(whole, i, topic.partition(i), on_dirty=on_dirty) for i in range(len(topic))])
    return whole
