"""Child process of test_crash.py: appends with fsync=always until it is killed.

It prints `start <log end offset>` once the log is open, then `durable <offset>`
each time an append it made is reported durable. Record values are a function
of their offset, so the parent can check every record byte for byte.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

from warrenmq.logstore import LogConfig, LogManager


def value_for(offset: int) -> bytes:
    size = (offset * 7919) % 600 + 1
    seed = offset.to_bytes(8, "big")
    return (seed * (size // 8 + 1))[:size]


async def writer(part, rng: random.Random, out) -> None:
    while True:
        base = part.log_end_offset
        n = rng.randint(1, 40)
        now = time.time_ns() // 1_000_000
        offsets = part.append([(now, b"k", value_for(base + i), b"h") for i in range(n)])
        await part.wait_durable(offsets[-1])
        out.write(f"durable {offsets[-1]}\n")
        out.flush()


async def main(data_dir: str) -> None:
    config = LogConfig(fsync="always", segment_bytes=48 * 1024, index_interval_bytes=512)
    manager = LogManager(data_dir, config)
    part = manager.get_or_create_topic("crash").partition(0)
    sys.stdout.write(f"start {part.log_end_offset}\n")
    sys.stdout.flush()
    rng = random.Random()
    await asyncio.gather(*(writer(part, rng, sys.stdout) for _ in range(4)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
