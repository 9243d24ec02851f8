"""warrenmq against the reference RabbitMQ, side by side, in one run.

Usage:
    ../shared/tools/reference-rabbitmq.sh start     # optional: RabbitMQ on 127.0.0.1:5673
    .venv/bin/python bench/broker_bench.py [--seconds 5] [--repeat 2] [--client raw,aiormq]

Starts `warrenmq serve` on a free loopback port with a fresh data directory
(fsync: always), finds a reference RabbitMQ on 127.0.0.1:5673 when one is
running, and drives both with the shared harness (../shared/bench/amqpbench.py):
publish with confirms, publish+consume with acks, fanout to 4 queues, topic
with 1k bindings, each transient and then persistent. The harness interleaves
the brokers run by run and prints medians and the ratios of msg/s and of
broker CPU per message; its Markdown tables go to --md (default
bench/results/broker.md).
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

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT.parent / "shared" / "bench" / "amqpbench.py"
SCENARIOS = "publish_confirm,pubsub_ack,fanout4,topic1k"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def rabbitmq_pid() -> int | None:
    """The reference RabbitMQ's beam.smp, when one serves 127.0.0.1:5673."""
    try:
        socket.create_connection(("127.0.0.1", 5673), timeout=0.5).close()
    except OSError:
        return None
    out = subprocess.run(["pgrep", "-f", "beam.smp.*ref5673"], capture_output=True, text=True)
    pids = out.stdout.split()
    if not pids:
        out = subprocess.run(["pgrep", "-x", "beam.smp"], capture_output=True, text=True)
        pids = out.stdout.split()
    return int(pids[0]) if pids else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--client", default="raw,aiormq")
    parser.add_argument("--scenario", default=SCENARIOS)
    parser.add_argument("--md", default=str(ROOT / "bench" / "results" / "broker.md"))
    parser.add_argument("--fsync", default="always")
    args = parser.parse_args(argv)
    if not HARNESS.exists():
        print(f"the shared harness is missing: {HARNESS}", file=sys.stderr)
        return 2
    data = Path(tempfile.mkdtemp(prefix="warrenmq-bench-"))
    port = free_port()
    broker = subprocess.Popen(
        [sys.executable, "-m", "warrenmq.broker.cli", "serve", "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(data / "data"), "--fsync", args.fsync, "--log-level", "warning"],
    )  # fmt: skip
    try:
        wait_listening(port)
        targets = [("warrenmq", f"amqp://guest:guest@127.0.0.1:{port}/", broker.pid)]
        rabbit = rabbitmq_pid()
        if rabbit is not None:
            targets.insert(0, ("rabbitmq", "amqp://guest:guest@127.0.0.1:5673/", rabbit))
        else:
            print("no reference RabbitMQ on 127.0.0.1:5673: measuring warrenmq alone", file=sys.stderr)
        os.makedirs(os.path.dirname(args.md), exist_ok=True)
        status = 0
        for persistent in (False, True):
            cmd = [sys.executable, str(HARNESS)]
            for name, url, pid in targets:
                cmd += ["--url", url, "--broker-pid", str(pid), "--name", name]
            cmd += ["--scenario", args.scenario, "--client", args.client,
                    "--seconds", str(args.seconds), "--repeat", str(args.repeat)]  # fmt: skip
            suffix = "persistent" if persistent else "transient"
            if persistent:
                cmd.append("--persistent")
            md = args.md.replace(".md", f"-{suffix}.md")
            cmd += ["--md", md, "--tag", suffix]
            print(f"\n## {suffix} messages\n\n$ {' '.join(cmd)}", flush=True)
            status |= subprocess.call(cmd)
        return status
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
