"""A consumer group on a partitioned stream (`x-consumer-group: NAME` on basic.consume).

The group's consumers share the partitions out, one consumer per partition,
balanced and sticky (partition_assignment.py), again whenever one joins or
leaves. The group's progress in a partition is its committed offset: the
highest offset a member acked there, kept in the `consumer-offsets` store
under a key naming the vhost, the queue, the partition and the group
(ConsumerOffsets.group_key). It is what a partition's next owner resumes
after, so deliveries its last owner never acked are delivered again
(at-least-once, as Kafka).

The handover rule is partitioned.py's: a partition that changes owner
starts delivering to the new one only once the last owner has no
deliveries from it in flight (acked, rejected, or returned because its
channel closed). Without failures every message is then processed once.

A partition the group never committed in starts where the first consumer's
`x-stream-offset` said when the group formed, by default `first`: a group
is a subscriber that must not miss what was published before it first
acked. The group lives (in memory) as long as the stream; its offsets,
across restarts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .partition_assignment import share_partitions
from .stream_offsets import OffsetSpec, resolve_start
from .stream_partition_reader import PartitionReader

if TYPE_CHECKING:
    from .partitioned_stream import StreamPartition
    from .partitioned_stream_consumer import PartitionedStreamConsumer

DEFAULT_GROUP_START = OffsetSpec("first")


class ConsumerGroup:
    """The consumers of one group on one partitioned stream, and who reads which partition."""

    def __init__(self, name: str, members: list[StreamPartition], start: OffsetSpec | None) -> None:
        self.name = name
        self.members = members
        n = len(members)
        self.consumers: list[PartitionedStreamConsumer] = []
        self.owners: list[PartitionedStreamConsumer | None] = [None] * n
        self.reading: list[PartitionReader | None] = [None] * n  # the owner's reader, once handed over
        self.draining: list[PartitionReader | None] = [None] * n  # the last owner's, while in flight
        self.keys = [m.offsets.group_key(m.vhost, m.name, name, m.partition) for m in members]
        spec = start or DEFAULT_GROUP_START
        self.initial = [resolve_start(spec, m.log) for m in members]  # where an uncommitted partition starts

    def join(self, consumer: PartitionedStreamConsumer) -> None:
        self.consumers.append(consumer)
        self._share_out()

    def leave(self, consumer: PartitionedStreamConsumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            self._share_out()

    def _share_out(self) -> None:
        """Assign the partitions again; a moved one waits for its last owner's deliveries to settle."""
        self.owners = share_partitions(len(self.members), self.consumers, self.owners)
        for partition, owner in enumerate(self.owners):
            reader = self.reading[partition]
            if reader is not None and reader.owner is not owner:
                self._retire(partition, reader)
        self.hand_over()

    def _retire(self, partition: int, reader: PartitionReader) -> None:
        if reader in reader.owner.readers:
            reader.owner.readers.remove(reader)
        self.reading[partition] = None
        if reader.in_flight:
            self.draining[partition] = reader

    def hand_over(self) -> None:
        """Give each unread partition to its owner, once its last owner's deliveries are all settled."""
        for partition, owner in enumerate(self.owners):
            if owner is None or self.reading[partition] is not None:
                continue
            last = self.draining[partition]
            if last is not None:
                if last.in_flight > 0:
                    continue
                self.draining[partition] = None
            reader = self._reader(partition, owner)
            owner.readers.append(reader)
            self.reading[partition] = reader

    def _reader(self, partition: int, owner: PartitionedStreamConsumer) -> PartitionReader:
        """A reader after the group's committed offset, or at its initial position."""
        member = self.members[partition]
        key = self.keys[partition]
        committed = member.offsets.committed(key)
        start = self.initial[partition] if committed is None else committed + 1
        return PartitionReader(member, owner, max(start, member.log.log_start_offset), offsets_key=key,
                               acked_high=-1 if committed is None else committed)  # fmt: skip

    @property
    def waiting(self) -> bool:
        """Whether a partition is owned but not read yet (a handover in progress)."""
        return any(o is not None and r is None for o, r in zip(self.owners, self.reading, strict=True))

