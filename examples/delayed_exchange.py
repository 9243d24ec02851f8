#!/usr/bin/env python3
"""Delayed messages: an x-delayed-message exchange holds each message for its x-delay (ms).

The script publishes reminders with x-delay 3000, 1000 and 2000 ms and one
without x-delay, all at once, and prints when each reaches the queue: in the
order of their delays, none early. The x-delay header arrives negated (-1000),
which tells a consumer the message was delayed. One more message has an x-delay
of about 58 days, beyond RabbitMQ's plugin limit of 2^32-1 ms: it is held, not
delivered at once (and deleted with the exchange at the end). --scale 0.1 makes
the delays 300, 100 and 200 ms (the 58 days are never scaled).

    python examples/delayed_exchange.py [--url URL] [--scale S] [--prefix P] [--keep]

Topology: delayed_exchange.yaml. The flow: docs/flows/delayed-messages.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pika
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker
from topology import declare, delete, read

TOPOLOGY = Path(__file__).with_suffix(".yaml")
REMINDERS = {
    "call the customer back": 3000,
    "send the invoice": 1000,
    "check the stock": 2000,
    "say hello": None,
}
FAR_FUTURE = ("renew the certificate", 5_000_000_000)  # about 58 days, never scaled
START = time.monotonic()


def say(text: str) -> None:
    print(f"{time.monotonic() - START:7.3f}s  {text}", flush=True)


def load_topology(prefix: str) -> dict:
    return read(TOPOLOGY, prefix)


def run(conn, ch, prefix: str, scale: float) -> int:
    delays = {text: ms and max(1, round(ms * scale)) for text, ms in REMINDERS.items()}
    delays[FAR_FUTURE[0]] = FAR_FUTURE[1]
    published_at: dict[str, float] = {}
    arrived: list[str] = []
    early: list[str] = []

    def on_reminder(ch, method, props, body) -> None:
        text, header = body.decode(), (props.headers or {}).get("x-delay")
        waited_ms = (time.monotonic() - published_at[text]) * 1000
        shown = "no x-delay header" if header is None else f"x-delay header now {header}"
        say(f"reminders: got {text!r} after {waited_ms:.0f} ms ({shown})")
        arrived.append(text)
        if waited_ms < (delays[text] or 0):
            early.append(text)
            say(f"    {text!r} arrived EARLY")

    ch.basic_consume(f"{prefix}.reminders", on_reminder, auto_ack=True)
    ch.confirm_delivery()  # each publish returns once the broker has the message
    for text, delay in delays.items():
        headers = {} if delay is None else {"x-delay": delay}
        properties = pika.BasicProperties(delivery_mode=2, headers=headers)  # persistent
        published_at[text] = time.monotonic()
        ch.basic_publish(f"{prefix}.delayed", "reminder", text.encode(), properties)
        say(f"published {text!r} with " + (f"x-delay {delay} ms" if delay else "no x-delay"))
    longest = max(d or 0 for d in delays.values() if d != FAR_FUTURE[1])
    deadline = time.monotonic() + longest / 1000 + 10
    while len(arrived) < len(REMINDERS) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.01)
    conn.process_data_events(time_limit=0.2)  # anything else would have arrived by now
    say(f"result: arrival order: {' | '.join(arrived)}")
    held = FAR_FUTURE[0] not in arrived
    say(
        f"result: {FAR_FUTURE[0]!r} (x-delay {FAR_FUTURE[1]} ms, about 58 days) "
        + ("is held, not delivered" if held else "was delivered at once: NOT held")
    )
    in_order = sorted(REMINDERS, key=lambda text: delays[text] or 0)
    return 0 if arrived == in_order and not early else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every x-delay, e.g. 0.1"
    )
    parser.add_argument("--prefix", default=f"delayed-{os.getpid()}", help="prefix of every name")
    parser.add_argument("--keep", action="store_true", help="leave the exchange and the queue")
    args = parser.parse_args()
    topology = load_topology(args.prefix)
    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    try:
        ch = conn.channel()
        try:
            declare(ch, topology)
        except (ChannelClosedByBroker, ConnectionClosedByBroker) as e:
            say(f"the broker refused the topology: {e.reply_code} {e.reply_text}")
            if "unknown exchange type" in e.reply_text:
                say("this broker has no x-delayed-message exchange type")
                return 2
            raise
        say(
            f"declared {len(topology['exchanges'])} exchange, {len(topology['queues'])} queue, "
            f"{len(topology['bindings'])} binding from {TOPOLOGY.name} (prefix {args.prefix})"
        )
        return run(conn, ch, args.prefix, args.scale)
    finally:
        if not args.keep and conn.is_open:
            delete(conn.channel(), topology)
            say("deleted the exchange, with what it still held, and the queue (--keep leaves them)")
        if conn.is_open:
            conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
