"""Group commit: one fsync round at a time, covering every log that asked since the last.

An fsync takes a fraction of a millisecond to several milliseconds. Running
one per append would cap throughput at a few thousand appends a second and
block the event loop; a fixed timer would add its whole period to every
confirm. Instead a round starts as soon as a log has unsynced data and no
round is running; appends made while it runs wait for the next round, which
starts the moment the current one returns. The fsync calls run in a worker
thread (os.fsync releases the GIL), on duplicated file descriptors so that a
segment deleted meanwhile cannot close a descriptor under the thread's feet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

from .stats import LogStats


@dataclass
class SyncJob:
    """What one log hands to a commit round: descriptors to sync, and what they cover."""

    fds: list[int]
    end_offset: int
    directory: str | None = None
    error: BaseException | None = field(default=None)
    records: int = 0  # records the job makes durable (for the batch-size histogram)


class Syncable(Protocol):
    def sync_prepare(self) -> SyncJob: ...

    def sync_done(self, job: SyncJob) -> None: ...


def run_job(job: SyncJob) -> None:
    """Fsync and close the job's descriptors (in the worker thread, or inline)."""
    try:
        for fd in job.fds:
            os.fdatasync(fd)
        if job.directory is not None:
            dfd = os.open(job.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:  # a failed fsync leaves the data's fate unknown
        job.error = exc
    finally:
        for fd in job.fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _run_round(jobs: list[SyncJob]) -> float:
    """Run a round's jobs; returns the seconds its fsyncs took (measured in the worker)."""
    started = time.perf_counter()
    for job in jobs:
        run_job(job)
    return time.perf_counter() - started


class GroupCommitter:
    """Runs commit rounds for many logs on the running event loop."""

    def __init__(self, executor: Executor | None = None) -> None:
        self._executor = executor
        self._pending: dict[Syncable, None] = {}
        self._running = False
        self._idle: asyncio.Event | None = None
        # Observations for metrics: rounds run and logs covered by the last round.
        self.rounds = 0
        self.last_round_size = 0
        self.on_round: Callable[[int, float], None] | None = None
        self.stats = LogStats()  # shared with the logs: see stats.py

    def request(self, log: Syncable) -> None:
        """Ask for log's appends so far to be synced in a round (the next one if busy)."""
        self._pending[log] = None
        if not self._running:
            self._start()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        logs = list(self._pending)
        self._pending.clear()
        jobs = [log.sync_prepare() for log in logs]
        self._running = True
        started = loop.time()
        fut = loop.run_in_executor(self._executor, _run_round, jobs)
        fut.add_done_callback(lambda f: self._finished(logs, jobs, f, loop.time() - started))

    def _finished(
        self, logs: list[Syncable], jobs: list[SyncJob], fut: asyncio.Future, took: float
    ) -> None:
        self._running = False
        self.rounds += 1
        self.last_round_size = len(logs)
        if self.on_round is not None:
            self.on_round(len(logs), took)
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is None:
            stats = self.stats
            stats.fsync_seconds.observe(fut.result())
            stats.round_logs.observe(len(logs))
            stats.round_records.observe(sum(job.records for job in jobs))
        for log, job in zip(logs, jobs, strict=True):
            if exc is not None and job.error is None:
                job.error = exc
            log.sync_done(job)
        if self._pending:
            self._start()
        elif self._idle is not None:
            self._idle.set()

    @property
    def busy(self) -> bool:
        return self._running or bool(self._pending)

    async def wait_idle(self) -> None:
        """Return once no round is running or pending (used before a clean close)."""
        while self.busy:
            self._idle = asyncio.Event()
            await self._idle.wait()
        self._idle = None
