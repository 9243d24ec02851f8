"""Throughput of warrenmq.logstore against the plain-file ceiling, in one run.

Usage: .venv/bin/python bench/logstore_bench.py [--seconds S] [--dir PATH]

For 256-byte records in batches of 1, 10 and 100 it measures:

* appends with fsync=never: a plain synchronous loop of log.append(batch);
* two write ceilings, the same record values written by a plain Python loop
  to a file opened with open(path, "wb"), the same number of records:
  "per record" does one f.write per record (the plain loop a program writing
  these records would run), "per batch" one f.write of a batch's values joined
  beforehand (memcpy speed: no per-record work at all); the ratios show what
  the log's own work (encoding, CRC, one os.write per batch, indexes) costs;
* appends with fsync=interval and fsync=always, waited for as the broker will:
  inside an asyncio event loop (uvloop when importable), a pipelined producer
  keeps at most --window records not yet durable and awaits
  PartitionLog.durable_future for them, so group commit coalesces many appends
  into one fsync round (the appends covered per round are reported);
* sequential reads of the whole fsync=never log from offset 0 with
  log.read(offset, max_records=1000), and the read ceiling: plain f.read of the
  ceiling file in 1 MiB chunks. Both read from the page cache (just written).

The machine is shared and noisy (docs/benchmarks.md): compare numbers within
one run and prefer the ratios. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType

from warrenmq.logstore import LogConfig, LogManager, PartitionLog

uvloop: ModuleType | None
try:
    import uvloop
except ImportError:  # the [fast] extra is optional; plain asyncio still works
    uvloop = None

RECORD_SIZE = 256
BATCH_SIZES = (1, 10, 100)
# Distinct prebuilt values, reused in turn; a multiple of every batch size so
# that each pass over the pool is a whole number of batches.
POOL_RECORDS = 1000
READ_MAX_RECORDS = 1000
READ_CHUNK = 1 << 20
# Reads should cover the whole log; this many case budgets is only a safety cap.
READ_BUDGET_FACTOR = 3
MIB = 1 << 20
MB = 1_000_000

RecordInput = tuple[int, bytes | None, bytes, bytes]


# ------------------------------------------------------------------ workload
@dataclass(frozen=True)
class Workload:
    """Prebuilt batches of one size, so the timed loops only append or write."""

    batch: int
    batches: list[list[RecordInput]]
    blobs: list[bytes]  # the concatenated values of each batch, for the ceiling

    @property
    def pass_records(self) -> int:
        """Records in one pass over the pool (every loop runs whole passes)."""
        return len(self.batches) * self.batch


def make_values(count: int) -> list[bytes]:
    """Random values: incompressible, so no layer can cheat on repeated bytes."""
    return [os.urandom(RECORD_SIZE) for _ in range(count)]


def make_workload(batch: int, values: list[bytes], timestamp_ms: int) -> Workload:
    """Cut the value pool into batches of (timestamp, no key, value, no headers)."""
    if len(values) % batch:
        raise ValueError(f"pool of {len(values)} values is not a multiple of batch {batch}")
    batches = [
        [(timestamp_ms, None, v, b"") for v in values[i : i + batch]]
        for i in range(0, len(values), batch)
    ]
    blobs = [b"".join(r[2] for r in b) for b in batches]
    return Workload(batch, batches, blobs)


# ------------------------------------------------------------------- results
@dataclass
class Result:
    """One row of the report."""

    operation: str
    policy: str
    batch: int
    records: int
    seconds: float
    ratio: float | None = None
    ratio_per_record: float | None = None
    appends_per_fsync: float | None = None
    round_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        policy = "" if self.policy == "-" else f" fsync={self.policy}"
        return f"{self.operation}{policy} batch={self.batch}"

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mb_per_s(self) -> float:
        """Record payload (values) only: headers and batch framing are not counted."""
        return self.records_per_s * RECORD_SIZE / MB


def progress(message: str) -> None:
    """Progress on stderr, so stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------ timed loops
def append_never(log: PartitionLog, wl: Workload, seconds: float) -> tuple[int, float]:
    """Synchronous appends for about `seconds`; returns (records, elapsed).

    The clock is read once per pass over the pool (1000 records), so its cost
    does not weigh on the per-append figure.
    """
    append = log.append
    batches = wl.batches
    passes = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for b in batches:
            append(b)
        passes += 1
        now = time.perf_counter()
        if now >= deadline:
            return passes * wl.pass_records, now - start


def write_ceiling_per_record(path: str, wl: Workload, records: int) -> float:
    """The same records as plain buffered file writes, one f.write per record."""
    passes = records // wl.pass_records
    values = [rec[2] for batch in wl.batches for rec in batch]
    start = time.perf_counter()
    with open(path, "wb") as f:
        write = f.write
        for _ in range(passes):
            for value in values:
                write(value)
    return time.perf_counter() - start


def write_ceiling(path: str, wl: Workload, records: int) -> float:
    """The same records as plain buffered file writes, one per batch; returns elapsed.

    Same loop shape as append_never (whole passes over the pool) so the loop
    itself costs the same; closing (the final flush to the OS) is timed too.
    """
    passes = records // wl.pass_records
    blobs = wl.blobs
    start = time.perf_counter()
    with open(path, "wb") as f:
        write = f.write
        for _ in range(passes):
            for blob in blobs:
                write(blob)
    return time.perf_counter() - start


async def append_durable(
    log: PartitionLog, wl: Workload, seconds: float, window: int
) -> tuple[int, int, float]:
    """Pipelined appends that wait for durability; returns (records, appends, elapsed).

    Appends run back to back while fewer than `window` records are not yet
    durable; past that, the producer awaits the oldest durable_future, which is
    when the event loop runs the committer's callbacks. Elapsed time includes
    waiting for the last append to become durable.
    """
    pending: collections.deque[tuple[asyncio.Future, int]] = collections.deque()
    outstanding = 0
    appends = 0
    n = wl.batch
    limit = max(window, n)
    batches = wl.batches
    start = time.perf_counter()
    deadline = start + seconds
    i = 0
    while time.perf_counter() < deadline:
        offsets = log.append(batches[i])
        i = (i + 1) % len(batches)
        appends += 1
        fut = log.durable_future(offsets[-1])
        if fut is not None:
            pending.append((fut, n))
            outstanding += n
        elif appends % 64 == 0:
            await asyncio.sleep(0)  # fsync=interval: let the timer and its rounds run
        while outstanding + n > limit:
            oldest, count = pending.popleft()
            await oldest
            outstanding -= count
            while pending and pending[0][0].done():  # futures complete in offset order
                outstanding -= pending.popleft()[1]
    for fut, _count in pending:
        await fut
    return appends * n, appends, time.perf_counter() - start


def read_log(log: PartitionLog, seconds: float) -> tuple[int, float]:
    """Read from the log start with read(offset, max_records=1000) until the end (or time)."""
    read = log.read
    offset = log.log_start_offset
    end = log.high_watermark
    records = 0
    start = time.perf_counter()
    deadline = start + seconds
    while offset < end:
        out = read(offset, max_records=READ_MAX_RECORDS)
        if not out:
            break
        records += len(out)
        offset = out[-1].offset + 1
        if time.perf_counter() >= deadline:
            break
    return records, time.perf_counter() - start


def read_ceiling(path: str) -> tuple[int, float]:
    """Plain f.read of the whole file in 1 MiB chunks; returns (bytes, elapsed)."""
    total = 0
    start = time.perf_counter()
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            total += len(chunk)
    return total, time.perf_counter() - start


# -------------------------------------------------------------------- cases
def log_config(args: argparse.Namespace, policy: str) -> LogConfig:
    return LogConfig(
        fsync=policy, segment_bytes=args.segment_mib * MIB, fsync_interval_ms=args.interval_ms
    )


def open_log(directory: str, config: LogConfig, name: str) -> tuple[LogManager, PartitionLog]:
    """A fresh LogManager in its own directory, with one single-partition topic."""
    mgr = LogManager(directory, config)
    topic = mgr.create_topic(name, 1, config)
    return mgr, topic.partition(0)


def check_first_record(log: PartitionLog, wl: Workload) -> None:
    """Outside the timing: the log must give back what was written."""
    first = log.read(log.log_start_offset, max_records=1)
    expected = wl.batches[0][0][2]
    if not first or first[0].value != expected:
        raise RuntimeError(f"{log.directory}: first record read back does not match")


def prepare(work: str, warmup_mib: int) -> None:
    """Level the ground before a timed write case.

    First os.sync(), so the previous case's writeback does not run during this
    one. Then write and delete a scratch file of warmup_mib: on this VM, memory
    the guest freed a few seconds ago is handed back to the host, and the first
    write into fresh page-cache pages runs several times slower than into
    pages just reused. Without this, whichever case runs first after a pause
    pays for it, which would skew the ratios.
    """
    os.sync()
    if warmup_mib <= 0:
        return
    path = os.path.join(work, "warmup.tmp")
    block = bytes(MIB)
    try:
        with open(path, "wb") as f:
            for _ in range(warmup_mib):
                f.write(block)
    finally:
        os.unlink(path)


def buffering_note(path: str, write_size: int) -> str:
    """How open()'s BufferedWriter turned the ceiling's f.write calls into os.write calls.

    Its buffer is st_blksize; it holds writes until the next one does not fit,
    so small writes are coalesced, which logstore (one os.write per append)
    does not do. That explains much of the ratio at small batch sizes.
    """
    buffer = os.stat(path).st_blksize
    per_syscall = max(1, buffer // write_size)
    return (
        f"f.write of {write_size} B per iteration; BufferedWriter buffer {buffer} B"
        f" (st_blksize), so about {per_syscall} f.write(s) per os.write"
    )


def bench_never_and_ceiling(args: argparse.Namespace, work: str, wl: Workload) -> list[Result]:
    """fsync=never appends and reads, then the plain-file write and read ceilings."""
    directory = os.path.join(work, f"never-{wl.batch}")
    mgr, log = open_log(directory, log_config(args, "never"), f"never-{wl.batch}")
    try:
        prepare(work, args.warmup_mib)
        records, elapsed = append_never(log, wl, args.seconds)
        appended = Result("append", "never", wl.batch, records, elapsed)
        segments = len(log.segments)
        disk_per_record = log.size_bytes / records
        check_first_record(log, wl)
        os.sync()  # reads come from the page cache; only writeback would disturb them
        read_records, read_elapsed = read_log(log, READ_BUDGET_FACTOR * args.seconds)
        read = Result("read", "never", wl.batch, read_records, read_elapsed)
        if read_records < records:
            read.notes.append(f"time budget hit after {read_records} of {records} records")
    finally:
        mgr.close()
        shutil.rmtree(directory, ignore_errors=True)
    appended.notes.append(
        f"{segments} segment(s), {disk_per_record:.1f} B on disk per record"
        f" ({disk_per_record - RECORD_SIZE:.1f} B of framing)"
    )

    path = os.path.join(work, f"ceiling-{wl.batch}.bin")
    try:
        prepare(work, args.warmup_mib)
        ceiling = Result("ceiling write", "-", wl.batch, records, write_ceiling(path, wl, records))
        ceiling.notes.append(buffering_note(path, wl.batch * RECORD_SIZE))
        os.unlink(path)
        prepare(work, args.warmup_mib)
        per_record = Result(
            "ceiling write per record",
            "-",
            wl.batch,
            records,
            write_ceiling_per_record(path, wl, records),
        )
        os.sync()
        nbytes, elapsed = read_ceiling(path)
        ceiling_read = Result("ceiling read", "-", wl.batch, nbytes // RECORD_SIZE, elapsed)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    appended.ratio = appended.records_per_s / ceiling.records_per_s
    appended.ratio_per_record = appended.records_per_s / per_record.records_per_s
    read.ratio = read.records_per_s / ceiling_read.records_per_s
    return [appended, per_record, ceiling, read, ceiling_read]


async def bench_durable(args: argparse.Namespace, work: str, policy: str, wl: Workload) -> Result:
    """Pipelined appends under fsync=always or interval, with group-commit statistics."""
    directory = os.path.join(work, f"{policy}-{wl.batch}")
    mgr, log = open_log(directory, log_config(args, policy), f"{policy}-{wl.batch}")
    round_times: list[float] = []
    try:
        prepare(work, args.warmup_mib)
        rounds_before = mgr.committer.rounds
        mgr.committer.on_round = lambda _logs, took: round_times.append(took)
        records, appends, elapsed = await append_durable(log, wl, args.seconds, args.window)
        rounds = mgr.committer.rounds - rounds_before
        if log.durable_offset < log.log_end_offset:
            raise RuntimeError(f"{directory}: appends not durable after the last await")
    finally:
        mgr.committer.on_round = None
        await mgr.aclose()
        shutil.rmtree(directory, ignore_errors=True)
    result = Result("append", policy, wl.batch, records, elapsed)
    if rounds:
        result.appends_per_fsync = appends / rounds
        result.round_ms = 1000 * sum(round_times) / len(round_times)
    result.notes.append(f"{rounds} fsync rounds")
    return result


async def bench_all_durable(
    args: argparse.Namespace, work: str, workloads: list[Workload]
) -> list[Result]:
    out = []
    for policy in ("interval", "always"):
        for wl in workloads:
            progress(f"append fsync={policy} batch={wl.batch} ...")
            out.append(await bench_durable(args, work, policy, wl))
    return out


def event_loop_runner() -> asyncio.Runner:
    """uvloop when importable, as the broker will run; plain asyncio otherwise."""
    if uvloop is not None:
        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


# ------------------------------------------------------------------- report
def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(results: list[Result]) -> Iterator[str]:
    """The Markdown table, one row per case."""
    yield (
        "| operation | fsync | batch | records | records/s | MB/s | ratio to per-record ceiling"
        " | ratio to per-batch ceiling | appends/fsync | fsync round ms |"
    )
    yield "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    for r in results:
        yield (
            f"| {r.operation} | {r.policy} | {r.batch} | {r.records} | {r.records_per_s:,.0f}"
            f" | {r.mb_per_s:,.1f} | {fmt(r.ratio_per_record, '.2f')} | {fmt(r.ratio, '.2f')}"
            f" | {fmt(r.appends_per_fsync, ',.1f')} | {fmt(r.round_ms, '.2f')} |"
        )


def cpu_model() -> str:
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="ascii", errors="replace") as f,
    ):
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(work_base: str) -> list[str]:
    loop = (
        f"uvloop {uvloop.__version__}" if uvloop is not None else "asyncio (uvloop not importable)"
    )
    return [
        f"- python: {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"- event loop: {loop}",
        f"- platform: {platform.platform()}; {os.cpu_count()} CPUs; {cpu_model()}",
        f"- data directory: {os.path.abspath(work_base)}",
    ]


def report(args: argparse.Namespace, work_base: str, results: list[Result], total: float) -> str:
    lines = [
        "# logstore benchmark",
        "",
        f"Command: `{shlex.join(sys.orig_argv)}` (cwd {os.getcwd()})",
        "",
        *machine_info(work_base),
        f"- settings: {RECORD_SIZE} B random values, no key, no headers; ~{args.seconds:g} s per case;"
        f" segment_bytes {args.segment_mib} MiB; fsync_interval_ms {args.interval_ms};"
        f" durable window {args.window} records not yet durable;"
        f" {args.warmup_mib} MiB page-cache warm-up before each write case",
        f"- whole run: {total:.1f} s",
        "",
        *table(results),
        "",
        "Notes:",
        "- MB/s counts record values only (10^6 B); framing on disk is extra (see below).",
        "- ratios: logstore records/s over a plain-file ceiling's, same batch size and record count;"
        " reads use the per-batch (1 MiB f.read) ceiling.",
        "- appends/fsync: append calls (batches) per group-commit round; records per round ="
        " appends/fsync x batch.",
        "- fsync=interval counts appends durable at once (as Kafka's flush.ms); its timer"
        " bounds what a power loss can take, so the producer never waits for it.",
        "- reads are from the page cache (the log was just written).",
        "- fsync round ms: mean time from a commit round's start to its completion callback"
        " on the event loop (fdatasync in the worker thread plus the wait for the loop).",
    ]
    for r in results:
        for note in r.notes:
            lines.append(f"- {r.label}: {note}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--seconds", type=float, default=2.0, help="time budget per case (default 2)")
    p.add_argument(
        "--dir",
        default=os.path.join("data", "bench-tmp"),
        help="a fresh temporary directory is made (and removed) under this (default data/bench-tmp)",
    )
    p.add_argument(
        "--window", type=int, default=1000, help="records not yet durable (default 1000)"
    )
    p.add_argument(
        "--interval-ms",
        type=int,
        default=100,
        help="fsync_interval_ms for fsync=interval (default 100)",
    )
    p.add_argument(
        "--warmup-mib",
        type=int,
        default=512,
        help="scratch MiB written and deleted before each write case, 0 for none (default 512)",
    )
    p.add_argument("--segment-mib", type=int, default=64, help="segment_bytes in MiB (default 64)")
    args = p.parse_args(argv)
    if min(args.seconds, args.window, args.interval_ms, args.segment_mib) <= 0:
        p.error("--seconds, --window, --interval-ms and --segment-mib must be positive")
    if args.warmup_mib < 0:
        p.error("--warmup-mib must not be negative")
    return args


def make_dirs(path: str) -> list[str]:
    """Create path and missing parents; returns those created, deepest first, for removal."""
    created = []
    path = os.path.abspath(path)
    while not os.path.isdir(path):
        created.append(path)
        path = os.path.dirname(path)
    for d in reversed(created):
        os.mkdir(d)
    return created


@contextlib.contextmanager
def scratch_dir(base: str) -> Iterator[str]:
    """A fresh directory under base, removed afterwards (also on error), with any
    parent this script had to create, when empty."""
    created = make_dirs(base)
    work = tempfile.mkdtemp(prefix="logstore-", dir=base)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for d in created:
            with contextlib.suppress(OSError):
                os.rmdir(d)


def run(args: argparse.Namespace, work: str) -> list[Result]:
    values = make_values(POOL_RECORDS)
    now_ms = time.time_ns() // 1_000_000
    workloads = [make_workload(b, values, now_ms) for b in BATCH_SIZES]
    by_op: dict[tuple[str, str], list[Result]] = collections.defaultdict(list)
    for wl in workloads:
        progress(f"append fsync=never, ceiling, reads batch={wl.batch} ...")
        for r in bench_never_and_ceiling(args, work, wl):
            by_op[(r.operation, r.policy)].append(r)
    with event_loop_runner() as runner:
        for r in runner.run(bench_all_durable(args, work, workloads)):
            by_op[(r.operation, r.policy)].append(r)
    order: list[tuple[str, str]] = [
        ("append", "never"),
        ("ceiling write per record", "-"),
        ("ceiling write", "-"),
        ("append", "interval"),
        ("append", "always"),
        ("read", "never"),
        ("ceiling read", "-"),
    ]
    return [r for key in order for r in by_op[key]]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    with scratch_dir(args.dir) as work:
        results = run(args, work)
    print(report(args, args.dir, results, time.perf_counter() - started))


if __name__ == "__main__":
    main()
