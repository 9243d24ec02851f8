#!/usr/bin/env python3
"""A retry ladder from TTL and dead-lettering: retry after 1 s, then 10 s, then 60 s, then park.

The worker only ever acks or rejects (requeue=False). The topology does the rest:
a rejected message is dead-lettered to retry-1, -2 or -3 (chosen by its routing
key, which each rung's x-dead-letter-routing-key advances), waits out that
queue's x-message-ttl, and is dead-lettered back to the work exchange; after
the third retry it goes to the parking lot. The worker reads the attempt number
from the broker's x-death header: 1 + the count of its (work queue, rejected)
entry. --scale 0.01 makes the waits 10 ms, 100 ms and 600 ms.

    python examples/ttl_retry_ladder.py [--url URL] [--scale S] [--prefix P] [--keep]

Topology: ttl_retry_ladder.yaml. The flow: docs/flows/retry-with-ttl.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pika
from topology import declare, delete, read

TOPOLOGY = Path(__file__).with_suffix(".yaml")
FAILURES = {"invoice-1": 2, "invoice-2": 99}  # how many attempts of each fail: 99 is every one
START = time.monotonic()


def say(text: str) -> None:
    print(f"{time.monotonic() - START:7.3f}s  {text}", flush=True)


def load_topology(prefix: str, scale: float) -> dict:
    topology = read(TOPOLOGY, prefix)
    for q in topology["queues"]:
        arguments = q.get("arguments") or {}
        if "x-message-ttl" in arguments:
            arguments["x-message-ttl"] = max(1, round(arguments["x-message-ttl"] * scale))
    return topology


def rejections(headers: dict, queue: str) -> int:
    """How often the broker has dead-lettered this message from `queue` with reason rejected."""
    deaths = headers.get("x-death", [])
    return sum(d["count"] for d in deaths if d["queue"] == queue and d["reason"] == "rejected")


def run(conn, ch, prefix: str, timeout: float) -> int:
    work = f"{prefix}.work"
    outcome: dict[str, str] = {}
    rejected_at: dict[str, float] = {}

    def short(name: str) -> str:
        return name.removeprefix(prefix + ".")

    def history(headers: dict) -> str:
        """The x-death entries, newest first, as 'queue reason xcount'."""
        return ", ".join(
            f"{short(d['queue'])} {d['reason']} x{d['count']}" for d in headers["x-death"]
        )

    def on_work(ch, method, props, body) -> None:
        task, headers = body.decode(), props.headers or {}
        attempt = 1 + rejections(headers, work)
        came = "published, routing key 'task'"
        if task in rejected_at:
            waited = time.monotonic() - rejected_at[task]
            last = short(headers["x-death"][0]["queue"])  # the newest death: where it waited
            came = f"back from {last} after {waited:.3f}s, routing key {method.routing_key!r}"
            came += f"; x-death: {history(headers)}"
        if attempt > FAILURES[task]:
            say(f"worker: {task}, attempt {attempt} ({came}): processed -> ack")
            ch.basic_ack(method.delivery_tag)
            outcome[task] = f"processed on attempt {attempt}"
        else:
            say(f"worker: {task}, attempt {attempt} ({came}): failed -> reject, requeue=False")
            rejected_at[task] = time.monotonic()
            ch.basic_reject(method.delivery_tag, requeue=False)

    def on_parked(ch, method, props, body) -> None:
        task, headers = body.decode(), props.headers
        attempts = rejections(headers, work)
        say(
            f"parking-lot: got {task} after {attempts} failed attempts; x-death: {history(headers)}"
        )
        outcome[task] = f"parked after {attempts} attempts ({attempts - 1} retries)"

    ch.basic_qos(prefetch_count=10)
    ch.basic_consume(work, on_work)
    ch.basic_consume(f"{prefix}.parking-lot", on_parked, auto_ack=True)
    for task, failures in FAILURES.items():
        ch.basic_publish(f"{prefix}.work", "task", task.encode())
        plan = "fails every attempt" if failures == 99 else f"fails its first {failures} attempts"
        say(f"published {task} ({plan}) with routing key 'task'")
    deadline = time.monotonic() + timeout
    while len(outcome) < len(FAILURES) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.01)
    for task in FAILURES:
        say(f"result: {task} -> {outcome.get(task, 'still pending (timed out)')}")
    return 0 if len(outcome) == len(FAILURES) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every TTL, e.g. 0.01")
    parser.add_argument("--prefix", default=f"ladder-{os.getpid()}", help="prefix of every name")
    parser.add_argument("--keep", action="store_true", help="leave the exchanges and queues")
    args = parser.parse_args()
    topology = load_topology(args.prefix, args.scale)
    retry_queues = [q for q in topology["queues"] if ".retry-" in q["name"]]
    ttls = {q["name"]: q["arguments"]["x-message-ttl"] for q in retry_queues}
    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    try:
        ch = conn.channel()
        declare(ch, topology)
        say(
            f"declared {len(topology['exchanges'])} exchanges, {len(topology['queues'])} queues, "
            f"{len(topology['bindings'])} bindings from {TOPOLOGY.name} (prefix {args.prefix})"
        )
        rungs = [f"{name.removeprefix(args.prefix + '.')} {ttl} ms" for name, ttl in ttls.items()]
        say("retry queues (x-message-ttl): " + ", ".join(rungs))
        return run(conn, ch, args.prefix, timeout=sum(ttls.values()) / 1000 * 1.5 + 10)
    finally:
        if not args.keep and conn.is_open:
            delete(conn.channel(), topology)
            say("deleted the exchanges and queues (use --keep to leave them)")
        if conn.is_open:
            conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
