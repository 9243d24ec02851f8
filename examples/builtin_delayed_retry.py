#!/usr/bin/env python3
"""Built-in delayed retry: the broker waits longer before each redelivery, then parks the message.

The work queue has x-delayed-retry-type "failed", -min 1000 and -max 3000 ms:
a message the worker nacks with requeue=true waits min(1000 x attempts, 3000) ms
before it is delivered again (1 s, 2 s, 3 s, 3 s). From the second delivery it
carries x-delivery-count, so the worker knows the attempt number without
keeping any state. Past x-delivery-limit (4) the next failure dead-letters it
to the parking lot, with reason delivery_limit. No retry queues, no TTLs.
--scale 0.05 makes the waits 50, 100, 150, 150 ms.

    python examples/builtin_delayed_retry.py [--url URL] [--scale S] [--prefix P] [--keep]

Topology: builtin_delayed_retry.yaml. The flow: docs/flows/built-in-delayed-retry.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pika
from topology import declare, delete, read

TOPOLOGY = Path(__file__).with_suffix(".yaml")
FAILURES = {"report-1": 2, "report-2": 99}  # how many attempts of each fail: 99 is every one
SCALED = ("x-delayed-retry-min", "x-delayed-retry-max")
START = time.monotonic()


def say(text: str) -> None:
    print(f"{time.monotonic() - START:7.3f}s  {text}", flush=True)


def load_topology(prefix: str, scale: float) -> dict:
    topology = read(TOPOLOGY, prefix)
    for q in topology["queues"]:
        arguments = q.get("arguments") or {}
        for name in SCALED:
            if name in arguments:
                arguments[name] = max(1, round(arguments[name] * scale))
    return topology


def run(conn, ch, prefix: str, retry: dict, timeout: float) -> int:
    outcome: dict[str, str] = {}
    nacked_at: dict[str, float] = {}
    waits: dict[str, list[str]] = {task: [] for task in FAILURES}

    def on_work(ch, method, props, body) -> None:
        task, headers = body.decode(), props.headers or {}
        count = headers.get("x-delivery-count")  # absent on the first delivery
        attempt = 1 + (count or 0)
        came = "first delivery"
        if task in nacked_at:
            expected = min(retry["x-delayed-retry-min"] * count, retry["x-delayed-retry-max"])
            waited = time.monotonic() - nacked_at[task]
            waits[task].append(f"{waited:.3f}")
            came = f"x-delivery-count={count}, waited {waited:.3f}s, expected {expected} ms"
        if attempt > FAILURES[task]:
            say(f"worker: {task}, attempt {attempt} ({came}): processed -> ack")
            ch.basic_ack(method.delivery_tag)
            outcome[task] = f"processed on attempt {attempt}"
        else:
            say(f"worker: {task}, attempt {attempt} ({came}): failed -> nack, requeue=True")
            nacked_at[task] = time.monotonic()
            ch.basic_nack(method.delivery_tag, requeue=True)

    def on_parked(ch, method, props, body) -> None:
        task, headers = body.decode(), props.headers
        death = headers["x-death"][0]
        queue = death["queue"].removeprefix(prefix + ".")
        reason, count = death["reason"], death["count"]
        say(f"parking-lot: got {task}; x-death: queue={queue} reason={reason} count={count}")
        outcome[task] = f"parked after {len(waits[task]) + 1} attempts ({death['reason']})"

    ch.basic_qos(prefetch_count=10)
    ch.basic_consume(f"{prefix}.work", on_work)
    ch.basic_consume(f"{prefix}.parking-lot", on_parked, auto_ack=True)
    for task, failures in FAILURES.items():
        ch.basic_publish(f"{prefix}.work", "task", task.encode())
        plan = "fails every attempt" if failures == 99 else f"fails its first {failures} attempts"
        say(f"published {task} ({plan})")
    deadline = time.monotonic() + timeout
    while len(outcome) < len(FAILURES) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.01)
    for task in FAILURES:
        say(
            f"result: {task} -> {outcome.get(task, 'still pending (timed out)')}; "
            f"waits before redeliveries (s): {', '.join(waits[task]) or 'none'}"
        )
    return 0 if len(outcome) == len(FAILURES) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the waits, e.g. 0.05")
    parser.add_argument("--prefix", default=f"retry-{os.getpid()}", help="prefix of every name")
    parser.add_argument("--keep", action="store_true", help="leave the exchanges and queues")
    args = parser.parse_args()
    topology = load_topology(args.prefix, args.scale)
    work = next(q for q in topology["queues"] if q["name"] == f"{args.prefix}.work")["arguments"]
    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    try:
        ch = conn.channel()
        declare(ch, topology)
        say(
            f"declared {len(topology['exchanges'])} exchanges, {len(topology['queues'])} queues, "
            f"{len(topology['bindings'])} bindings from {TOPOLOGY.name} (prefix {args.prefix})"
        )
        settings = [f"{k}={v}" for k, v in work.items() if k.startswith("x-del")]
        say("work queue: " + ", ".join(settings))
        timeout = work["x-delayed-retry-max"] * work["x-delivery-limit"] / 1000 * 1.5 + 10
        return run(conn, ch, args.prefix, work, timeout)
    finally:
        if not args.keep and conn.is_open:
            delete(conn.channel(), topology)
            say("deleted the exchanges and queues (use --keep to leave them)")
        if conn.is_open:
            conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
