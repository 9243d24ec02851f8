"""Stream queues against the reference RabbitMQ's: publish and replay throughput, in one run.

Usage:
    ../shared/tools/reference-rabbitmq.sh start     # optional: RabbitMQ on 127.0.0.1:5673
    .venv/bin/python bench/stream_bench.py [--messages 200000] [--body 256] [--rounds 3]
        [--window 1000] [--prefetch 2000] [--brokers warrenmq,rabbitmq] [--profile DIR]

Starts `warrenmq serve` on a free loopback port with a fresh data directory
(fsync: always), and uses a reference RabbitMQ on 127.0.0.1:5673 when one is
running. Every round, for each broker in turn (the order swapped every other
round, so drift hits both alike):

1. publish: a raw client declares a fresh stream (`x-queue-type: stream`)
   and publishes N persistent messages to it under publisher confirms,
   pipelined with at most --window unconfirmed: msg/s from the first
   publish to the last confirm;
2. warm replay: a raw consumer on a new connection reads the whole stream
   from `x-stream-offset: first` with basic.qos --prefetch, acking with
   multiple=true every quarter prefetch: msg/s from its first delivery to
   its last;
3. cold replay: the same once more from disk. warrenmq is restarted and the
   page cache of its data directory is dropped (fsync, then
   POSIX_FADV_DONTNEED on each file). The reference RabbitMQ must not be
   restarted, so for it only its stream's segment files are dropped from
   the page cache: the node, its stream processes and their state stay up.

The stream is then deleted. Prints every round and the medians, with
warrenmq/RabbitMQ ratios of the medians and broker CPU (user+system) per
message, and writes the results as JSON to bench/results/.

The client is a blocking socket in this process: pipelined publishes
written in blocks, and a frame walker that counts deliveries without
decoding them, so it stays ahead of either broker on the other core.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pamqp import body as pbody
from pamqp import commands, frame, header

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.rawamqp import FRAME_HEADER, RawClient  # noqa: E402

RABBITMQ_PORT = 5673
RABBITMQ_STREAMS = "/tmp/reference-rabbitmq-5673/mnesia/ref5673@localhost/stream"
DELIVER = b"\x00\x3c\x00\x3c"  # Basic.Deliver's class and method ids
CONFIRM_ACK, CONFIRM_NACK = b"\x00\x3c\x00\x50", b"\x00\x3c\x00\x78"
ACK_FRAME = struct.Struct(">BHIHHQBB")  # a whole Basic.Ack frame on channel 1
U64_BIT = struct.Struct(">QB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def drop_page_cache(paths: list[str]) -> int:
    """Evict these files from the page cache (written back first); returns the bytes covered.

    Only the given files are touched, so the rest of the machine keeps its cache.
    """
    total = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


class Target:
    """A broker under test: where it listens, its process, and how to make its reads cold."""

    name = ""
    port = 0
    pid = 0

    def cold(self, queue: str) -> str:
        """Make the next replay of queue read from disk; returns what was done."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop what this bench started."""


class Warrenmq(Target):
    """`warrenmq serve` on a free loopback port, restartable on the same data directory."""

    name = "warrenmq"

    def __init__(self, data: Path, fsync: str, profile: Path | None) -> None:
        self.data = data
        self.fsync = fsync
        self.profile = profile
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.port = free_port()
        command = [sys.executable]
        if self.profile is not None:
            self.profile.mkdir(parents=True, exist_ok=True)
            command += ["-m", "cProfile", "-o", str(self.profile / f"warrenmq-{self.starts}.prof")]
        command += ["-m", "warrenmq.broker.cli", "serve", "--listen", f"127.0.0.1:{self.port}",
                    "--data-dir", str(self.data), "--fsync", self.fsync, "--log-level", "warning",
                    "--management", "off", "--prometheus", "off"]  # fmt: skip
        self.proc = subprocess.Popen(command)
        self.pid = self.proc.pid
        self.starts += 1
        try:
            wait_listening(self.port, self.proc)
        except RuntimeError:
            self.stop()
            raise

    def cold(self, queue: str) -> str:
        self.stop()
        self.start()
        files = [p for p in glob.glob(str(self.data / "**"), recursive=True) if os.path.isfile(p)]
        size = drop_page_cache(files)
        return f"restarted, {size / 1e6:.0f} MB of data dir dropped from the page cache"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class RabbitMQ(Target):
    """The reference node on 127.0.0.1:5673: used, never started or stopped here."""

    name = "rabbitmq"
    port = RABBITMQ_PORT

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @staticmethod
    def find() -> RabbitMQ | None:
        try:
            socket.create_connection(("127.0.0.1", RABBITMQ_PORT), timeout=0.5).close()
        except OSError:
            return None
        for pattern in (["-f", "beam.smp.*ref5673"], ["-x", "beam.smp"]):
            pids = subprocess.run(
                ["pgrep", *pattern], capture_output=True, text=True
            ).stdout.split()
            if pids:
                return RabbitMQ(int(pids[0]))
        return None

    def cold(self, queue: str) -> str:
        files = [p for d in glob.glob(f"{RABBITMQ_STREAMS}/*{queue}*") for p in glob.glob(f"{d}/*")]
        size = drop_page_cache(files)
        return f"still running, {size / 1e6:.0f} MB of the stream's segments dropped from the page cache"


class StreamClient(RawClient):
    """RawClient with what a stream needs: declare with arguments, confirmed publishing, replay."""

    def method(self, method: object) -> object:
        self.send(1, method)
        return self.read_method()

    def declare_stream(self, queue: str) -> None:
        ok = self.method(
            commands.Queue.Declare(queue=queue, durable=True, arguments={"x-queue-type": "stream"})
        )
        if not isinstance(ok, commands.Queue.DeclareOk):
            raise RuntimeError(f"declare {queue}: {ok!r}")

    def delete(self, queue: str) -> None:
        self.method(commands.Queue.Delete(queue=queue))

    def _frames(self) -> Iterator[tuple[int, int, int]]:
        """Complete frames in the buffer as (type, start of payload, end of payload), consumed."""
        buf, pos, n = self.buf, self.pos, len(self.buf)
        while pos + 7 <= n:
            ftype, _channel, size = FRAME_HEADER.unpack_from(buf, pos)
            end = pos + 7 + size
            if end >= n:
                break
            self.pos = end + 1
            yield ftype, pos + 7, end
            pos = end + 1

    def publish_confirmed(self, queue: str, body: bytes, count: int, window: int) -> None:
        """Publish count persistent messages, at most window unconfirmed; returns at the last confirm."""
        ok = self.method(commands.Confirm.Select())
        if not isinstance(ok, commands.Confirm.SelectOk):
            raise RuntimeError(f"confirm.select: {ok!r}")
        props = commands.Basic.Properties(delivery_mode=2)
        one = (
            frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
            + frame.marshal(header.ContentHeader(0, len(body), props), 1)
            + frame.marshal(pbody.ContentBody(body), 1)
        )
        step = max(1, window // 4)
        block = one * step
        sent = confirmed = 0
        while True:
            while sent < count and sent - confirmed + step <= window:
                n = min(step, count - sent)
                self.sock.sendall(block if n == step else one * n)
                sent += n
            if confirmed >= count:
                return
            self._fill()
            for ftype, start, end in self._frames():
                if ftype != 1:
                    continue
                method = self.buf[start : start + 4]
                if method == CONFIRM_ACK:
                    confirmed = max(confirmed, U64_BIT.unpack_from(self.buf, start + 4)[0])
                elif method == CONFIRM_NACK:
                    raise RuntimeError("a publish was nacked")
                else:
                    raise RuntimeError(f"unexpected method {self.buf[start:end]!r}")

    def replay(self, queue: str, count: int, prefetch: int) -> tuple[int, float]:
        """Read count messages from the stream's start: (deliveries timed, their seconds).

        The consumer is named by the broker, so warrenmq tracks no offset for it
        (RabbitMQ tracks none over AMQP 0-9-1): both do the same work. The
        clock starts when the first read holding a delivery returns, so the
        deliveries of that read are not counted. Delivery tags are 1, 2, ... on
        this fresh channel, so the count is the tag an ack with multiple=true
        settles everything up to.
        """
        self.method(commands.Basic.Qos(prefetch_count=prefetch))
        ok = self.method(commands.Basic.Consume(queue=queue, consumer_tag="",
                                                arguments={"x-stream-offset": "first"}))  # fmt: skip
        if not isinstance(ok, commands.Basic.ConsumeOk):
            raise RuntimeError(f"consume {queue}: {ok!r}")
        ack_every = max(1, prefetch // 4)
        got = acked = before = 0
        read_at = first = time.perf_counter()
        while True:
            for ftype, start, end in self._frames():
                if ftype == 1:
                    if not self.buf.startswith(DELIVER, start):
                        raise RuntimeError(f"unexpected method {self.buf[start:end]!r}")
                    got += 1
            if got and not before:
                first, before = read_at, got
            if got - acked >= ack_every or (got >= count and got > acked):
                self.sock.sendall(ACK_FRAME.pack(1, 1, 13, 60, 80, got, 1, 0xCE))
                acked = got
            if got >= count:
                break
            self._fill()
            read_at = time.perf_counter()
        elapsed = time.perf_counter() - first
        if got != count:
            raise RuntimeError(f"{got} deliveries, expected {count}")
        return count - before, elapsed


@dataclass
class Figure:
    """One measured phase: msg/s, and the broker's and this client's CPU per message."""

    rate: float
    cpu_us: float
    client_us: float


def measure(target: Target, count: int, run: Callable[[], tuple[int, float] | None]) -> Figure:
    """Time run (which may time itself: messages, seconds); CPU per message over all count."""
    cpu0, own0, t0 = cpu_seconds(target.pid), time.process_time(), time.perf_counter()
    timed = run() or (count, time.perf_counter() - t0)
    cpu, own = cpu_seconds(target.pid) - cpu0, time.process_time() - own0
    return Figure(timed[0] / timed[1], cpu / count * 1e6, own / count * 1e6)


def one_round(
    target: Target, queue: str, args: argparse.Namespace, body: bytes
) -> dict[str, Figure | str]:
    """Publish, warm replay, cold replay of a fresh stream; the stream is deleted afterwards."""
    out: dict[str, Figure | str] = {}
    admin = StreamClient(target.port)
    admin.declare_stream(queue)
    try:
        out["publish"] = measure(target, args.messages,
                                 lambda: admin.publish_confirmed(queue, body, args.messages, args.window))  # fmt: skip
        admin.close()
        for phase in ("warm", "cold"):
            if phase == "cold":
                out["cold_setup"] = target.cold(queue)
            consumer = StreamClient(target.port)
            out[phase] = measure(
                target, args.messages, partial(consumer.replay, queue, args.messages, args.prefetch)
            )
            consumer.close()
    finally:
        admin = StreamClient(target.port)
        admin.delete(queue)
        admin.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--body", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=1000, help="unconfirmed publishes at most")
    parser.add_argument("--prefetch", type=int, default=2000)
    parser.add_argument("--brokers", default="warrenmq,rabbitmq")
    parser.add_argument("--fsync", default="always")
    parser.add_argument(
        "--profile", type=Path, help="run warrenmq under cProfile, one .prof per start here"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / f"stream-{time.strftime('%Y%m%d-%H%M%S')}.json",
    )
    args = parser.parse_args(argv)
    body = bytes(args.body)
    wanted = args.brokers.split(",")
    data = Path(tempfile.mkdtemp(prefix="warrenmq-stream-bench-"))
    targets: list[Target] = []
    try:
        if "rabbitmq" in wanted:
            rabbit = RabbitMQ.find()
            if rabbit is None:
                print(
                    "no reference RabbitMQ on 127.0.0.1:5673: measuring warrenmq alone",
                    file=sys.stderr,
                )
            else:
                targets.append(rabbit)
        if "warrenmq" in wanted:
            targets.append(Warrenmq(data / "data", args.fsync, args.profile))
        command = " ".join(sys.orig_argv)
        print(f"# streams: {args.messages:,} x {args.body} B persistent, window {args.window}, "
              f"prefetch {args.prefetch}\n\nCommand: `{command}`\n")  # fmt: skip
        print("| round | broker | publish msg/s | CPU µs/msg | warm replay msg/s | CPU µs/msg "
              "| cold replay msg/s | CPU µs/msg |")  # fmt: skip
        print("|--:|---|--:|--:|--:|--:|--:|--:|")
        rounds: dict[str, list[dict]] = {t.name: [] for t in targets}
        cold_setup: dict[str, str] = {}
        for rnd in range(args.rounds):
            for target in targets if rnd % 2 == 0 else targets[::-1]:
                res = one_round(target, f"stream-bench-{os.getpid()}-{rnd}", args, body)
                cold_setup[target.name] = str(res.pop("cold_setup"))
                rounds[target.name].append({k: vars(v) for k, v in res.items()})
                cells = " | ".join(f"{v.rate:,.0f} | {v.cpu_us:.1f}" for v in res.values())  # type: ignore[union-attr]
                print(f"| {rnd + 1} | {target.name} | {cells} |", flush=True)
        phases = ("publish", "warm", "cold")
        keys = ("rate", "cpu_us", "client_us")
        medians = {
            name: {p: {k: statistics.median(r[p][k] for r in rs) for k in keys} for p in phases}
            for name, rs in rounds.items()
        }
        both = len(medians) == 2
        print(f"\nMedians of {args.rounds} rounds; the ratios are medians of each round's ratio.\n")
        print("| phase | " + " | ".join(f"{n} msg/s | broker CPU µs/msg" for n in medians) + " |"
              + (" warrenmq/RabbitMQ msg/s | CPU ratio |" if both else ""))  # fmt: skip
        print("|---|" + "--:|" * (2 * len(medians) + (2 if both else 0)))
        ratios: dict[str, dict[str, float]] = {}
        for p in phases:
            cells = " | ".join(
                f"{m[p]['rate']:,.0f} | {m[p]['cpu_us']:.1f}" for m in medians.values()
            )
            line = f"| {p} | {cells} |"
            if both:
                pairs = list(zip(rounds["warrenmq"], rounds["rabbitmq"], strict=True))
                ratios[p] = {
                    k: statistics.median(w[p][k] / r[p][k] for w, r in pairs) for k in keys
                }
                line += f" **{ratios[p]['rate']:.2f}** | {ratios[p]['cpu_us']:.2f} |"
            print(line)
        client = ", ".join(
            f"{n} {p} {m[p]['client_us']:.1f}" for n, m in medians.items() for p in phases[1:]
        )
        print(f"\nThis client's CPU per message in the replays (µs): {client}")
        for name, what in cold_setup.items():
            print(f"\ncold replay, {name}: {what}")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "cold_setup": cold_setup, "rounds": rounds, "medians": medians, "ratios": ratios,
        }, indent=2))  # fmt: skip
        print(f"\nJSON: {args.json}")
        return 0
    finally:
        for target in targets:
            target.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
