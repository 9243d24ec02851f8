"""The offsets store: a compacted key -> value log that survives restarts."""

from __future__ import annotations

from support.logstore import crash

from warrenmq.logstore import LogConfig


def test_put_get_delete_survive_restart(make_manager) -> None:
    manager = make_manager()
    store = manager.offsets_store()
    store.put(b"vhost/queue:settled", b"41")
    store.put(b"vhost/queue:settled", b"42")
    store.put(b"stream/consumer-a", b"7")
    store.delete(b"stream/consumer-a")
    assert store.delete(b"never-there") is None
    manager.close()
    store = make_manager().offsets_store()
    assert store.get(b"vhost/queue:settled") == b"42"
    assert b"stream/consumer-a" not in store
    assert len(store) == 1


def test_compaction_drops_old_values_and_keeps_the_latest(make_manager) -> None:
    config = LogConfig(fsync="never", segment_bytes=4_000)
    manager = make_manager(config)
    store = manager.offsets_store(config=config)
    store.compact_min_records = 200
    for round_ in range(50):
        store.put_many((f"q{k}".encode(), str(round_).encode()) for k in range(20))
    store.delete(b"q3")
    assert store.record_count < 200 + 20 + 1, "old values were never compacted away"
    expected = {f"q{k}".encode(): b"49" for k in range(20) if k != 3}
    assert dict(store.items()) == expected
    manager.close()
    assert dict(make_manager().offsets_store().items()) == expected


def test_a_crash_in_the_middle_of_compaction_loses_nothing(make_manager) -> None:
    config = LogConfig(fsync="never", segment_bytes=4_000)
    manager = make_manager(config)
    store = manager.offsets_store(config=config)
    store.compact_min_records = 10**9  # compact by hand below
    for round_ in range(30):
        store.put_many((f"q{k}".encode(), str(round_).encode()) for k in range(10))
    store.delete(b"q0")
    expected = dict(store.items())
    # Copy forward but "crash" before the old segments are deleted.
    store.log.roll()
    store.log.append([(0, k, v, b"") for k, v in list(store.items())[:4]])
    crash(manager)
    assert dict(make_manager().offsets_store().items()) == expected
