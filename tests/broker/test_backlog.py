"""A backlog of 1,000,000 messages lives on disk, not in the broker's memory.

1M persistent 256 B messages are published with no consumer. Then:
- the broker's RSS stays under 200 MB;
- after a clean stop it serves again within 5 s (the queue reports all of
  them), and after a kill -9 within 30 s;
- a consumer then drains every message.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.broker import BrokerProcess
from support.rawamqp import RawClient

MESSAGES = 1_000_000
BODY = bytes(range(256))
QUEUE = "backlog"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def log_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.log"))


def wait_for_count(port: int, expected: int, deadline: float) -> int:
    """Poll the queue's message count until it reaches expected (or time runs out)."""
    count = -1
    while time.monotonic() < deadline:
        client = RawClient(port)
        count = client.declare(QUEUE, passive=True)
        client.close()
        if count >= expected:
            return count
        time.sleep(0.2)
    return count


def restart_time(broker: BrokerProcess) -> float:
    """Seconds from start until the queue answers with its whole backlog."""
    started = time.monotonic()
    broker.start(timeout=60)
    count = wait_for_count(broker.port, MESSAGES, started + 60)
    assert count == MESSAGES, f"after the restart the queue holds {count} messages"
    return time.monotonic() - started


@pytest.mark.slow
def test_a_million_message_backlog(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", fsync="always").start()
    try:
        client = RawClient(broker.port)
        client.declare(QUEUE, durable=True)
        client.publish_many(QUEUE, BODY, MESSAGES, persistent=True)
        client.close()
        count = wait_for_count(broker.port, MESSAGES, time.monotonic() + 120)
        assert count == MESSAGES
        rss = rss_mb(broker.pid)
        assert rss < 200, f"broker RSS {rss:.0f} MB with a 1M backlog"
        assert log_bytes(tmp_path / "data" / "topics") > MESSAGES * len(BODY)  # it is all on disk

        broker.stop()
        clean = restart_time(broker)
        assert clean < 5, f"serving took {clean:.1f} s after a clean stop"

        broker.kill()
        crashed = restart_time(broker)
        assert crashed < 30, f"serving took {crashed:.1f} s after kill -9"

        client = RawClient(broker.port)
        assert client.consume_count(QUEUE, MESSAGES, prefetch=0) == MESSAGES
        client.close()
        drained = RawClient(broker.port)
        assert drained.declare(QUEUE, passive=True) == 0
        drained.close()
        # Settled segments are deleted: what is left of the log is about one segment.
        left = log_bytes(tmp_path / "data" / "topics")
        assert left <= 70 * 1024 * 1024, f"{left / 2**20:.0f} MiB of segments left after draining"
        print(f"rss={rss:.0f}MB clean_restart={clean:.2f}s crash_restart={crashed:.2f}s")
    finally:
        broker.kill()
