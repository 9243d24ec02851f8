"""Durability under each fsync policy, with group commit running off the event loop."""

from __future__ import annotations

import asyncio
import threading

from support.logstore import records

from warrenmq.logstore import LogConfig, LogManager


def test_group_commit_covers_many_appends_per_fsync(tmp_path) -> None:
    async def main() -> tuple[int, int]:
        manager = LogManager(str(tmp_path / "d"), LogConfig(fsync="always"))
        part = manager.create_topic("t").partition(0)
        loop_thread = threading.get_ident()
        fsync_threads: set[int] = set()
        manager.committer.on_round = lambda n, took: fsync_threads.add(threading.get_ident())

        async def producer(i: int) -> None:
            for j in range(50):
                offsets = part.append(records(2, tag=b"%d-%d" % (i, j)))
                await part.wait_durable(offsets[-1])
                assert part.durable_offset > offsets[-1]
                assert part.flushed_offset > offsets[-1]

        await asyncio.gather(*(producer(i) for i in range(20)))
        rounds = manager.committer.rounds
        assert fsync_threads == {loop_thread}, "completions must come back on the loop"
        await manager.aclose()
        return rounds, 20 * 50

    rounds, appends = asyncio.run(main())
    assert 0 < rounds < appends / 4, f"{rounds} fsync rounds for {appends} appends"


def test_interval_policy_confirms_at_once_and_fsyncs_within_the_interval(tmp_path) -> None:
    async def main() -> float:
        manager = LogManager(str(tmp_path / "d"), LogConfig(fsync="interval", fsync_interval_ms=50))
        part = manager.create_topic("t").partition(0)
        loop = asyncio.get_running_loop()
        offsets = part.append(records(3))
        assert part.durable_future(offsets[-1]) is None  # as Kafka's flush.ms: acks do not wait
        assert part.flushed_offset == 0
        started = loop.time()
        while part.flushed_offset <= offsets[-1]:
            assert loop.time() - started < 5, "the interval timer never fsynced"
            await asyncio.sleep(0.005)
        took = loop.time() - started
        await manager.aclose()
        return took

    took = asyncio.run(main())
    assert 0.03 <= took < 2.0


def test_never_policy_counts_appends_durable_at_once(tmp_path) -> None:
    async def main() -> None:
        manager = LogManager(str(tmp_path / "d"), LogConfig(fsync="never"))
        part = manager.create_topic("t").partition(0)
        offsets = part.append(records(3))
        assert part.durable_future(offsets[-1]) is None
        assert part.flushed_offset == 0  # nothing was fsynced for it
        await manager.aclose()

    asyncio.run(main())


def test_without_an_event_loop_always_means_fsync_per_append(tmp_path) -> None:
    manager = LogManager(str(tmp_path / "d"), LogConfig(fsync="always"))
    part = manager.create_topic("t").partition(0)
    offsets = part.append(records(3))
    assert part.flushed_offset == offsets[-1] + 1
    manager.close()
