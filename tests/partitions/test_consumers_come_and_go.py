"""100,000 keyed messages through 8 partitions while consumers join, leave and come back.

1,000 keys; each message carries its key and its number among that key's
messages. One publisher and up to three consumers (prefetch 100, acks) run
in one loop: a consumer acks what it received at its next turn, so its
deliveries stay in flight while the others read theirs. One consumer
consumes at first; two more join after 20,000 deliveries; one of them
cancels after 50,000 (it acks what it holds while the cancel is on its
way, then drops its connection with whatever came last unacked, which
the broker requeues); it comes back after 70,000.

Checked, with and without single active consumer:

- every message is delivered, and every one delivered twice was flagged
  redelivered;
- order per key: a message's first delivery never comes before the first
  delivery of an earlier message of its key, seen by each consumer and,
  with single active consumer, across all of them;
- with single active consumer, a key is never with two consumers at once:
  between its delivery and its ack (or the drop of its consumer's
  connection), no other consumer receives a message of that key.
"""

from __future__ import annotations

import select
import time
from collections import Counter, defaultdict, deque
from urllib.parse import quote

import pytest
from support.partitions import Delivery, RawConsumer, RawPublisher, keyed_messages

TOTAL = 100_000
KEYS = 1_000
PARTITIONS = 8
PREFETCH = 100
CHUNK = 500
AHEAD = 1_000  # published and not yet delivered at most: the partitions stay short, deliveries mixed
RUN_DEADLINE = 60.0  # the whole run; it takes a few seconds


class Observer:
    """What the consumers were given, checked as it arrives."""

    def __init__(self, single_active: bool) -> None:
        self.single_active = single_active
        self.deliveries = 0
        self.first_deliveries = 0
        self.by_consumer: dict[str, int] = defaultdict(int)
        self.seen: dict[str, set[int]] = defaultdict(set)
        self.next_first: dict[str, int] = defaultdict(int)  # all consumers (single active only)
        self.last_first: dict[tuple[str, str], int] = {}  # per consumer and key
        self.holders: dict[str, Counter[str]] = defaultdict(Counter)  # key -> deliveries in flight by consumer
        self.in_flight: dict[str, deque[tuple[int, str]]] = defaultdict(deque)  # consumer -> (tag, key)
        self.problems: list[str] = []

    def received(self, consumer: str, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            self.deliveries += 1
            self.by_consumer[consumer] += 1
            first = d.seq not in self.seen[d.key]
            if not first and not d.redelivered:
                self._problem(f"{consumer} got {d.key}:{d.seq} again without the redelivered flag")
            if first:
                self.first_deliveries += 1
                self.seen[d.key].add(d.seq)
                if not d.redelivered:
                    last = self.last_first.get((consumer, d.key), -1)
                    if d.seq <= last:
                        self._problem(f"{consumer} got {d.key}:{d.seq} first after {d.key}:{last}")
                    self.last_first[(consumer, d.key)] = d.seq
            if self.single_active:
                self._check_order(consumer, d)
                self._check_alone(consumer, d)

    def _check_order(self, consumer: str, d: Delivery) -> None:
        expected = self.next_first[d.key]
        if d.seq == expected:
            self.next_first[d.key] = expected + 1
        elif d.seq > expected:
            self._problem(f"{consumer} got {d.key}:{d.seq} before {d.key}:{expected}")

    def _check_alone(self, consumer: str, d: Delivery) -> None:
        holders = self.holders[d.key]
        others = [name for name in holders if name != consumer]
        if others:
            self._problem(f"{consumer} got {d.key}:{d.seq} while {others[0]} holds that key")
        holders[consumer] += 1
        self.in_flight[consumer].append((d.tag, d.key))

    def settled(self, consumer: str, through: int | None = None) -> None:
        """The consumer acked what it had up to a tag, or (None) its connection is gone."""
        held = self.in_flight[consumer]
        while held and (through is None or held[0][0] <= through):
            holders = self.holders[held.popleft()[1]]
            holders[consumer] -= 1
            if not holders[consumer]:
                del holders[consumer]

    def _problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    @property
    def complete(self) -> bool:
        return self.first_deliveries == TOTAL


def _turn(consumer: RawConsumer, observer: Observer, held: dict[str, int]) -> int:
    """A consumer's turn: ack what it got the turn before last, read what came; leave once cancelled.

    Deliveries stay unacked for a whole round of the other consumers' turns,
    so a key given to two consumers at once is seen.
    """
    through = held.get(consumer.name, 0)
    consumer.ack_through(through)
    observer.settled(consumer.name, through)
    held[consumer.name] = consumer.last_tag
    deliveries = consumer.poll()
    observer.received(consumer.name, deliveries)
    if consumer.cancelled:
        consumer.close()  # what it still holds is unacked: the broker requeues it
        observer.settled(consumer.name)
    return len(deliveries)


def _drive(port: int, queue: str, exchange: str, messages: list[tuple[str, int]],
           observer: Observer, consumers: dict[str, RawConsumer]) -> None:  # fmt: skip
    """Publish and consume until every message was delivered, consumers joining and leaving on plan."""
    publisher = RawPublisher(port, exchange)
    consumers["a"] = RawConsumer(port, queue, PREFETCH, "a")
    plan = [
        (20_000, lambda: consumers.update(b=RawConsumer(port, queue, PREFETCH, "b"),
                                          c=RawConsumer(port, queue, PREFETCH, "c"))),  # fmt: skip
        (50_000, lambda: consumers["b"].cancel()),
        (70_000, lambda: consumers.update(b2=RawConsumer(port, queue, PREFETCH, "b2"))),
    ]
    published = rounds = 0
    held: dict[str, int] = {}
    deadline = time.monotonic() + RUN_DEADLINE
    try:
        while not observer.complete:
            assert time.monotonic() < deadline, f"stuck at {observer.deliveries} deliveries"
            if published < TOTAL and published - observer.first_deliveries < AHEAD:
                publisher.publish(messages[published : published + CHUNK], persistent=False)
                published += CHUNK
            turns = [c for c in consumers.values() if not c.closed]
            rounds += 1
            turns = turns[rounds % len(turns) :] + turns[: rounds % len(turns)]  # each goes first in turn
            got = sum(_turn(c, observer, held) for c in turns)
            while plan and observer.deliveries >= plan[0][0]:
                plan.pop(0)[1]()
            if not got:
                select.select([c.sock for c in consumers.values() if not c.closed], [], [], 0.01)
        for consumer in consumers.values():
            if not consumer.closed:
                consumer.ack_all()
    finally:
        publisher.close()


@pytest.mark.parametrize("single_active", [False, True], ids=["all-consume-all", "single-active"])
def test_every_message_in_key_order_while_consumers_come_and_go(broker, connect, names, single_active):
    queue, exchange = names("q"), names("x")
    arguments = {"x-partitions": PARTITIONS, "x-single-active-consumer": single_active}
    ch = connect().channel()
    ch.exchange_declare(exchange, "fanout")
    ch.queue_declare(queue, durable=False, arguments=arguments)
    ch.queue_bind(queue, exchange)

    messages = keyed_messages(KEYS, TOTAL)
    per_key = Counter(key for key, _seq in messages)
    observer = Observer(single_active)
    consumers: dict[str, RawConsumer] = {}
    try:
        _drive(broker.port, queue, exchange, messages, observer, consumers)
        assert observer.problems == []
        assert len(per_key) == KEYS
        assert all(observer.seen[key] == set(range(count)) for key, count in per_key.items())
        # Each of them took part: the joins and the leave happened while messages flowed.
        assert set(observer.by_consumer) == {"a", "b", "c", "b2"}, dict(observer.by_consumer)
        assert consumers["b"].closed and consumers["b"].cancelled
        _wait_settled(broker, queue)
    finally:
        for consumer in consumers.values():
            if not consumer.closed:
                consumer.close()


def _wait_settled(broker, queue: str) -> None:
    """The broker agrees: nothing left ready, nothing unacked (once the last acks reach it)."""
    deadline = time.monotonic() + 10
    while True:
        info = broker.api(f"/api/queues/%2F/{quote(queue, safe='')}")
        if info["messages"] == 0:
            break
        assert time.monotonic() < deadline, f"{info['messages']} messages left in the queue"
        time.sleep(0.05)
