"""Delayed delivery: broker memory with many messages held, and lateness of a burst falling due.

Usage:
    .venv/bin/python bench/delayed_bench.py [--pending 100000] [--burst 20000]
        [--burst-window 3] [--lead 30] [--body 100] [--window 20] [--fsync always]

Starts `warrenmq serve` on a free loopback port with a fresh data directory,
declares a durable `x-delayed-message` exchange (x-delayed-type direct) bound
to a durable queue, and publishes --pending persistent messages with a raw
client under publisher confirms, at most --window unconfirmed. --burst of
them fall due within --burst-window seconds, starting --lead seconds after
the first publish; the others are due 1 to 10 minutes later and stay held.
The order of publishing is shuffled, so the burst is scattered over the log.

Each message carries, in its body, the due time the publisher asked for;
x-delay is computed from it just before its window is sent. The broker's
due time is its own arrival time + x-delay, so a large --window adds the
publisher's queueing to the measured lateness.

It reports:
- the broker's RSS (VmRSS) before publishing and once every publish is
  confirmed, and the growth: what holding that many messages costs;
- the lateness of the burst (time of delivery to a no-ack consumer minus the
  due time asked for): p50, p99, max, and how many arrived early;
- after a clean restart with what is still held: the time until the broker
  listens again, and its RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pamqp import commands

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.rawamqp import RawClient  # noqa: E402

FRAME_HEADER = struct.Struct(">BHI")
FRAME_END = b"\xce"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Raw(RawClient):
    """The shared raw client (tests/support/rawamqp.py) with a larger receive buffer."""

    def __init__(self, port: int) -> None:
        super().__init__(port, timeout=60)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def frame(self) -> tuple[int, bytes]:
        ftype, _channel, payload = self._read_frame()
        return ftype, payload

    def expect(self, cls):
        return self._expect(cls)


def publish_frames(exchange: str, key: str, delay: int, body: bytes) -> bytes:
    """Basic.Publish + content header (headers {x-delay: long}, delivery-mode 2) + body."""
    ex, rk = exchange.encode(), key.encode()
    method = struct.pack(">HHH", 60, 40, 0) + bytes([len(ex)]) + ex + bytes([len(rk)]) + rk + b"\x00"
    table = b"\x07x-delay" + b"l" + struct.pack(">q", delay)
    props = struct.pack(">H", 0x3000) + struct.pack(">I", len(table)) + table + b"\x02"
    header = struct.pack(">HHQ", 60, 0, len(body)) + props
    return b"".join((
        FRAME_HEADER.pack(1, 1, len(method)), method, FRAME_END,
        FRAME_HEADER.pack(2, 1, len(header)), header, FRAME_END,
        FRAME_HEADER.pack(3, 1, len(body)), body, FRAME_END,
    ))  # fmt: skip


def publish_all(port: int, exchange: str, dues: list[int], body_size: int, window: int) -> float:
    """Publish one message per due time (ms) under confirms; returns the seconds it took.

    At most `window` publishes are unconfirmed: each window's x-delay values
    are computed just before it is sent, and the broker reads it at once,
    so the broker's due time (its arrival + x-delay) is the one asked for,
    give or take the time to take in one window.
    """
    client = Raw(port)
    client.send(1, commands.Confirm.Select())
    client.expect(commands.Confirm.SelectOk)
    acked = 0
    start = time.monotonic()
    pad = b"." * max(0, body_size - 13)
    for i in range(0, len(dues), window):
        now = time.time_ns() // 1_000_000
        client.sock.sendall(b"".join(
            publish_frames(exchange, "k", due - now, b"%013d" % due + pad) for due in dues[i : i + window]
        ))  # fmt: skip
        sent = min(i + window, len(dues))
        while acked < sent:
            ftype, payload = client.frame()
            if ftype == 1 and payload[:4] == b"\x00\x3c\x00\x50":  # Basic.Ack
                acked = max(acked, struct.unpack_from(">Q", payload, 4)[0])
            elif ftype == 1 and payload[:4] == b"\x00\x3c\x00\x78":
                raise RuntimeError("a publish was nacked")
    elapsed = time.monotonic() - start
    client.sock.close()
    return elapsed


def consume(port: int, queue: str, expected: int, out: list[tuple[float, int]], ready: threading.Event) -> None:
    """No-ack consumer: (arrival s, due ms) of each delivery, until `expected` arrived."""
    client = Raw(port)
    client.send(1, commands.Basic.Consume(queue=queue, consumer_tag="bench", no_ack=True))
    client.expect(commands.Basic.ConsumeOk)
    ready.set()
    while len(out) < expected:
        ftype, payload = client.frame()
        if ftype == 3:  # the body (one frame: bodies are small)
            out.append((time.time(), int(payload[:13])))
    client.sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--burst-window", type=float, default=3.0, help="seconds")
    parser.add_argument("--lead", type=float, default=30.0, help="seconds to the burst")
    parser.add_argument("--body", type=int, default=100, help="body bytes")
    parser.add_argument("--fsync", default="always")
    parser.add_argument("--window", type=int, default=20, help="unconfirmed publishes at most")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="warrenmq-delayed-bench-"))
    port = free_port()

    def start_broker() -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrenmq.broker.cli", "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(base / "data"), "--fsync", args.fsync, "--log-level", "warning"],
            cwd=str(base),
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return proc
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    raise RuntimeError("the broker did not start") from None
                time.sleep(0.02)

    broker = start_broker()
    try:
        setup = Raw(port)
        setup.send(1, commands.Exchange.Declare(
            exchange="bench-delayed", exchange_type="x-delayed-message", durable=True,
            arguments={"x-delayed-type": "direct"},
        ))  # fmt: skip
        setup.expect(commands.Exchange.DeclareOk)
        setup.send(1, commands.Queue.Declare(queue="bench-due", durable=True))
        setup.expect(commands.Queue.DeclareOk)
        setup.send(1, commands.Queue.Bind(queue="bench-due", exchange="bench-delayed", routing_key="k"))
        setup.expect(commands.Queue.BindOk)
        setup.sock.close()
        time.sleep(1.0)
        before = rss_mb(broker.pid)

        rng = random.Random(args.seed)
        t0 = time.time_ns() // 1_000_000
        burst_start = t0 + int(args.lead * 1000)
        window = int(args.burst_window * 1000)
        dues = [burst_start + rng.randrange(window) for _ in range(args.burst)]
        dues += [t0 + rng.randrange(60_000, 600_000) for _ in range(args.pending - args.burst)]
        rng.shuffle(dues)

        arrivals: list[tuple[float, int]] = []
        ready = threading.Event()
        consumer = threading.Thread(
            target=consume, args=(port, "bench-due", args.burst, arrivals, ready), daemon=True
        )
        consumer.start()
        ready.wait(10)
        took = publish_all(port, "bench-delayed", dues, args.body, args.window)
        print(f"published and confirmed {args.pending:,} delayed messages in {took:.1f} s "
              f"({args.pending / took:,.0f} msg/s)")  # fmt: skip
        time.sleep(1.0)
        held = rss_mb(broker.pid)
        print(f"broker RSS: {before:.1f} MB before, {held:.1f} MB with {args.pending:,} held: "
              f"+{held - before:.1f} MB ({(held - before) * 1024 * 1024 / args.pending:.0f} B/message)")  # fmt: skip
        if burst_start - time.time_ns() // 1_000_000 < 1000:
            print("warning: publishing ran into the burst; raise --lead")
        consumer.join(args.lead + args.burst_window + 60)
        if len(arrivals) < args.burst:
            print(f"only {len(arrivals)} of {args.burst} burst messages arrived")
            return 1
        late = sorted(arrival * 1000 - due for arrival, due in arrivals)
        n = len(late)
        early = sum(1 for x in late if x < 0)
        print(f"burst of {n:,} due within {args.burst_window:.0f} s: lateness p50 {late[n // 2]:.1f} ms, "
              f"p99 {late[int(n * 0.99) - 1]:.1f} ms, max {late[-1]:.1f} ms, early {early}")  # fmt: skip
        print(f"broker RSS after the burst: {rss_mb(broker.pid):.1f} MB")
        broker.terminate()
        broker.wait(60)
        started = time.monotonic()
        broker = start_broker()
        took = time.monotonic() - started
        time.sleep(1.0)
        print(f"restart with {args.pending - args.burst:,} held: listening after {took:.2f} s, "
              f"RSS {rss_mb(broker.pid):.1f} MB")  # fmt: skip
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
