"""A known AMQP workload, and the metrics it must leave behind.

The same function drives warrenmq in the tests and, by hand, a reference
RabbitMQ (whose counters it was checked against). Every expected figure is
derived below from the workload's own parameters, not measured.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pika
from pika.exceptions import ChannelClosedByBroker

PERSISTENT = pika.BasicProperties(delivery_mode=2)


@dataclass
class Workload:
    """Sizes of each part of the workload (small, so a run takes a second)."""

    prefix: str
    confirmed_to_a: int = 20  # with confirms, persistent, to durable queue A (with a DLX)
    confirmed_to_b: int = 3  # with confirms, to queue B (no dead-letter exchange)
    fanout_to_a_and_b: int = 2  # with confirms, through a fanout bound to A and B
    unroutable_confirmed: int = 1  # with confirms, not mandatory, routed nowhere
    unroutable_mandatory: int = 3  # without confirms: returned
    unroutable_dropped: int = 4  # without confirms: dropped
    ttl_zero: int = 2  # with confirms, to queue T (x-message-ttl 0, DLX): expire at once
    to_max_length_one: int = 3  # with confirms, to queue L (x-max-length 1, no DLX)
    held: list = field(default_factory=list)  # connections kept open for the scrape

    def name(self, short: str) -> str:
        return f"{self.prefix}.{short}"

    @property
    def queues(self) -> list[str]:
        return [self.name(q) for q in ("a", "b", "dead", "t", "l", "c")]


@dataclass
class Expected:
    """What the metrics must say once `run` returned (connections still open)."""

    received: int
    received_confirm: int
    routed: int
    returned: int
    dropped: int
    confirmed: int
    delivered_consume_manual: int
    delivered_consume_auto: int
    delivered_get_manual: int
    delivered_get_auto: int
    get_empty: int
    redelivered: int
    acknowledged: int
    dead_lettered: dict[tuple[str, str], int]  # (reason, dead_letter_strategy) -> count
    ready: dict[str, int]
    unacked: dict[str, int]
    consumers: dict[str, int]
    published: dict[str, int]
    connections: int
    connections_opened: int
    connections_closed: int
    channels: int
    channels_opened: int
    channels_closed: int
    total_consumers: int
    publishers: int
    queues_declared: int
    queues_created: int
    queues_deleted: int

    @property
    def delivered(self) -> int:
        return (
            self.delivered_consume_manual + self.delivered_consume_auto
            + self.delivered_get_manual + self.delivered_get_auto
        )  # fmt: skip


def run(url: str, w: Workload) -> Expected:
    """Run the workload; connections 1 and 2 stay open (in w.held) until `close`."""
    params = pika.URLParameters(url)
    conn1 = pika.BlockingConnection(params)
    conn2 = pika.BlockingConnection(params)
    w.held += [conn1, conn2]
    ch = conn1.channel()  # channel 1: topology and publishes with confirms
    a, b, dead, t, lim, c = w.queues
    dlx = w.name("dlx")
    fanout = w.name("fanout")
    ch.exchange_declare(dlx, "fanout", auto_delete=True)
    ch.exchange_declare(fanout, "fanout", auto_delete=True)
    ch.queue_declare(dead)
    ch.queue_bind(dead, dlx)
    a_args = {"x-dead-letter-exchange": dlx}
    ch.queue_declare(a, durable=True, arguments=a_args)  # durable: its confirms wait for fsync
    ch.queue_declare(a, durable=True, arguments=a_args)  # a redeclare: declared, not created
    ch.queue_declare(a, passive=True)
    ch.queue_declare(b)
    ch.queue_declare(t, arguments={"x-message-ttl": 0, "x-dead-letter-exchange": dlx})
    ch.queue_declare(lim, arguments={"x-max-length": 1})
    ch.queue_declare(c)
    ch.queue_bind(a, fanout)
    ch.queue_bind(b, fanout)
    ch.confirm_delivery()
    for i in range(w.confirmed_to_a):
        ch.basic_publish("", a, b"a%d" % i, PERSISTENT)
    for i in range(w.confirmed_to_b):
        ch.basic_publish("", b, b"b%d" % i, PERSISTENT)
    for i in range(w.fanout_to_a_and_b):
        ch.basic_publish(fanout, "", b"f%d" % i, PERSISTENT)
    for _ in range(w.unroutable_confirmed):
        ch.basic_publish("", w.name("nowhere"), b"u")
    for _ in range(w.ttl_zero):
        ch.basic_publish("", t, b"t")
    for _ in range(w.to_max_length_one):
        ch.basic_publish("", lim, b"l")

    ch2 = conn1.channel()  # channel 2: unroutable publishes, then closed
    returned = []
    ch2.add_on_return_callback(lambda *args: returned.append(args))
    for _ in range(w.unroutable_mandatory):
        ch2.basic_publish("", w.name("nowhere"), b"m", mandatory=True)
    for _ in range(w.unroutable_dropped):
        ch2.basic_publish("amq.direct", w.name("nowhere"), b"d")
    while len(returned) < w.unroutable_mandatory:
        conn1.process_data_events(time_limit=0.1)
    ch2.close()

    # Channel 3: a manual-ack consumer on A with prefetch 5: ack 3, reject 1
    # (dead-lettered), nack 1 with requeue (redelivered), then 5 more.
    ch3 = conn2.channel()
    ch3.basic_qos(prefetch_count=5)
    consumer = ch3.consume(a, auto_ack=False, inactivity_timeout=30)
    first = [next(consumer) for _ in range(5)]
    for method, _props, _body in first[:3]:
        ch3.basic_ack(method.delivery_tag)
    ch3.basic_reject(first[3][0].delivery_tag, requeue=False)
    ch3.basic_nack(first[4][0].delivery_tag, requeue=True)
    second = [next(consumer) for _ in range(5)]
    assert sum(m.redelivered for m, _p, _b in second) == 1, "the nacked message comes back"
    ch3.cancel()  # nothing is buffered: the prefetch window is full
    ch3.basic_ack(second[-1][0].delivery_tag, multiple=True)

    # Channel 4: basic.get.
    ch4 = conn2.channel()
    for _ in range(2):
        assert ch4.basic_get(a, auto_ack=True)[0] is not None
    assert ch4.basic_get(a, auto_ack=False)[0] is not None  # left unacked
    got_b = ch4.basic_get(b, auto_ack=False)[0]
    ch4.basic_reject(got_b.delivery_tag, requeue=False)  # B has no DLX: dropped
    assert ch4.basic_get(c, auto_ack=True)[0] is None
    ch4.queue_delete(c)
    # An auto-ack consumer drains B and stays.
    b_left = w.confirmed_to_b + w.fanout_to_a_and_b - 1
    got = []
    ch4.basic_consume(b, lambda *args: got.append(args), auto_ack=True)
    while len(got) < b_left:
        conn2.process_data_events(time_limit=0.1)

    # A third connection with one channel, opened and closed.
    conn3 = pika.BlockingConnection(params)
    conn3.channel()
    conn3.close()
    conn1.process_data_events(time_limit=0.2)  # let the expired and dropped settle

    to_a = w.confirmed_to_a + w.fanout_to_a_and_b
    to_b = w.confirmed_to_b + w.fanout_to_a_and_b
    confirm_publishes = (
        w.confirmed_to_a + w.confirmed_to_b + w.fanout_to_a_and_b + w.unroutable_confirmed
        + w.ttl_zero + w.to_max_length_one
    )  # fmt: skip
    taken_from_a = 9 + 3  # nine distinct by the consumer, three by basic.get
    return Expected(
        received=confirm_publishes + w.unroutable_mandatory + w.unroutable_dropped,
        received_confirm=confirm_publishes,
        routed=to_a + to_b + w.ttl_zero + w.to_max_length_one,
        returned=w.unroutable_mandatory,
        dropped=w.unroutable_dropped + w.unroutable_confirmed,
        confirmed=confirm_publishes,
        delivered_consume_manual=10,
        delivered_consume_auto=b_left,
        delivered_get_manual=2,
        delivered_get_auto=2,
        get_empty=1,
        redelivered=1,
        acknowledged=8,
        dead_lettered={
            ("rejected", "at_most_once"): 1,
            ("rejected", "disabled"): 1,
            ("expired", "at_most_once"): w.ttl_zero,
            ("maxlen", "disabled"): w.to_max_length_one - 1,
        },
        ready={a: to_a - taken_from_a, b: 0, dead: 1 + w.ttl_zero, t: 0, lim: 1},
        unacked={a: 1, b: 0, dead: 0, t: 0, lim: 0},
        consumers={a: 0, b: 1, dead: 0, t: 0, lim: 0},
        published={a: to_a, b: to_b, dead: 1 + w.ttl_zero, t: w.ttl_zero, lim: w.to_max_length_one},
        connections=2,
        connections_opened=3,
        connections_closed=1,
        channels=3,
        channels_opened=5,
        channels_closed=2,
        total_consumers=1,
        publishers=1,
        queues_declared=7,
        queues_created=6,
        queues_deleted=1,
    )


def close(url: str, w: Workload) -> None:
    """Close the held connections and delete what the workload declared."""
    for conn in w.held:
        with contextlib.suppress(Exception):
            conn.close()
    w.held.clear()
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        for queue in w.queues:
            with contextlib.suppress(ChannelClosedByBroker):
                ch.queue_delete(queue)
            if ch.is_closed:
                ch = conn.channel()
        for exchange in ("dlx", "fanout"):
            ch.exchange_delete(w.name(exchange))
    finally:
        conn.close()
