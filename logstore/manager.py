"""The log manager: one data directory, its topics, and their shared group commit.

Layout under the data directory (docs/storage.md has the details):

    .clean-shutdown         present only while the manager is closed cleanly
    topics/<name>/          one directory per topic (names escaped, see names.py)
        topic.json          name, partition count, LogConfig
        0/, 1/, ...         one PartitionLog per partition
    internal/<name>/        the manager's own logs (the offsets store)
    trash/                  topics being deleted; emptied at start

At start the marker decides how much is re-checked: after a clean shutdown
the index files are trusted; otherwise every partition re-checks the batches
past its recovery point.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Executor

from .commit import GroupCommitter
from .config import LogConfig
from .fileio import fsync_dir
from .log import PartitionLog
from .names import escape_name
from .offsets import OffsetsStore
from .stats import LogStats
from .topic import Topic, read_topic_meta, write_topic_meta

log = logging.getLogger("warrenmq.logstore")

CLEAN_SHUTDOWN_FILE = ".clean-shutdown"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TopicExistsError(ValueError):
    pass


class LogManager:
    """Owns a data directory; see the module docstring."""

    def __init__(
        self,
        data_dir: str,
        default_config: LogConfig | None = None,
        *,
        executor: Executor | None = None,
        clock_ms=_now_ms,
    ) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.default_config = default_config or LogConfig()
        self.clock_ms = clock_ms
        self.committer = GroupCommitter(executor)
        self._topics: dict[str, Topic] = {}
        self._internal: dict[str, PartitionLog] = {}
        self._closed = False
        fresh = not os.path.isdir(os.path.join(self.data_dir, "topics"))
        for sub in ("topics", "internal", "trash"):
            os.makedirs(os.path.join(self.data_dir, sub), exist_ok=True)
        marker = os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE)
        self.recovered_cleanly = os.path.exists(marker)
        if self.recovered_cleanly:
            os.unlink(marker)
            fsync_dir(self.data_dir)
        elif fresh:
            log.info("log manager: new data directory %s", self.data_dir)
        else:
            log.warning("log manager: %s was not shut down cleanly; recovering", self.data_dir)
        self._empty_trash()
        self._load_topics()

    # ---------------------------------------------------------------- topics
    def _path(self, *parts: str) -> str:
        return os.path.join(self.data_dir, *parts)

    def _load_topics(self) -> None:
        root = self._path("topics")
        for entry in sorted(os.listdir(root)):
            directory = os.path.join(root, entry)
            meta = read_topic_meta(directory)
            if meta is None:
                log.warning("recovery: %s has no readable topic.json; moving it to trash", directory)
                self._to_trash(directory)
                continue
            name, count, config = meta
            self._topics[name] = self._open_topic(directory, name, count, config)

    def _open_topic(self, directory: str, name: str, count: int, config: LogConfig) -> Topic:
        topic = Topic(name, directory, config)
        for i in range(count):
            topic.partitions.append(
                PartitionLog(
                    os.path.join(directory, str(i)),
                    config,
                    clean=self.recovered_cleanly,
                    committer=self.committer,
                    clock_ms=self.clock_ms,
                )
            )
        return topic

    def create_topic(
        self, name: str, partitions: int = 1, config: LogConfig | None = None
    ) -> Topic:
        """Create a topic; raises TopicExistsError when the name is taken."""
        self._check_open()
        if name in self._topics:
            raise TopicExistsError(f"topic {name!r} exists")
        if partitions < 1:
            raise ValueError(f"a topic needs at least one partition, not {partitions}")
        config = config or self.default_config
        directory = self._path("topics", escape_name(name))
        if os.path.exists(directory):  # a leftover of a crash mid-creation
            self._to_trash(directory)
        os.makedirs(directory)
        write_topic_meta(directory, name, partitions, config)
        topic = self._open_topic(directory, name, partitions, config)
        fsync_dir(self._path("topics"))
        self._topics[name] = topic
        return topic

    def get_or_create_topic(
        self, name: str, partitions: int = 1, config: LogConfig | None = None
    ) -> Topic:
        topic = self._topics.get(name)
        return topic if topic is not None else self.create_topic(name, partitions, config)

    def topic(self, name: str) -> Topic | None:
        return self._topics.get(name)

    def topics(self) -> Iterator[Topic]:
        return iter(list(self._topics.values()))

    def delete_topic(self, name: str) -> bool:
        """Delete a topic and its files; False when there is no such topic."""
        self._check_open()
        topic = self._topics.pop(name, None)
        if topic is None:
            return False
        for part in topic.partitions:
            part.close()
        self._to_trash(topic.directory)
        self._empty_trash()
        return True

    def _to_trash(self, directory: str) -> None:
        target = self._path("trash", f"{time.time_ns()}-{os.path.basename(directory)[:100]}")
        os.replace(directory, target)
        fsync_dir(os.path.dirname(directory))

    def _empty_trash(self) -> None:
        trash = self._path("trash")
        for entry in os.listdir(trash):
            shutil.rmtree(os.path.join(trash, entry), ignore_errors=True)

    # -------------------------------------------------------------- internal
    def internal_log(self, name: str, config: LogConfig | None = None) -> PartitionLog:
        """A single-partition log of the manager's own (not listed among topics)."""
        self._check_open()
        existing = self._internal.get(name)
        if existing is not None:
            return existing
        part = PartitionLog(
            self._path("internal", escape_name(name)),
            config or self.default_config,
            clean=self.recovered_cleanly,
            committer=self.committer,
            clock_ms=self.clock_ms,
        )
        self._internal[name] = part
        return part

    def offsets_store(self, name: str = "offsets", config: LogConfig | None = None) -> OffsetsStore:
        """The compacted key -> value store kept in internal/<name>."""
        return OffsetsStore(self.internal_log(name, config), clock_ms=self.clock_ms)

    # ------------------------------------------------------------ upkeep
    @property
    def stats(self) -> LogStats:
        """Append, fsync and commit-round histograms of every log here (for metrics)."""
        return self.committer.stats

    def all_logs(self) -> Iterator[PartitionLog]:
        for topic in list(self._topics.values()):
            yield from topic.partitions
        yield from list(self._internal.values())

    def checkpoint(self) -> None:
        """Write every partition's recovery point (call now and then, and at close)."""
        for part in self.all_logs():
            part.checkpoint()

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Apply each topic's age and size retention; returns segments deleted."""
        return sum(part.apply_retention(now_ms) for part in self.all_logs())

    # ------------------------------------------------------------- lifecycle
    async def aclose(self) -> None:
        """Close after the running commit round, from inside the event loop."""
        await self.committer.wait_idle()
        self.close()

    def close(self) -> None:
        """Flush and close every log, then leave the clean-shutdown marker."""
        if self._closed:
            return
        for part in self.all_logs():
            part.close()
        self._closed = True
        with open(self._path(CLEAN_SHUTDOWN_FILE), "wb") as f:
            os.fsync(f.fileno())
        fsync_dir(self.data_dir)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"log manager for {self.data_dir} is closed")

    def __enter__(self) -> LogManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
