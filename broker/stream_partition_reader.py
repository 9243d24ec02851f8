"""One consumer's reading of one partition of a partitioned stream.

A consumer of a partitioned stream reads several partitions (all of them,
or those its group gave it), each from a position of its own. A reader is
that position, with its read-ahead, and the count of its deliveries not
settled yet. Deliveries are tracked on the channel session with the reader
in the place of the queue, so settling reaches it: an ack (or a reject or
nack without requeue) commits the group's offset for the partition (when
the consumer is in a group), and every settlement lowers `in_flight`,
which a partition's handover to another member of the group waits for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .message import Message, split_record_headers

if TYPE_CHECKING:
    from .partitioned_stream import StreamPartition

READ_BATCH = 512
READ_BYTES = 1 << 20
_new_message = tuple.__new__


class PartitionReader:
    """A position in one partition; `offsets_key` is the group's commit key (None: not committed)."""

    def __init__(self, member: StreamPartition, owner: Any, position: int, *, offsets_key: bytes | None = None,
                 acked_high: int = -1) -> None:  # fmt: skip
        self.member = member
        self.owner = owner  # the consumer it delivers to
        self.position = position
        self.offsets_key = offsets_key
        self.acked_high = acked_high
        self.in_flight = 0
        self._ahead: list[Message] = []
        self._ahead_base = 0

    def take(self, n: int) -> list[Message]:
        """Up to n messages from the position on (the tail, else the read-ahead); moves the position."""
        member = self.member
        log = member.log
        pos = self.position
        if pos >= log.log_end_offset:
            return []
        pos = max(pos, log.log_start_offset)  # retention went past it: the oldest message left
        batch = member.tail_slice(pos, n)
        if batch:
            self._ahead = []
        else:
            i = pos - self._ahead_base
            if not 0 <= i < len(self._ahead):
                self._read_ahead(pos)
                i = 0
            batch = self._ahead[i : i + n]
        self.position = pos + len(batch)
        self.in_flight += len(batch)
        return batch

    def _read_ahead(self, pos: int) -> None:
        member = self.member
        ahead: list[Message] = []
        split: dict[bytes, tuple[int, bytes, bytes]] = {}
        for rec in member.log.read(pos, max_records=READ_BATCH, max_bytes=READ_BYTES):
            parts = split.get(rec.headers)
            if parts is None:
                parts = split[rec.headers] = split_record_headers(rec.headers)
            flags, exrk, props = parts
            ahead.append(_new_message(Message, (rec.offset, flags, exrk, member.with_headers(props, rec.offset),
                                                rec.value or b"", 0)))  # fmt: skip
        self._ahead, self._ahead_base = ahead, pos

    # ------------------------------------------ the session settles through these
    @property
    def deleted(self) -> bool:
        return self.member.deleted

    def settle(self, offset: int) -> None:
        """Acked, or rejected without requeue: done with, so the group commits it."""
        self.in_flight -= 1
        member = self.member
        member.counters["acked"] += 1
        if member.deleted:
            return
        if self.offsets_key is not None and offset > self.acked_high:
            self.acked_high = offset
            member.offsets.commit(self.offsets_key, offset)
            member.note_commit()

    def requeue(self, msg: Message, kind: str = "returned") -> None:
        """Not done with (the channel closed, or a requeue): not committed; a new owner reads it again."""
        self.in_flight -= 1

    def dead_letter(self, msg: Message, reason: str) -> None:
        """Nothing is dead-lettered from a stream."""

    def dispatch(self) -> None:
        self.member.whole.dispatch()
