"""A partitioned queue (`x-partitions: N`): one queue made of N partition queues.

The queue's log topic has N partitions, and each partition is an ordinary
queue of its own (a `PartitionMember`, a `Queue`): cursor, outstanding set,
state record, TTL, dead-lettering, length limits, delivery limit and
requeues all work per partition, unchanged. The `PartitionedQueue` in
`vhost.queues` is what routing, declare, delete, purge, basic.get, the
management API and the metrics see; it owns no messages itself:

- **publish:** `enqueue` picks the partition (partitioning.py: one CRC of the
  key) and hands the message to it. Order holds per key, as in Kafka.
- **counts** are the partitions' sums; its `log` answers durability for all
  of them at once (a confirm waits for every partition written to).
- **basic.get** takes from the partitions in turn. A delivery's offset is
  `offset * N + partition`, so an ack, reject or requeue that comes back to
  the whole reaches the right partition.

Consumers subscribe to the whole; who gets a partition's messages is
decided here:

- **Without single active consumer** every consumer takes from every
  partition: the partitions share one consumer list, and a consumer's
  prefetch counts its deliveries from all of them, as for one queue.
- **With `x-single-active-consumer`** each partition has one active
  consumer, and the partitions are shared out among the consumers, balanced
  and sticky (partition_assignment.py), again whenever one comes or goes. A
  partition handed to a new owner delivers to it only once none of its
  deliveries is outstanding any more (acked, or requeued when the last
  owner's channel closed): so a key is never with two consumers at once.

Credit is the one thing partitions share, and it is freed one partition at
a time (an ack reaches the partition it came from). Partitions whose ready
messages found no consumer with credit wait in a line per set of consumers
(all of them, or one owner), and credit freed by any of those consumers
serves the line in turn: the partitions take turns, and none waits for
one that keeps filling up.

The whole is generic over its members: anything with a `Member`'s
attributes can be a partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from warrenmq.logstore import PartitionLog, Topic

from .message import Message
from .partition_assignment import share_partitions
from .partitioning import PARTITION_KEY_ARG, header_key, partition_of, routing_key_bytes
from .queue import TAIL_BUDGET_BYTES, Queue

if TYPE_CHECKING:
    from .consumer import Consumer

COUNTERS = ("published", "delivered", "acked", "redelivered", "get", "get_no_ack", "get_empty",
            "deliver_no_ack")  # fmt: skip
MIN_TAIL_BUDGET_BYTES = 256 * 1024
# Arguments the whole keeps to itself: partitions are not deleted one by one.
WHOLE_ONLY_ARGUMENTS = ("x-expires",)


def member_state_key(vhost: str, name: str, partition: int) -> bytes:
    """A partition's queue-state key; partition 0 keeps the key of an unpartitioned queue."""
    suffix = f"\x00{partition}" if partition else ""
    return f"queue\x00{vhost}\x00{name}{suffix}".encode("utf-8", "surrogateescape")


class Member(Protocol):
    """What a partition must offer the whole (a PartitionMember does)."""

    partition: int
    log: PartitionLog
    consumers: list[Consumer]
    counters: dict[str, int]
    deleted: bool
    state_key: bytes
    last_appended: int
    ready: int
    ready_bytes: int
    retain_settled_ms: int | None
    on_dead_letter: Callable[..., None] | None

    @property
    def in_flight(self) -> int: ...
    @property
    def unacked_count(self) -> int: ...
    @property
    def retry_waiting(self) -> int: ...

    def enqueue(self, timestamp: int, flags: int, exchange_rk: bytes, properties: bytes,
                body: bytes, headers: bytes) -> None: ...  # fmt: skip
    def flush_appends(self) -> int: ...
    def dispatch_now(self) -> None: ...
    def take(self) -> tuple[Message, bool] | None: ...
    def delivered(self, offset: int) -> None: ...
    def settle(self, offset: int) -> None: ...
    def requeue(self, msg: Message, kind: str = "returned") -> None: ...
    def dead_letter(self, msg: Message, reason: str) -> None: ...
    def purge(self) -> int: ...
    def release_settled_segments(self) -> None: ...


class PartitionMember(Queue):
    """One partition: a Queue whose dispatches go through its PartitionedQueue."""

    def __init__(self, whole: PartitionedQueue, partition: int, log: PartitionLog, *,
                 on_dirty: Callable[[Queue], None], state: bytes | None,
                 tail_budget: int = TAIL_BUDGET_BYTES) -> None:  # fmt: skip
        self.whole = whole
        self.partition = partition
        arguments = {k: v for k, v in whole.arguments.items() if k not in WHOLE_ONLY_ARGUMENTS}
        super().__init__(
            whole.vhost, whole.name, log, durable=whole.durable, exclusive_owner=whole.exclusive_owner,
            auto_delete=False, arguments=arguments, on_dirty=on_dirty, state=state,
        )  # fmt: skip
        self.state_key = member_state_key(whole.vhost, whole.name, partition)
        self.tail_budget = tail_budget

    def dispatch(self) -> None:
        """New messages, freed credit, a requeue: the whole decides who is served."""
        self.whole.dispatch_member(self)

    def dispatch_now(self) -> None:
        """Deliver to this partition's consumers now (a Queue's round-robin)."""
        Queue.dispatch(self)

    @property
    def in_flight(self) -> int:
        """Deliveries not settled yet, not counting those back in the queue or waiting for a retry."""
        return len(self.outstanding) - len(self.requeued) - self.retry_waiting

    def __repr__(self) -> str:
        return f"PartitionMember({self.vhost!r}, {self.name!r}, {self.partition}, ready={self.ready})"


class PartitionedQueue:
    """A partitioned queue; see the module docstring."""

    overflow = "drop-head"
    rejects_overflow = False  # reject-publish is refused at declare (partitioning.py)
    state_dirty = False  # the partitions write their own states

    def __init__(self, vhost: str, name: str, *, durable: bool, exclusive_owner: Any,
                 auto_delete: bool, arguments: dict[str, Any]) -> None:  # fmt: skip
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments
        self.state_key = member_state_key(vhost, name, 0)
        key = arguments.get(PARTITION_KEY_ARG)
        self.key_header: str | None = key if isinstance(key, str) else None
        self.single_active = arguments.get("x-single-active-consumer") is True
        self.members: list[Member] = []
        self.partitions = 0
        self.consumers: list[Consumer] = []
        self.had_consumers = False
        self._deleted = False
        self._own_counters = dict.fromkeys(COUNTERS, 0)  # basic.get on the whole counts here
        self.counters = SummedCounters(self._own_counters, self.members)
        self.log = PartitionsLog(self.members)
        # x-expires: the whole is deleted when unused for that long.
        expires = arguments.get("x-expires")
        self.expires_ms: int | None = expires if isinstance(expires, int) and not isinstance(expires, bool) else None
        self.last_used = time.monotonic()
        self.on_unused_expired: Callable[[PartitionedQueue], None] | None = None
        self._unused_timer: asyncio.TimerHandle | None = None
        # Who is served: single-active owners, and the lines of partitions waiting for credit.
        self._owners: list[Consumer | None] = []  # assigned
        self._active: list[Consumer | None] = []  # delivering now (None while handing over)
        self._draining: list[Consumer | None] = []  # the last owner while its deliveries settle
        self._lines: dict[Consumer | None, dict[Member, None]] = {}  # by owner; None: all consumers
        self._serving = False
        self._next_first = 0
        self._next_get = 0

    def attach(self, members: Sequence[Member]) -> None:
        """Take the partitions, in partition order (they are built with the whole)."""
        self.members[:] = members
        self.partitions = len(members)
        self._owners = [None] * self.partitions
        self._active = [None] * self.partitions
        self._draining = [None] * self.partitions
        if not self.single_active:
            for member in members:
                member.consumers = self.consumers  # one list: every consumer takes from every partition

    # ------------------------------------------------------------ publishing
    def enqueue(self, timestamp: int, flags: int, exchange_rk: bytes, properties: bytes,
                body: bytes, headers: bytes) -> None:  # fmt: skip
        """Hand the message to the partition of its key."""
        members = self.members
        if len(members) > 1:
            key = header_key(properties, self.key_header) if self.key_header is not None else None
            if key is None:
                key = routing_key_bytes(exchange_rk)
            members[partition_of(key, len(members))].enqueue(timestamp, flags, exchange_rk, properties, body, headers)
        else:
            members[0].enqueue(timestamp, flags, exchange_rk, properties, body, headers)

    def admits(self, size: int) -> bool:
        return True

    def flush_appends(self) -> int:
        return sum(member.flush_appends() for member in self.members)

    @property
    def last_appended(self) -> int:
        """-1 until some partition appended (confirms then wait on `log`, for every partition)."""
        return max((member.last_appended for member in self.members), default=-1)

    # ------------------------------------------------------------ consumers
    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.had_consumers = True
        self.last_used = time.monotonic()
        if self.single_active:
            self._share_out()

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            self._lines.pop(consumer, None)
            if self.single_active:
                self._share_out()
                self.dispatch()
        if not self.consumers:
            self.touch()

    def is_active(self, consumer: Consumer) -> bool:
        """Whether a consumer is delivered to now (with single active consumer: owns a partition)."""
        if not self.single_active:
            return consumer in self.consumers
        return any(active is consumer for active in self._active)

    def _share_out(self) -> None:
        """Assign the partitions again; a moved partition waits for its deliveries to settle."""
        self._owners = share_partitions(self.partitions, self.consumers, self._owners)
        for member, owner in zip(self.members, self._owners, strict=True):
            active = self._active[member.partition]
            if active is owner:
                continue
            if active is not None:
                self._deactivate(member)
            if owner is not None and member.in_flight == 0:
                self._activate(member, owner)

    def _activate(self, member: Member, owner: Consumer) -> None:
        member.consumers = [owner]
        self._active[member.partition] = owner

    def _deactivate(self, member: Member) -> None:
        last_owner = self._active[member.partition]
        line = self._lines.get(last_owner)
        if line:
            line.pop(member, None)
        member.consumers = []
        self._active[member.partition] = None
        if last_owner is not None and member.in_flight:
            self._draining[member.partition] = last_owner

    def _handed_over(self, member: Member) -> bool:
        """Whether the member may deliver now; completes a handover whose deliveries are all settled."""
        partition = member.partition
        owner = self._owners[partition]
        if self._active[partition] is not owner and owner is not None and member.in_flight == 0:
            self._activate(member, owner)
        return self._active[partition] is not None

    # --------------------------------------------------------------- delivery
    def dispatch_member(self, member: Member) -> None:
        """A partition has something to deliver, or its consumers have credit again."""
        if self._deleted:
            return
        if self.single_active:
            partition = member.partition
            last_owner = self._draining[partition]
            if last_owner is not None:
                # An ack or a requeue of the last owner's: its credit is back for its other partitions.
                if member.in_flight == 0:
                    self._draining[partition] = None
                self._serve(self._lines.get(last_owner))
            if not self._handed_over(member):
                return
            audience = self._active[partition]
        elif self.consumers:
            audience = None
        else:
            return
        line = self._lines.setdefault(audience, {})
        if self._serving or not line:
            member.dispatch_now()
            if member.ready > 0:
                line[member] = None
            else:
                line.pop(member, None)
            return
        line[member] = None  # its turn comes after the partitions waiting longer
        self._serve(line)

    def _serve(self, line: dict[Member, None] | None) -> None:
        """The partitions waiting for these consumers' credit, in turn, until it runs out."""
        if not line or self._serving:
            return
        self._serving = True
        try:
            while line:
                first = next(iter(line))
                del line[first]
                first.dispatch_now()
                if first.ready > 0:
                    line[first] = None  # to the back of the line
                    break  # these consumers are out of credit: the rest wait too
        finally:
            self._serving = False

    def dispatch(self) -> None:
        """Serve every partition, starting from a different one each time."""
        if self._deleted or not self.consumers or not self.members:
            return
        n = self.partitions
        first = self._next_first % n
        self._next_first += 1
        self._lines.clear()
        stalled = False  # without single active consumer: once one partition stalls, all do
        serving, self._serving = self._serving, True
        try:
            for i in range(n):
                member = self.members[(first + i) % n]
                if self.single_active:
                    if not self._handed_over(member):
                        continue
                    audience = self._active[member.partition]
                else:
                    audience = None
                if not stalled:
                    member.dispatch_now()
                if member.ready > 0:
                    self._lines.setdefault(audience, {})[member] = None
                    stalled = not self.single_active
        finally:
            self._serving = serving

    # ---------------------------------------------------- basic.get, settling
    def take(self) -> tuple[Message, bool] | None:
        """The next message of the partitions, in turn; its offset names the partition too."""
        n = self.partitions
        for _ in range(n):
            member = self.members[self._next_get % n]
            self._next_get += 1
            item = member.take()
            if item is not None:
                msg, redelivered = item
                return msg._replace(offset=msg.offset * n + member.partition), redelivered
        return None

    def _local(self, offset: int) -> tuple[Member, int]:
        return self.members[offset % self.partitions], offset // self.partitions

    def delivered(self, offset: int) -> None:
        member, local = self._local(offset)
        member.delivered(local)

    def settle(self, offset: int) -> None:
        member, local = self._local(offset)
        member.settle(local)

    def requeue(self, msg: Message, kind: str = "returned") -> None:
        member, local = self._local(msg.offset)
        member.requeue(msg._replace(offset=local), kind)

    def dead_letter(self, msg: Message, reason: str) -> None:
        if msg.offset < 0:  # never stored (a refused publish)
            self.members[0].dead_letter(msg, reason)
            return
        member, local = self._local(msg.offset)
        member.dead_letter(msg._replace(offset=local), reason)

    def purge(self) -> int:
        return sum(member.purge() for member in self.members)

    # ------------------------------------------------------------- counts
    @property
    def message_count(self) -> int:
        return sum(member.ready for member in self.members)

    @property
    def ready(self) -> int:
        return self.message_count

    @property
    def ready_bytes(self) -> int:
        return sum(member.ready_bytes for member in self.members)

    @property
    def unacked_count(self) -> int:
        return sum(member.unacked_count for member in self.members)

    @property
    def retry_waiting(self) -> int:
        return sum(member.retry_waiting for member in self.members)

    # --------------------------------------------------- settled segments
    @property
    def retain_settled_ms(self) -> int | None:
        return self.members[0].retain_settled_ms if self.members else None

    def release_settled_segments(self) -> None:
        for member in self.members:
            member.release_settled_segments()

    def forget_states(self, states: Any) -> None:
        """The queue is deleted: so are its partitions' state records (partition 0's is the queue's)."""
        states.put_many([(m.state_key, None) for m in self.members[1:] if m.state_key in states])

    # ---------------------------------------------------------- lifecycle
    @property
    def deleted(self) -> bool:
        return self._deleted

    @deleted.setter
    def deleted(self, value: bool) -> None:
        self._deleted = value
        if value:
            for member in self.members:
                member.deleted = True
                member.consumers = []
            if self._unused_timer is not None:
                self._unused_timer.cancel()
                self._unused_timer = None

    @property
    def on_dead_letter(self) -> Callable[..., None] | None:
        return self.members[0].on_dead_letter if self.members else None

    @on_dead_letter.setter
    def on_dead_letter(self, handler: Callable[..., None] | None) -> None:
        for member in self.members:
            member.on_dead_letter = handler  # each partition dead-letters as the queue

    def touch(self) -> None:
        """Used (declared, consumed from, read with basic.get): the x-expires clock restarts."""
        self.last_used = time.monotonic()
        if self.expires_ms is not None and not self.consumers:
            self._arm_unused_timer(self.expires_ms)

    def _arm_unused_timer(self, delay_ms: float) -> None:
        if self._unused_timer is not None:
            self._unused_timer.cancel()
        self._unused_timer = asyncio.get_running_loop().call_later(delay_ms / 1000, self._unused_check)

    def _unused_check(self) -> None:
        self._unused_timer = None
        if self._deleted or self.consumers or self.expires_ms is None:
            return
        idle_ms = (time.monotonic() - self.last_used) * 1000
        if idle_ms + 1 < self.expires_ms:
            self._arm_unused_timer(self.expires_ms - idle_ms)
        elif self.on_unused_expired is not None:
            self.on_unused_expired(self)

    def __repr__(self) -> str:
        return f"PartitionedQueue({self.vhost!r}, {self.name!r}, partitions={self.partitions})"


def open_partitioned(vhost: str, name: str, topic: Topic, *, durable: bool, exclusive_owner: Any,
                     auto_delete: bool, arguments: dict[str, Any], on_dirty: Callable[[Queue], None],
                     state_of: Callable[[bytes], bytes | None] | None = None) -> PartitionedQueue:  # fmt: skip
    """A partitioned queue over topic's partitions; state_of restores each partition's state (at start)."""
    whole = PartitionedQueue(vhost, name, durable=durable, exclusive_owner=exclusive_owner,
                             auto_delete=auto_delete, arguments=arguments)  # fmt: skip
    # The partitions share one queue's memory for recent appends, each with a floor.
    tail_budget = max(TAIL_BUDGET_BYTES // len(topic), MIN_TAIL_BUDGET_BYTES)
    whole.attach([
        PartitionMember(whole, i, topic.partition(i), on_dirty=on_dirty, tail_budget=tail_budget,
                        state=state_of(member_state_key(vhost, name, i)) if state_of else None)
        for i in range(len(topic))
    ])  # fmt: skip
    return whole


class SummedCounters(MutableMapping[str, int]):
    """A partitioned queue's counters: its own (basic.get on the whole) plus its partitions'.

    Adding to a key adds to the whole's own count, so `counters["get"] += 1`
    works as on a queue.
    """

    def __init__(self, own: dict[str, int], members: Sequence[Member]) -> None:
        self._own = own
        self._members = members

    def __getitem__(self, key: str) -> int:
        if key not in self._own:
            raise KeyError(key)
        return self._own[key] + sum(member.counters.get(key, 0) for member in self._members)

    def __setitem__(self, key: str, value: int) -> None:
        self._own[key] = self._own.get(key, 0) + value - (self[key] if key in self._own else 0)

    def __delitem__(self, key: str) -> None:
        raise TypeError("a queue's counters are never removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._own)

    def __len__(self) -> int:
        return len(self._own)


class PartitionsLog:
    """The partitions' logs seen as one, for what reads a queue's `log`: sizes and durability."""

    def __init__(self, members: Sequence[Member]) -> None:
        self._members = members

    @property
    def closed(self) -> bool:
        return any(member.log.closed for member in self._members)

    @property
    def log_end_offset(self) -> int:
        """The partitions' log ends, summed: as many records as all of them ever held."""
        return sum(member.log.log_end_offset for member in self._members)

    @property
    def segments(self) -> list[Any]:
        return [segment for member in self._members for segment in member.log.segments]

    @property
    def size_bytes(self) -> int:
        return sum(member.log.size_bytes for member in self._members)

    def durable_future(self, offset: int) -> asyncio.Future | None:
        """Done when every partition's last append is durable (offset, one log's, does not apply)."""
        futures = []
        for member in self._members:
            if member.last_appended >= 0 and not member.log.closed:
                future = member.log.durable_future(member.last_appended)
                if future is not None:
                    futures.append(future)
        if len(futures) <= 1:
            return futures[0] if futures else None
        return _all_done(futures)


def _all_done(futures: list[asyncio.Future]) -> asyncio.Future:
    """One future for several: done when all are, failed (or cancelled) when one is."""
    combined = asyncio.get_running_loop().create_future()
    left = [len(futures)]

    def one_done(future: asyncio.Future) -> None:
        if combined.done():
            return
        if future.cancelled():
            combined.cancel()
        elif future.exception() is not None:
            combined.set_exception(future.exception())
        else:
            left[0] -= 1
            if not left[0]:
                combined.set_result(None)

    for future in futures:
        future.add_done_callback(one_done)
    return combined

