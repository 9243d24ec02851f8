#!/usr/bin/env python3
"""Order processing: failed payments retried by the broker, then parked; unroutable orders kept.

The script applies order_processing.yaml (vhost "shop") and publishes four
orders to the topic exchange "orders". A payment worker consumes
orders.payments and only ever acks or rejects (requeue=False); the retry
ladder of the file's `retry:` entry does the rest: a rejected order waits
1s, 5s, then 30s in orders.payments.retry.1, .2, .3 and comes back, and
after the third retry it goes to orders.parking. An order published with a
routing key nothing is bound to (no region) is caught by the alternate
exchange in orders.unrouted. Notifications nobody reads expire from
orders.notifications after its 10s TTL. The script prints each order's
journey. --scale 0.05 applies a copy of the file with every delay and TTL
times 0.05 (50 ms, 250 ms, 1.5 s; TTL 500 ms).

    python examples/topologies/order_processing.py [--url URL] [--management-url URL] [--scale S] [--keep]

Topology: order_processing.yaml. The walk-through: docs/flows/topologies.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import pika
from example_topology import applied, parser, run_main, say

from warrenmq.broker.topology import format_duration

TOPOLOGY = Path(__file__).with_suffix(".yaml")
VHOST = "shop"
WORK = "orders.payments"
# order -> (routing key, how many payment attempts fail: 99 is every one, what happens)
ORDERS = {
    "order-1": ("order.placed.eu", 0, "pays at once"),
    "order-2": ("order.placed.us", 2, "its first 2 payments fail"),
    "order-3": ("order.placed.eu", 99, "every payment fails"),
    "order-4": ("order.placed", 0, "no region in the key: nothing is bound to it"),
}


def rejections(headers: dict) -> int:
    """How often the broker has dead-lettered this order from the work queue as rejected."""
    deaths = headers.get("x-death", [])
    return sum(d["count"] for d in deaths if d["queue"] == WORK and d["reason"] == "rejected")


def queue_ttls(definitions: dict) -> dict[str, int]:
    """Each queue's x-message-ttl, as the applied file (scaled or not) set it."""
    return {q["name"]: q["arguments"]["x-message-ttl"] for q in definitions["queues"]
            if q["vhost"] == VHOST and "x-message-ttl" in q["arguments"]}  # fmt: skip


def run(conn, ch, ttls: dict[str, int]) -> int:
    journeys: dict[str, list[str]] = {order: [] for order in ORDERS}
    outcome: dict[str, str] = {}
    rejected_at: dict[str, float] = {}

    def on_payment(ch, method, props, body) -> None:
        order, headers = body.decode(), props.headers or {}
        attempt = 1 + rejections(headers)
        if attempt > 1:
            waited_in = headers["x-death"][0]["queue"]  # the newest death: the retry queue it left
            waited = time.monotonic() - rejected_at[order]
            journeys[order].append(f"{waited_in} ({format_duration(ttls[waited_in])})")
            say(f"worker: {order} is back after {waited:.3f}s in {waited_in}, "
                f"routing key {method.routing_key!r}")  # fmt: skip
        if attempt > ORDERS[order][1]:
            ch.basic_ack(method.delivery_tag)
            journeys[order].append(f"{WORK} (attempt {attempt}: paid)")
            outcome[order] = f"paid on attempt {attempt}"
            say(f"worker: {order}, attempt {attempt}: payment accepted -> ack")
        else:
            ch.basic_reject(method.delivery_tag, requeue=False)
            rejected_at[order] = time.monotonic()
            journeys[order].append(f"{WORK} (attempt {attempt}: failed)")
            say(f"worker: {order}, attempt {attempt}: card declined -> reject, requeue=False")

    def on_parked(ch, method, props, body) -> None:
        order = body.decode()
        attempts = rejections(props.headers or {})
        journeys[order].append("orders.parking")
        outcome[order] = f"parked after {attempts} failed attempts"
        say(
            f"orders.parking: got {order} after {attempts} failed attempts, for a person to look at"
        )

    def on_unrouted(ch, method, props, body) -> None:
        order = body.decode()
        journeys[order].append("orders.unrouted (alternate exchange)")
        outcome[order] = "unroutable, kept in orders.unrouted"
        say(f"orders.unrouted: got {order}: no binding of 'orders' matched the routing key "
            f"{method.routing_key!r}, so the alternate exchange took it")  # fmt: skip

    ch.basic_qos(prefetch_count=10)
    ch.basic_consume(WORK, on_payment)
    ch.basic_consume("orders.parking", on_parked, auto_ack=True)
    ch.basic_consume("orders.unrouted", on_unrouted, auto_ack=True)
    for order, (key, _failures, plan) in ORDERS.items():
        ch.basic_publish("orders", key, order.encode(), pika.BasicProperties(delivery_mode=2))
        journeys[order].append(f"published with key {key!r}")
        say(f"published {order} with routing key {key!r} ({plan})")
    published_at = time.monotonic()
    deadline = published_at + sum(ttls.values()) / 1000 * 1.5 + 10
    while len(outcome) < len(ORDERS) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.01)
    show_notifications(conn, ch, published_at, ttls["orders.notifications"])
    for order in ORDERS:
        say(f"journey of {order}: " + " -> ".join(journeys[order]))
    for order in ORDERS:
        say(f"result: {order} -> {outcome.get(order, 'still pending (timed out)')}")
    return 0 if len(outcome) == len(ORDERS) else 1


def show_notifications(conn, ch, published_at: float, ttl_ms: int) -> None:
    """Nobody consumed the notifications: once their TTL has passed, none are left."""
    routed = sum(1 for key, _failures, _plan in ORDERS.values() if key.startswith("order.placed."))
    conn.sleep(max(0.0, published_at + ttl_ms / 1000 - time.monotonic()))
    give_up = time.monotonic() + 2  # the broker's expiry timer may run a moment after the TTL
    while True:
        left = ch.queue_declare("orders.notifications", passive=True).method.message_count
        if left == 0 or time.monotonic() > give_up:
            break
        conn.sleep(0.05)
    say(f"orders.notifications: {routed} notifications were routed there and nobody read them; "
        f"{format_duration(ttl_ms)} (its ttl) after publishing it holds {left}: stale ones expire")  # fmt: skip


def main() -> int:
    args = parser(__doc__.splitlines()[0],
                  scale_help="multiplies every retry delay and TTL, e.g. 0.05").parse_args()  # fmt: skip
    with applied(TOPOLOGY, args) as topology:
        ttls = queue_ttls(topology.definitions)
        rungs = sorted(name for name in ttls if name.startswith(f"{WORK}.retry."))
        say("retry ladder: " + ", ".join(f"{q} {format_duration(ttls[q])}" for q in rungs))
        conn = pika.BlockingConnection(pika.URLParameters(topology.url(VHOST)))
        try:
            return run(conn, conn.channel(), ttls)
        finally:
            conn.close()


if __name__ == "__main__":
    run_main(main)
