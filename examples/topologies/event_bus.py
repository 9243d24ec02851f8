#!/usr/bin/env python3
"""An event bus: one topic exchange fanning events out to the services that subscribed to them.

The script applies event_bus.yaml (vhost "events") and publishes seven
events to the topic exchange "events", with publisher confirms. Each
service (billing, shipping, email, analytics) has its queue bound with the
patterns it cares about, and the audit log gets a copy of everything through
an exchange-to-exchange binding into the internal fanout exchange "audit".
Then a consumer per service, each on its own channel, prints what it
receives, and the script sums up which services got each event. Last, it
shows that an internal exchange refuses a direct publish.

    python examples/topologies/event_bus.py [--url URL] [--management-url URL] [--keep]

Topology: event_bus.yaml. The walk-through: docs/flows/topologies.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pika
from example_topology import applied, parser, run_main, say
from pika.exceptions import ChannelClosedByBroker

TOPOLOGY = Path(__file__).with_suffix(".yaml")
VHOST = "events"
SERVICES = ("billing", "shipping", "email", "analytics", "audit.log")
EVENTS = [
    ("order.placed", {"order": 17, "total": 42.5}),
    ("order.paid", {"order": 17}),
    ("payment.refunded.partial", {"order": 9, "amount": 5}),
    ("user.signed-up", {"user": "ada"}),
    ("order.shipped", {"order": 17, "carrier": "post"}),
    ("inventory.low", {"sku": "tea-42", "left": 3}),
    ("order.cancelled", {"order": 12}),
]


def publish_events(ch) -> None:
    for key, payload in EVENTS:
        ch.basic_publish("events", key, json.dumps(payload).encode(),
                         pika.BasicProperties(content_type="application/json", type=key))  # fmt: skip
    say(f"published {len(EVENTS)} events to the topic exchange 'events' (confirmed): "
        + ", ".join(key for key, _ in EVENTS))  # fmt: skip


def consume(conn) -> dict[str, list[str]]:
    """A consumer per service on its own channel, until every event waiting for them is in."""
    counts = {
        s: conn.channel().queue_declare(s, passive=True).method.message_count for s in SERVICES
    }
    expected = sum(counts.values())
    say(f"the service queues hold {expected} messages: "
        + ", ".join(f"{s} {n}" for s, n in counts.items()))  # fmt: skip
    received: dict[str, list[str]] = {s: [] for s in SERVICES}

    def consumer(service: str):
        def on_event(ch, method, props, body) -> None:
            received[service].append(method.routing_key)
            say(f"{service:>9} <- {method.routing_key} {body.decode()}")
            ch.basic_ack(method.delivery_tag)

        return on_event

    for service in SERVICES:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=5)
        ch.basic_consume(service, consumer(service))
    deadline = time.monotonic() + 30
    while sum(map(len, received.values())) < expected and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.01)
    return received


def show_internal_refusal(conn) -> None:
    ch = conn.channel()
    try:
        ch.basic_publish("audit", "", b"forged entry")
        ch.basic_qos(prefetch_count=1)  # a round trip, so a refusal arrives before we go on
        say("publishing to 'audit' directly was accepted (it should be internal)")
    except ChannelClosedByBroker as exc:
        say(f"publishing to 'audit' directly: refused, {exc.reply_code} {exc.reply_text}")


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    with applied(TOPOLOGY, args) as topology:
        conn = pika.BlockingConnection(pika.URLParameters(topology.url(VHOST)))
        try:
            publisher = conn.channel()
            publisher.confirm_delivery()
            publish_events(publisher)
            received = consume(conn)
            for key, _ in EVENTS:
                got = [s for s in SERVICES if key in received[s]]
                say(f"event {key} -> {', '.join(got) or 'nobody'}")
            for service in SERVICES:
                say(f"{service} received {len(received[service])}: "
                    + ", ".join(received[service]))  # fmt: skip
            show_internal_refusal(conn)
        finally:
            if conn.is_open:
                conn.close()
    return 0


if __name__ == "__main__":
    run_main(main)
