"""Dead-letter throughput: consumers reject without requeue into a DLX, in msg/s.

Usage:
    .venv/bin/python bench/dlx_bench.py [--messages 100000]

Starts `warrenmq serve` (fsync: always) on a free loopback port, and uses a
reference RabbitMQ on 127.0.0.1:5673 too when one runs
(../shared/tools/reference-rabbitmq.sh start). For each broker: N transient
256 B messages are published to a queue whose x-dead-letter-exchange is a
fanout to a second queue; a raw consumer (prefetch 1000) rejects every
delivery without requeue; the clock stops when the dead-letter queue holds
all N. Prints msg/s and broker CPU per dead-lettered message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pamqp import commands, frame

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.rawamqp import RawClient  # noqa: E402

BODY = bytes(256)
_REJECT = commands.Basic.Reject


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(port: int, tag: str) -> tuple[str, str]:
    client = RawClient(port)
    source, dead, dlx = f"dlx-src-{tag}", f"dlx-dead-{tag}", f"dlx-x-{tag}"
    client.send(1, commands.Exchange.Declare(exchange=dlx, exchange_type="fanout"))
    client.read_method()
    client.declare(dead, durable=False)
    client.send(1, commands.Queue.Bind(queue=dead, exchange=dlx))
    client.read_method()
    client.send(1, commands.Queue.Declare(queue=source, arguments={"x-dead-letter-exchange": dlx}))
    client.read_method()
    client.close()
    return source, dead


def run(port: int, pid: int, messages: int, tag: str) -> tuple[float, float]:
    source, dead = setup(port, tag)
    publisher = RawClient(port)
    publisher.publish_many(source, BODY, messages, persistent=False)
    publisher.close()
    while True:  # all published before the clock starts
        probe = RawClient(port)
        count = probe.declare(source, durable=False, passive=True)
        probe.close()
        if count >= messages:
            break
        time.sleep(0.05)
    consumer = RawClient(port)
    consumer.send(1, commands.Basic.Qos(prefetch_count=1000))
    consumer.read_method()
    consumer.send(1, commands.Basic.Consume(queue=source, consumer_tag="dlx-bench"))
    consumer.read_method()
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    rejected = 0
    pending: list[bytes] = []
    while rejected < messages:
        ftype, _channel, payload = consumer._read_frame()
        if ftype == 1 and payload[:4] == b"\x00\x3c\x00\x3c":
            tag_len = payload[4]
            delivery_tag = int.from_bytes(payload[5 + tag_len : 13 + tag_len], "big")
            pending.append(frame.marshal(_REJECT(delivery_tag, False), 1))
            rejected += 1
            if len(pending) >= 100 or rejected == messages:
                consumer.sock.sendall(b"".join(pending))
                pending.clear()
    while True:
        probe = RawClient(port)
        count = probe.declare(dead, durable=False, passive=True)
        probe.close()
        if count >= messages:
            break
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    consumer.close()
    return messages / elapsed, cpu / messages * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="warrenmq-dlx-bench-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = subprocess.Popen(
        [sys.executable, "-m", "warrenmq.broker.cli", "serve", "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(data / "data"), "--log-level", "warning"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        targets = [("warrenmq", port, broker.pid)]
        try:
            socket.create_connection(("127.0.0.1", 5673), timeout=0.5).close()
            pids = subprocess.run(["pgrep", "-x", "beam.smp"], capture_output=True, text=True).stdout.split()
            if pids:
                targets.insert(0, ("rabbitmq", 5673, int(pids[0])))
        except OSError:
            print("no reference RabbitMQ on 127.0.0.1:5673: measuring warrenmq alone", file=sys.stderr)
        print(f"# dead-letter throughput: {args.messages} x 256 B, reject without requeue\n")
        print(f"Command: `{' '.join(sys.orig_argv)}`\n")
        print("| broker | dead-lettered msg/s | broker CPU µs/msg |")
        print("|---|--:|--:|")
        results = {}
        for name, target_port, pid in targets:
            rate, cpu = run(target_port, pid, args.messages, f"{name}-{int(time.time())}")
            results[name] = (rate, cpu)
            print(f"| {name} | {rate:,.0f} | {cpu:.1f} |", flush=True)
        if "rabbitmq" in results:
            w, r = results["warrenmq"], results["rabbitmq"]
            print(f"\nwarrenmq / rabbitmq: msg/s {w[0] / r[0]:.2f}, CPU per message {w[1] / r[1]:.2f}")
        return 0
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
