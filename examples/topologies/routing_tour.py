#!/usr/bin/env python3
"""A routing tour: one exchange of each type, and where each message lands.

The script applies routing_tour.yaml (vhost "tour"), publishes messages
chosen to show how each exchange type routes (direct, fanout, topic,
headers, x-consistent-hash), then empties every queue and prints, for each
message, the queues it landed in. Messages are published mandatory, with
publisher confirms, so one that matches no binding comes back and is
reported as such. Last, the x-delayed-message exchange: three reminders,
published at once, arrive in the order of their x-delay. --scale 0.1 makes
those delays 100 and 200 ms instead of 1 s and 2 s.

    python examples/topologies/routing_tour.py [--url URL] [--management-url URL] [--scale S] [--keep]

Topology: routing_tour.yaml. The walk-through: docs/flows/topologies.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import pika
from example_topology import applied, parser, run_main, say
from pika.exceptions import UnroutableError

TOPOLOGY = Path(__file__).with_suffix(".yaml")
VHOST = "tour"
# exchange -> what its type does, printed before its messages.
EXCHANGES = {
    "tasks": "direct: to the queues bound with exactly the message's routing key",
    "screens": "fanout: to every bound queue, whatever the key",
    "logs": "topic: '*' is one dot-separated word, '#' any number of words",
    "documents": "headers: by the message's headers (x-match all or any), not its key",
    "shards": "x-consistent-hash: to exactly one queue, chosen by a hash of the key "
              "(weights a 1, b 1, c 2)",
}  # fmt: skip
# (exchange, routing key, headers, body): each body is unique, so the queue it is found in says
# where it went.
MESSAGES: list[tuple[str, str, dict[str, str] | None, str]] = [
    ("tasks", "email", None, "welcome mail"),
    ("tasks", "sms", None, "login code"),
    ("tasks", "fax", None, "a fax"),
    ("screens", "whatever", None, "menu of the day"),
    ("logs", "billing.error", None, "card declined"),
    ("logs", "shop.error", None, "basket lost"),
    ("logs", "billing.invoice.paid", None, "invoice paid"),
    ("logs", "error", None, "bare error"),
    ("documents", "", {"format": "pdf", "type": "report"}, "quarterly report"),
    ("documents", "", {"format": "pdf", "type": "report", "priority": "urgent"}, "urgent report"),
    ("documents", "", {"format": "txt", "type": "log"}, "access log"),
    ("documents", "", {"format": "pdf", "type": "invoice"}, "an invoice"),
    *[("shards", f"customer-{n}", None, f"order of customer-{n}") for n in range(1, 10)],
    ("shards", "customer-1", None, "another order of customer-1"),
]
REMINDERS = [("stretch", 2000), ("drink water", None), ("stand up", 1000)]  # (text, x-delay ms)


def queue_names(topology) -> list[str]:
    return sorted(q["name"] for q in topology.definitions["queues"] if q["vhost"] == VHOST)


def publish_all(ch) -> set[str]:
    """Publish MESSAGES (mandatory, confirmed); the bodies that came back unroutable."""
    unroutable = set()
    for exchange, key, headers, body in MESSAGES:
        try:
            ch.basic_publish(exchange, key, body.encode(),
                             pika.BasicProperties(headers=headers), mandatory=True)  # fmt: skip
        except UnroutableError:
            unroutable.add(body)
    return unroutable


def landings(ch, queues: list[str]) -> dict[str, list[str]]:
    """Empty every queue: body -> the queues it was found in."""
    found: dict[str, list[str]] = {}
    for queue in queues:
        while True:
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            found.setdefault(body.decode(), []).append(queue)
    return found


def show_routing(ch, queues: list[str]) -> None:
    unroutable = publish_all(ch)
    found = landings(ch, [q for q in queues if q != "reminders"])
    for name, explanation in EXCHANGES.items():
        say(f"exchange {name!r}, {explanation}")
        for exchange, key, headers, body in MESSAGES:
            if exchange != name:
                continue
            sent = f"headers {headers}" if headers else f"key {key!r}"
            if body in unroutable:
                where = "nowhere (no binding matched: returned to the publisher)"
            else:
                where = ", ".join(sorted(found.get(body, []))) or "nowhere"
            say(f"  {body!r} with {sent} -> {where}")


def show_delays(conn, ch, scale: float) -> None:
    say("exchange 'reminders', x-delayed-message: holds each message for its x-delay header "
        "(in ms), then routes it as a direct exchange")  # fmt: skip
    delays = {text: ms and max(1, round(ms * scale)) for text, ms in REMINDERS}
    published: dict[str, float] = {}
    arrived: list[str] = []

    def on_reminder(ch, method, props, body) -> None:
        text = body.decode()
        waited = (time.monotonic() - published[text]) * 1000
        note = "" if waited >= (delays[text] or 0) else " EARLY"
        say(f"  reminders <- {text!r} after {waited:.0f} ms{note}")
        arrived.append(text)

    ch.basic_consume("reminders", on_reminder, auto_ack=True)
    for text, delay in delays.items():
        headers = None if delay is None else {"x-delay": delay}
        published[text] = time.monotonic()
        ch.basic_publish(
            "reminders", "remind", text.encode(), pika.BasicProperties(headers=headers)
        )
        say(
            f"  sent {text!r} "
            + ("with no x-delay" if delay is None else f"with x-delay {delay} ms")
        )
    deadline = time.monotonic() + max(d or 0 for d in delays.values()) / 1000 + 10
    while len(arrived) < len(delays) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.01)
    say("  arrival order: " + " | ".join(arrived))


def main() -> int:
    args = parser(__doc__.splitlines()[0],
                  scale_help="multiplies each x-delay, e.g. 0.1").parse_args()  # fmt: skip
    with applied(TOPOLOGY, args) as topology:
        conn = pika.BlockingConnection(pika.URLParameters(topology.url(VHOST)))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            show_routing(ch, queue_names(topology))
            show_delays(conn, ch, args.scale)
        finally:
            conn.close()
    return 0


if __name__ == "__main__":
    run_main(main)
