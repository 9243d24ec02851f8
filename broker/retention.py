"""x-retain-settled: a queue keeps its settled messages in its log for a while.

A queue deletes a segment of its log as soon as every message in it is
settled: nothing will be delivered from it again, so keeping it only costs
disk. With `x-retain-settled` (milliseconds) a settled segment stays until
its newest record is older than that, so `broker/replay.py` can still
publish its messages again. Records are timestamped when they are
published, so the retention counts from the publish of a segment's newest
message, as Kafka's `retention.ms` counts from a segment's newest record.

A segment that is still kept falls due at a known time. The queue arms one
timer for the earliest such time, and the broker's upkeep loop sweeps every
queue as well, so a retained segment goes even when nothing else happens
in its queue (a queue that was idle since a restart, say).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

RETAIN_SETTLED_ARG = "x-retain-settled"


def retain_settled_ms(arguments: dict[str, Any]) -> int | None:
    """The queue's x-retain-settled in milliseconds, None when it has none."""
    value = arguments.get(RETAIN_SETTLED_ARG)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def releasable_below(segments: Sequence[Any], settled_below: int, retain_ms: int,
                     now_ms: int) -> tuple[int, int | None]:  # fmt: skip
    """(offset below which whole segments may be deleted now, when the next kept one may go).

    A segment may go when all its messages are settled and its newest
    record is older than the retention. The second value is None when no
    settled segment is waiting for its time: the next one to go needs a
    settlement first, and the queue's end-of-turn flush checks again then.
    The active (last) segment is never deleted.
    """
    below = segments[0].base_offset
    cutoff = now_ms - retain_ms
    for segment in segments[:-1]:
        if segment.next_offset > settled_below:
            return below, None
        if segment.max_timestamp >= cutoff:
            return below, segment.max_timestamp + retain_ms + 1
        below = segment.next_offset
    return below, None


class RetentionTimer:
    """One timer per queue, for the moment its oldest retained segment may go."""

    def __init__(self, on_due: Callable[[], None], now_ms: Callable[[], int]) -> None:
        self._on_due = on_due
        self._now_ms = now_ms
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0

    def arm(self, due_ms: int | None) -> None:
        """Call on_due at due_ms (None: no timer); outside an event loop the upkeep sweep does it."""
        if due_ms is None:
            self.cancel()
            return
        if self._handle is not None and self._due == due_ms:
            return
        self.cancel()
        with contextlib.suppress(RuntimeError):  # no running loop
            loop = asyncio.get_running_loop()
            self._due = due_ms
            self._handle = loop.call_later(max(0.0, (due_ms - self._now_ms()) / 1000), self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._on_due()


def sweep(queues: Iterable[Any]) -> None:
    """The upkeep loop's pass: each queue with x-retain-settled releases what fell due."""
    for queue in queues:
        if getattr(queue, "retain_settled_ms", None) is not None and not queue.deleted:
            queue.release_settled_segments()
