"""The leader-epoch cache of a partition: (epoch, first offset) pairs, as Kafka's.

Replication truncates a diverged follower to the end offset of the last epoch
it shares with the leader (KIP-101); the cache answers that question and is
kept in the partition's `leader-epoch-checkpoint` file.
"""

from __future__ import annotations

import os

from .fileio import write_file_atomic

FILE_NAME = "leader-epoch-checkpoint"
_VERSION = "0"


class LeaderEpochCache:
    """Ordered (epoch, start offset) entries, persisted on every change."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, FILE_NAME)
        self.entries: list[tuple[int, int]] = []
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="ascii") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return
        try:
            count = int(lines[1])
            entries = [tuple(map(int, line.split())) for line in lines[2 : 2 + count]]
        except (IndexError, ValueError):
            entries = []  # unreadable: start empty; the next assign rewrites it
        self.entries = [(e, o) for e, o in entries]

    def _save(self) -> None:
        body = [_VERSION, str(len(self.entries))] + [f"{e} {o}" for e, o in self.entries]
        write_file_atomic(self.path, ("\n".join(body) + "\n").encode("ascii"))

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else 0

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that epoch starts at start_offset (ignored unless epoch is newer)."""
        if self.entries and epoch <= self.entries[-1][0]:
            return
        self.entries.append((epoch, start_offset))
        self._save()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest epoch <= epoch, its end offset): Kafka's OffsetsForLeaderEpoch answer."""
        found = None
        for i, (e, _start) in enumerate(self.entries):
            if e <= epoch:
                found = i
        if found is None:
            return -1, -1
        e = self.entries[found][0]
        if found + 1 < len(self.entries):
            return e, self.entries[found + 1][1]
        return e, log_end_offset

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs that start at or after end_offset (the log was cut there)."""
        kept = [(e, o) for e, o in self.entries if o < end_offset]
        if kept != self.entries:
            self.entries = kept
            self._save()
