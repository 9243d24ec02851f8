"""A channel as the broker sees it: deliveries awaiting acks, prefetch, confirms, transactions.

Unacked deliveries are kept in a dict by delivery tag (tags only grow, so
insertion order is tag order) plus a deque of tags for `multiple` acks,
which pop from the left without scanning. Publisher confirms are grouped
per event-loop turn: everything a channel published in one turn is
confirmed together, with `multiple`, once every queue it reached has made
the turn's appends durable (persistent messages in durable queues only);
groups are confirmed in order, so a `multiple` ack never covers a publish
that is still waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from warrenmq.amqp import ChannelError, Connection

from .message import Message

if TYPE_CHECKING:
    from .consumer import Consumer
    from .queue import Queue


# A channel with this many publishes awaiting durability stops being read
# until fewer than the low mark wait: memory stays bounded whatever the rate.
UNCONFIRMED_HIGH = 50_000
UNCONFIRMED_LOW = 10_000

# Per-channel message counters, named as RabbitMQ's management API names its
# message_stats. Plain int increments on a dict the channel has anyway: the
# metrics and the management API read them when asked, nothing is pushed.
CHANNEL_COUNTERS = (
    "publish", "confirm", "return_unroutable", "drop_unroutable", "deliver", "deliver_no_ack",
    "get", "get_no_ack", "get_empty", "ack", "redeliver",
)  # fmt: skip


class ConfirmGroup:
    """The publishes of one channel in one turn, confirmed together."""

    __slots__ = ("first_seq", "last_seq", "waiting", "queues", "nacks")

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.last_seq = first_seq
        self.waiting = 0
        self.queues: set[Queue] = set()
        self.nacks: set[int] = set()  # publishes refused (reject-publish): nacked alone


class ChannelSession:
    """Broker state of one open channel."""

    def __init__(self, conn: Connection, number: int, owner: Any) -> None:
        self.conn = conn
        self.number = number
        self.owner = owner  # the BrokerConnection
        self.consumers: dict[str, Consumer] = {}
        self.unacked: dict[int, tuple[Queue, Message, Consumer | None]] = {}
        self._unacked_order: deque[int] = deque()
        self._next_tag = 0
        self.consumer_unacked = 0
        self.prefetch_count = 0  # default for new consumers (global=False)
        self.global_prefetch = 0  # channel-wide limit (global=True)
        self.limiter_active = False  # RabbitMQ's: the last basic.qos set a global limit (streams refuse it)
        self.flow_active = True
        self.last_queue: str | None = None  # for queue methods with an empty name
        # Confirms.
        self.confirming = False
        self.publish_seq = 0
        self.confirmed_seq = 0
        self._group: ConfirmGroup | None = None
        self._groups: deque[ConfirmGroup] = deque()
        self._backpressure = False
        # Transactions.
        self.transactional = False
        self.tx_publishes: list[tuple[Any, ...]] = []
        self.tx_acks: list[tuple[str, tuple[Any, ...]]] = []
        self.counters: dict[str, int] = dict.fromkeys(CHANNEL_COUNTERS, 0)

    # ------------------------------------------------------------ deliveries
    def next_delivery_tag(self) -> int:
        self._next_tag += 1
        return self._next_tag

    def can_send(self) -> bool:
        # Global prefetch counts consumer deliveries only (basic.get ones are apart).
        if self.global_prefetch and self.consumer_unacked >= self.global_prefetch:
            return False
        return self.owner.writable

    def track(self, tag: int, queue: Queue, msg: Message, consumer: Consumer | None) -> None:
        self.unacked[tag] = (queue, msg, consumer)
        self._unacked_order.append(tag)
        if consumer is not None:
            self.consumer_unacked += 1

    def _pop(self, tag: int, multiple: bool) -> list[tuple[Queue, Message, Consumer | None]]:
        """The deliveries an ack/nack/reject settles; 406 for an unknown tag."""
        unacked = self.unacked
        if multiple:
            if tag != 0 and tag not in unacked:
                raise ChannelError(406, f"unknown delivery tag {tag}", 60, 80)
            order = self._unacked_order
            out = []
            while order and (tag == 0 or order[0] <= tag):
                entry = unacked.pop(order.popleft(), None)
                if entry is not None:
                    out.append(entry)
            return out
        entry = unacked.pop(tag, None)
        if entry is None:
            raise ChannelError(406, f"unknown delivery tag {tag}", 60, 80)
        if self._unacked_order and self._unacked_order[0] == tag:
            self._unacked_order.popleft()
        elif len(self._unacked_order) > 2 * len(unacked) + 64:
            self._unacked_order = deque(t for t in self._unacked_order if t in unacked)
        return [entry]

    def ack(self, tag: int, multiple: bool) -> None:
        touched = set()
        entries = self._pop(tag, multiple)
        self.counters["ack"] += len(entries)
        for queue, msg, consumer in entries:
            queue.settle(msg.offset)
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1
            touched.add(queue)
        self._redispatch(touched)

    def reject(self, tag: int, multiple: bool, requeue: bool) -> None:
        touched = set()
        for queue, msg, consumer in self._pop(tag, multiple):
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1
            if requeue and not queue.deleted:
                queue.requeue(msg, "failed")
            else:
                queue.settle(msg.offset)
                queue.dead_letter(msg, "rejected")
            touched.add(queue)
        self._redispatch(touched)

    def requeue_all(self) -> None:
        """Channel closing, or basic.recover: every unacked delivery goes back."""
        entries = list(self.unacked.values())
        self.unacked.clear()
        self._unacked_order.clear()
        touched = set()
        for queue, msg, consumer in entries:
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1
            queue.requeue(msg, "returned")
            touched.add(queue)
        self._redispatch(touched)

    def _redispatch(self, queues: set[Queue]) -> None:
        for queue in queues:
            if not queue.deleted:
                queue.dispatch()
        if self.global_prefetch:  # credit freed on the channel helps every consumer
            for consumer in list(self.consumers.values()):
                if consumer.queue not in queues:
                    consumer.queue.dispatch()

    # --------------------------------------------------------------- confirms
    def note_publish(self, queues: tuple[Queue, ...], needs_durability: bool,
                     refused: bool = False) -> bool:  # fmt: skip
        """Count a publish under confirms; True when the group became dirty this turn."""
        self.publish_seq += 1
        group = self._group
        new = group is None
        if new:
            group = self._group = ConfirmGroup(self.publish_seq)
        group.last_seq = self.publish_seq
        if refused:
            group.nacks.add(self.publish_seq)
        if needs_durability:
            group.queues.update(q for q in queues if q.durable)
        return new

    def finish_turn(self) -> None:
        """End of turn: wait for the group's appends to be durable, then confirm in order."""
        group = self._group
        self._group = None
        if group is None:
            return
        futures = []
        for queue in group.queues:
            if queue.last_appended >= 0 and not queue.deleted:
                fut = queue.log.durable_future(queue.last_appended)
                if fut is not None:
                    futures.append(fut)
        group.queues = set()
        group.waiting = len(futures)
        self._groups.append(group)
        if futures and not self._backpressure and self.unconfirmed > UNCONFIRMED_HIGH:
            self._backpressure = True
            proto = self.conn.transport_protocol
            if proto is not None:
                proto.pause_reading(f"confirms-{self.number}")
        for fut in futures:
            fut.add_done_callback(lambda f, g=group: self._durable(g, f))
        if not futures:
            self._send_ready_confirms()

    def _durable(self, group: ConfirmGroup, fut: asyncio.Future) -> None:
        group.waiting -= 1
        if fut.cancelled() or fut.exception() is not None:
            group.waiting = -1  # the append may be lost: nack it
        self._send_ready_confirms()

    def _send_ready_confirms(self) -> None:
        groups = self._groups
        last_ack = 0
        acked = 0
        while groups and groups[0].waiting <= 0:
            group = groups.popleft()
            if group.waiting == 0:
                acked += group.last_seq - group.first_seq + 1 - len(group.nacks)
            if group.nacks and group.waiting == 0:
                if last_ack:
                    self.conn.send_confirm(self.number, last_ack, True)
                    last_ack = 0
                for seq in range(group.first_seq, group.last_seq + 1):
                    self.conn.send_confirm(self.number, seq, False, ack=seq not in group.nacks)
            elif group.waiting < 0:
                if last_ack:
                    self.conn.send_confirm(self.number, last_ack, True)
                    last_ack = 0
                self.conn.send_confirm(self.number, group.last_seq, True, ack=False)
            else:
                last_ack = group.last_seq
            self.confirmed_seq = group.last_seq
        if last_ack:
            self.conn.send_confirm(self.number, last_ack, True)
        self.counters["confirm"] += acked
        if self._backpressure and self.unconfirmed < UNCONFIRMED_LOW:
            self._backpressure = False
            proto = self.conn.transport_protocol
            if proto is not None:
                proto.resume_reading(f"confirms-{self.number}")

    def fold_counters_into(self, totals: dict[str, int]) -> None:
        """The channel is closing: add its counts to the broker's, so global totals never go down."""
        for key, value in self.counters.items():
            totals[key] = totals.get(key, 0) + value
        totals["received_confirm"] = totals.get("received_confirm", 0) + self.publish_seq

    @property
    def unconfirmed(self) -> int:
        """Publishes not yet confirmed (for backpressure)."""
        return self.publish_seq - self.confirmed_seq
