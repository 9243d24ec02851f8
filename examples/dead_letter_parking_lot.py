#!/usr/bin/env python3
"""Dead-letter queue and parking lot: where the messages a worker cannot process go.

A worker consumes the work queue. It acks a good order, rejects a malformed one
without requeue (the broker dead-letters it with reason "rejected"), and nacks
a flaky one with requeue; once that one has been redelivered x-delivery-limit
times, the next failure makes the broker dead-letter it with reason
"delivery_limit". A headers exchange sends each dead letter to its queue by
x-last-death-reason: "dead-letters" or "parking-lot". The script prints the
x-death header the broker wrote on each.

    python examples/dead_letter_parking_lot.py [--url URL] [--prefix P] [--keep]

Topology: dead_letter_parking_lot.yaml. The flow: docs/flows/dead-letter-queues.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pika
from topology import declare, delete, read

TOPOLOGY = Path(__file__).with_suffix(".yaml")
ORDERS = {"order-1": "good", "order-2": "malformed", "order-3": "flaky"}
START = time.monotonic()


def say(text: str) -> None:
    print(f"{time.monotonic() - START:7.3f}s  {text}", flush=True)


def load_topology(prefix: str) -> dict:
    return read(TOPOLOGY, prefix)


def run(conn, ch, prefix: str, timeout: float) -> int:
    outcome: dict[str, str] = {}

    def on_work(ch, method, props, body) -> None:
        order = body.decode()
        count = (props.headers or {}).get("x-delivery-count")
        seen = f"x-delivery-count={count}" if count else "first delivery"
        if ORDERS[order] == "good":
            say(f"worker: {order} ({seen}): processed -> ack")
            ch.basic_ack(method.delivery_tag)
            outcome[order] = "processed"
        elif ORDERS[order] == "malformed":
            say(f"worker: {order} ({seen}): cannot be parsed -> reject, requeue=False")
            ch.basic_reject(method.delivery_tag, requeue=False)
        else:
            say(f"worker: {order} ({seen}): service unavailable -> nack, requeue=True")
            ch.basic_nack(method.delivery_tag, requeue=True)

    def on_dead_letter(queue: str):
        def handle(ch, method, props, body) -> None:
            order, headers = body.decode(), props.headers
            outcome[order] = queue
            say(
                f"{queue}: got {order}, x-first-death-reason={headers['x-first-death-reason']}, "
                f"x-last-death-reason={headers['x-last-death-reason']}"
            )
            for death in headers["x-death"]:
                fields = ", ".join(f"{k}={v}" for k, v in death.items() if k != "time")
                say(f"    x-death entry: {fields}")

        return handle

    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(f"{prefix}.work", on_work)
    for queue in ("dead-letters", "parking-lot"):
        ch.basic_consume(f"{prefix}.{queue}", on_dead_letter(queue), auto_ack=True)
    for order, kind in ORDERS.items():
        ch.basic_publish(f"{prefix}.work", "order", order.encode())
        say(f"published {order} ({kind}) to exchange {prefix}.work, routing key 'order'")
    deadline = time.monotonic() + timeout
    while len(outcome) < len(ORDERS) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    for order in ORDERS:
        say(f"result: {order} -> {outcome.get(order, 'still pending (timed out)')}")
    return 0 if len(outcome) == len(ORDERS) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--prefix", default=f"dlq-{os.getpid()}", help="prefix of every name")
    parser.add_argument("--keep", action="store_true", help="leave the exchanges and queues")
    args = parser.parse_args()
    topology = load_topology(args.prefix)
    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    try:
        ch = conn.channel()
        declare(ch, topology)
        say(
            f"declared {len(topology['exchanges'])} exchanges, {len(topology['queues'])} queues, "
            f"{len(topology['bindings'])} bindings from {TOPOLOGY.name} (prefix {args.prefix})"
        )
        return run(conn, ch, args.prefix, timeout=10)
    finally:
        if not args.keep and conn.is_open:
            delete(conn.channel(), topology)
            say("deleted the exchanges and queues (use --keep to leave them)")
        if conn.is_open:
            conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
