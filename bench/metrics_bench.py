"""What the Prometheus endpoint costs: throughput with it off and on (scraped every second), in one run.

Usage:
    .venv/bin/python bench/metrics_bench.py [--messages 200000] [--rounds 5]
        [--scenario transient,persistent] [--body 256]

Starts two `warrenmq serve` processes side by side (fsync: always, management
API off): one with `--prometheus off`, one with the metrics listener on. A
thread scrapes the second one's /metrics every second for the whole run, as
Prometheus would (it runs during both configurations' rounds, so the client
process does the same work either way). Each round publishes N messages with
the raw client to a fresh queue while a no-ack consumer drains it, and times
publish start to last delivery; the two configurations alternate, in
swapped order every other round, so drift hits both alike. Prints every
round, then the medians and the median of each round's on/off ratio, of
msg/s and of broker CPU per message.

Two figures are measured apart, because they are too small for a throughput
run to see: the broker CPU one scrape costs (idle broker, with 1 and with
1,000 queues), and the per-message counter increments, which are always on
(the management API reads them too) and so are in both configurations
alike: timed with timeit and set against the broker CPU per message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import urllib.request
from pathlib import Path

from pamqp import commands

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.rawamqp import RawClient  # noqa: E402

DELIVER_PREFIX = b"\x00\x3c\x00\x3c"  # Basic.Deliver's class and method ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Broker:
    """One `warrenmq serve` process on free loopback ports."""

    def __init__(self, name: str, data: Path, metrics: bool, fsync: str) -> None:
        self.name = name
        self.port = free_port()
        self.metrics_port = free_port() if metrics else 0
        prometheus = f"127.0.0.1:{self.metrics_port}" if metrics else "off"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "warrenmq.broker.cli", "serve", "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", str(data / name), "--fsync", fsync, "--log-level", "warning",
             "--management", "off", "--prometheus", prometheus],
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{name} did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Scraper(threading.Thread):
    """Scrapes a /metrics URL every `interval` seconds until stopped; counts scrapes and bytes."""

    def __init__(self, url: str, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.stopped = threading.Event()
        self.scrapes = 0
        self.last_size = 0
        self.errors = 0

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    self.last_size = len(response.read())
                self.scrapes += 1
            except OSError:
                self.errors += 1


def scrape_cost(broker: Broker, queues: int, scrapes: int = 50) -> tuple[float, int]:
    """Broker CPU ms per scrape of an idle broker holding `queues` queues, and the bytes served."""
    client = RawClient(broker.port)
    names = [f"metrics-bench-idle-{i}" for i in range(queues)]
    for name in names:
        client.declare(name, durable=False)
    url = f"http://127.0.0.1:{broker.metrics_port}/metrics"
    size = 0
    cpu0 = cpu_seconds(broker.proc.pid)
    for _ in range(scrapes):
        with urllib.request.urlopen(url, timeout=30) as response:
            size = len(response.read())
    cpu = cpu_seconds(broker.proc.pid) - cpu0
    for name in names:
        client.send(1, commands.Queue.Delete(queue=name))
        client.read_method()
    client.close()
    return cpu / scrapes * 1e3, size


def counter_increments_ns() -> float:
    """What the hot path adds per message published, delivered and acked, in ns.

    The increments of a publish routed to one queue, its no-ack or manual-ack
    delivery and a single ack, on dicts shaped like the broker's.
    """
    setup = (
        "session = dict.fromkeys(('publish', 'deliver', 'redeliver', 'ack'), 0)\n"
        "broker = {'routed': 0}\n"
        "queues = (object(),)\n"
        "entries = [1]\n"
        "redelivered = False"
    )
    stmt = (
        "session['publish'] += 1\n"
        "broker['routed'] += len(queues)\n"
        "counters = session\n"
        "if redelivered:\n"
        "    counters['redeliver'] += 1\n"
        "counters['deliver'] += 1\n"
        "session['ack'] += len(entries)"
    )
    runs = 1_000_000
    return min(timeit.repeat(stmt, setup, number=runs, repeat=5)) / runs * 1e9


def one_round(broker: Broker, queue: str, messages: int, body: bytes, persistent: bool) -> tuple[float, float]:
    """Publish `messages` while a no-ack consumer drains them: (msg/s, broker CPU µs per message)."""
    consumer = RawClient(broker.port)
    consumer.declare(queue, durable=persistent)
    consumer.send(1, commands.Basic.Consume(queue=queue, consumer_tag="bench", no_ack=True))
    consumer.read_method()
    done = threading.Event()

    def drain() -> None:
        count = 0
        while count < messages:
            ftype, _channel, payload = consumer._read_frame()
            if ftype == 1 and payload[:4] == DELIVER_PREFIX:
                count += 1
        done.set()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    publisher = RawClient(broker.port)
    cpu0, t0 = cpu_seconds(broker.proc.pid), time.perf_counter()
    publisher.publish_many(queue, body, messages, persistent=persistent)
    if not done.wait(300):
        raise RuntimeError(f"{broker.name}: the consumer did not get {messages} messages")
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(broker.proc.pid) - cpu0
    thread.join()
    publisher.send(1, commands.Queue.Delete(queue=queue))
    publisher.read_method()
    publisher.close()
    consumer.close()
    return messages / elapsed, cpu / messages * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", default="transient,persistent")
    parser.add_argument("--body", type=int, default=256)
    parser.add_argument("--fsync", default="always")
    args = parser.parse_args(argv)
    body = bytes(args.body)
    data = Path(tempfile.mkdtemp(prefix="warrenmq-metrics-bench-"))
    brokers: list[Broker] = []
    scraper = None
    try:
        off = Broker("metrics-off", data, metrics=False, fsync=args.fsync)
        brokers.append(off)
        on = Broker("metrics-on", data, metrics=True, fsync=args.fsync)
        brokers.append(on)
        scraper = Scraper(f"http://127.0.0.1:{on.metrics_port}/metrics")
        scraper.start()
        print(f"# metrics cost: {args.messages} x {args.body} B per round, publish + no-ack consume\n")
        print(f"Command: `{' '.join(sys.orig_argv)}`\n")
        print("| scenario | round | metrics | msg/s | broker CPU µs/msg |")
        print("|---|--:|---|--:|--:|")
        summary = []
        for scenario in args.scenario.split(","):
            persistent = scenario == "persistent"
            results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            for rnd in range(args.rounds):
                order = [("off", off), ("on", on)] if rnd % 2 == 0 else [("on", on), ("off", off)]
                for label, broker in order:
                    queue = f"metrics-bench-{scenario}-{rnd}"
                    rate, cpu = one_round(broker, queue, args.messages, body, persistent)
                    results[label].append((rate, cpu))
                    print(f"| {scenario} | {rnd + 1} | {label} | {rate:,.0f} | {cpu:.2f} |", flush=True)
            pairs = list(zip(results["off"], results["on"], strict=True))
            summary.append((
                scenario,
                statistics.median(r for r, _c in results["off"]),
                statistics.median(r for r, _c in results["on"]),
                statistics.median(on[0] / off[0] for off, on in pairs),
                statistics.median(c for _r, c in results["off"]),
                statistics.median(c for _r, c in results["on"]),
                statistics.median(on[1] / off[1] for off, on in pairs),
            ))  # fmt: skip
        print("\nMedians; the ratios are medians of each round's on/off ratio.\n")
        print("| scenario | msg/s off | msg/s on | on/off msg/s | CPU µs/msg off | on | on/off CPU |")
        print("|---|--:|--:|--:|--:|--:|--:|")
        for scenario, rate_off, rate_on, rate_ratio, cpu_off, cpu_on, cpu_ratio in summary:
            print(f"| {scenario} | {rate_off:,.0f} | {rate_on:,.0f} | {rate_ratio:.3f} "
                  f"| {cpu_off:.2f} | {cpu_on:.2f} | {cpu_ratio:.3f} |")  # fmt: skip
        print(f"\n{scraper.scrapes} scrapes of {scraper.last_size:,} bytes during the rounds, "
              f"{scraper.errors} failed")  # fmt: skip
        scraper.stopped.set()
        print("\n| idle broker with | broker CPU per scrape | exposition size |")
        print("|---|--:|--:|")
        for queues in (1, 1000):
            ms, size = scrape_cost(on, queues)
            print(f"| {queues:,} queues | {ms:.2f} ms | {size:,} B |", flush=True)
        increments = counter_increments_ns()
        cpu_per_message = min(s[4] for s in summary) * 1000  # ns, the cheapest scenario
        print(f"\nPer-message counter increments: {increments:.0f} ns, "
              f"{increments / cpu_per_message:.2%} of the broker CPU per message "
              f"({cpu_per_message / 1000:.2f} µs)")  # fmt: skip
        return 0
    finally:
        if scraper is not None:
            scraper.stopped.set()
        for broker in brokers:
            broker.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
