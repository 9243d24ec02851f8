"""SIGKILL a process that appends with fsync=always, many times, and check what survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.crash_appender import value_for

from warrenmq.logstore import LogManager

APPENDER = Path(__file__).parent.parent / "support" / "crash_appender.py"

KILLS = 25


def run_until_killed(data_dir: Path, rng: random.Random) -> tuple[int, int]:
    """Start the appender, kill it at a random moment; (start offset, max durable offset)."""
    proc = subprocess.Popen(
        [sys.executable, str(APPENDER), str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("start "), first
        reader.start()
        time.sleep(rng.uniform(0.02, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    durable = [int(line.split()[1]) for line in lines if line.startswith("durable ")]
    return int(first.split()[1]), max(durable, default=-1)


def check_log(data_dir: Path) -> int:
    """Every record present reads back byte for byte, offsets without gaps; returns the end."""
    manager = LogManager(str(data_dir))
    try:
        part = manager.topic("crash").partition(0)
        offset = 0
        while offset < part.log_end_offset:
            records = part.read(offset, max_records=5000, max_bytes=1 << 22)
            assert records, f"nothing readable at {offset} below end {part.log_end_offset}"
            for rec in records:
                assert rec.offset == offset
                assert rec.value == value_for(offset), f"offset {offset} differs"
                assert rec.key == b"k" and rec.headers == b"h"
                offset += 1
        return part.log_end_offset
    finally:
        manager.close()


@pytest.mark.slow
def test_every_durable_offset_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    data_dir = tmp_path / "data"
    max_durable = -1
    expected_start = 0
    for i in range(KILLS):
        start, durable = run_until_killed(data_dir, rng)
        assert start >= expected_start, "the restarted log lost records it had after recovery"
        assert start > max_durable, f"kill {i}: durable offset {max_durable} lost (end {start})"
        max_durable = max(max_durable, durable)
        if i % 2:  # every other time the parent recovers the log; else the next child does
            end = check_log(data_dir)
            assert end > max_durable, f"kill {i}: durable offset {max_durable} lost (end {end})"
            expected_start = end
    assert max_durable > 100, "the appender never got far enough to test anything"
    end = check_log(data_dir)
    assert end > max_durable
