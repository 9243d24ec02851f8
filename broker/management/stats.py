"""Message counts and their rates, as RabbitMQ's `message_stats` and `*_details` show them.

Counts are read live from the counters the broker keeps (per channel, per
queue, per exchange, per vhost for closed channels, broker-wide). Rates
need history: `Sampler` takes a sample of every object's counts every 5 s
(RabbitMQ's statistics interval) and keeps the last two, so a rate is the
change over the last interval, and 0.0 when nothing moved or there is only
one sample yet. It also notes when an object's counts last changed, which is
its `idle_since`. Objects are held weakly: a closed channel or a deleted
queue is forgotten with its samples.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from datetime import UTC, datetime
from typing import Any

SAMPLE_INTERVAL = 5.0

# A channel's counters, as ChannelSession keeps them; deliver_get is their sum of four.
CHANNEL_KEYS = ("publish", "confirm", "return_unroutable", "drop_unroutable", "deliver",
                "deliver_no_ack", "get", "get_no_ack", "get_empty", "ack", "redeliver")  # fmt: skip


def channel_counts(counters: Any) -> dict[str, int]:
    """message_stats counts from one channel's counters (or a sum of them)."""
    counts = {key: int(counters.get(key, 0)) for key in CHANNEL_KEYS}
    counts["deliver_get"] = counts["deliver"] + counts["deliver_no_ack"] + counts["get"] + counts["get_no_ack"]
    return counts


def sum_channels(base: Any, sessions: Any) -> dict[str, int]:
    """base (counts folded in from closed channels) plus every open channel's counters."""
    totals = {key: int(base.get(key, 0)) for key in CHANNEL_KEYS}
    for session in sessions:
        counters = getattr(session, "counters", None) or {}
        for key in CHANNEL_KEYS:
            totals[key] += counters.get(key, 0)
    return channel_counts(totals)


def queue_counts(queue: Any) -> dict[str, int]:
    """message_stats counts of one queue from its own counters."""
    c = queue.counters
    get, get_no_ack, deliver_no_ack = c.get("get", 0), c.get("get_no_ack", 0), c.get("deliver_no_ack", 0)
    delivered = c.get("delivered", 0)
    return {
        "publish": c.get("published", 0),
        "deliver": max(delivered - get - get_no_ack - deliver_no_ack, 0),
        "deliver_no_ack": deliver_no_ack,
        "get": get,
        "get_no_ack": get_no_ack,
        "get_empty": c.get("get_empty", 0),
        "deliver_get": delivered,
        "ack": c.get("acked", 0),
        "redeliver": c.get("redelivered", 0),
    }


def exchange_counts(exchange: Any) -> dict[str, int]:
    return {"publish_in": getattr(exchange, "publish_in", 0), "publish_out": getattr(exchange, "publish_out", 0)}


def iso_time(epoch: float) -> str:
    """RabbitMQ's timestamp form for idle_since."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class Sampler:
    """The last two samples of each object's numbers, and when they last changed."""

    def __init__(self) -> None:
        self._samples: weakref.WeakKeyDictionary[Any, deque[tuple[float, dict[str, float]]]] = (
            weakref.WeakKeyDictionary()
        )
        self._changed_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def observe(self, obj: Any, values: dict[str, float], now: float | None = None) -> None:
        now = time.time() if now is None else now
        ring = self._samples.get(obj)
        if ring is None:
            ring = self._samples[obj] = deque(maxlen=2)
        if not ring or ring[-1][1] != values:
            self._changed_at[obj] = now
        ring.append((now, dict(values)))

    def rate(self, obj: Any, key: str) -> float:
        ring = self._samples.get(obj)
        if ring is None or len(ring) < 2:
            return 0.0
        (t0, v0), (t1, v1) = ring
        if t1 <= t0:
            return 0.0
        return round((v1.get(key, 0) - v0.get(key, 0)) / (t1 - t0), 1)

    def details(self, obj: Any, counts: dict[str, float]) -> dict[str, Any]:
        """counts with a `<key>_details: {"rate": r}` beside each, as RabbitMQ shows them."""
        out: dict[str, Any] = {}
        for key, value in counts.items():
            out[key] = value
            out[f"{key}_details"] = {"rate": self.rate(obj, key)}
        return out

    def idle_since(self, obj: Any, default: float) -> str:
        return iso_time(self._changed_at.get(obj, default))


def sample_broker(broker: Any, sampler: Sampler, views_of: Any) -> None:
    """One sample of every object the API shows rates for; `views_of` yields (object, numbers)."""
    now = time.time()
    for obj, values in views_of(broker):
        sampler.observe(obj, values, now)


async def sample_forever(broker: Any, sampler: Sampler, views_of: Any) -> None:
    while True:
        try:
            sample_broker(broker, sampler, views_of)
        except Exception:  # a bad sample must not stop the statistics
            logging.getLogger("warrenmq.management").exception("statistics sample failed")
        await asyncio.sleep(SAMPLE_INTERVAL)
