"""A consumer: a queue subscription on a channel, with its prefetch credit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .message import Message

if TYPE_CHECKING:
    from .queue import Queue
    from .session import ChannelSession


@dataclass(eq=False)
class Consumer:
    """basic.consume's result; `prefetch` is the per-consumer limit (0 = none)."""

    tag: str
    tag_short: bytes
    channel: ChannelSession
    queue: Queue
    no_ack: bool
    exclusive: bool
    prefetch: int
    arguments: dict[str, Any] = field(default_factory=dict)
    unacked: int = 0

    def can_take(self) -> bool:
        """Credit left here and on the channel, and a socket that can take more."""
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return self.channel.can_send()

    def deliver(self, queue: Queue, msg: Message, redelivered: bool) -> None:
        channel = self.channel
        tag = channel.next_delivery_tag()
        counters = channel.counters
        if redelivered:
            counters["redeliver"] += 1
        if self.no_ack:
            queue.counters["delivered"] += 1
            queue.counters["deliver_no_ack"] += 1
            counters["deliver_no_ack"] += 1
        else:
            counters["deliver"] += 1
            self.unacked += 1
            channel.track(tag, queue, msg, self)
            queue.delivered(msg.offset)
        channel.conn.send_deliver(
            channel.number, self.tag_short, tag, redelivered, msg.exchange_rk, msg.properties, msg.body
        )
