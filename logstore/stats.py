"""What the log observes about itself, for metrics, without depending on a metrics library.

The log records per batch (an append) and per commit round, never per
record, so keeping these costs a few hundred nanoseconds a batch. Whoever
exports metrics (the broker's Prometheus endpoint) reads the histograms at
scrape time; the log itself imports nothing for it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# Latency buckets in seconds, from 50 µs (an append, a page-cache fsync) to 10 s.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Size buckets (records in a batch, logs or records in a commit round).
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)


class Histogram:
    """A fixed-bucket histogram: a count per bucket (upper bounds inclusive), a sum and a count.

    `counts` has one slot per bound plus a last one for values above every
    bound (Prometheus's +Inf bucket minus the others).
    """

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (inf, count)."""
        out = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class LogStats:
    """The histograms one LogManager's logs and group committer share."""

    __slots__ = ("append_seconds", "append_records", "fsync_seconds", "round_logs", "round_records")

    def __init__(self) -> None:
        self.append_seconds = Histogram(LATENCY_BUCKETS)  # one PartitionLog.append (a batch)
        self.append_records = Histogram(SIZE_BUCKETS)  # records in that batch
        self.fsync_seconds = Histogram(LATENCY_BUCKETS)  # the fsyncs of one commit round
        self.round_logs = Histogram(SIZE_BUCKETS)  # logs a commit round covered
        self.round_records = Histogram(SIZE_BUCKETS)  # records a commit round made durable
