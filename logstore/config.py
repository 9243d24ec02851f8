"""Per-topic settings of the log: segment size and age, retention, durability."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

FSYNC_POLICIES = ("always", "interval", "never")


@dataclass(frozen=True)
class LogConfig:
    """How a topic's partitions roll, retain and reach the disk.

    fsync:
      always    every append is durable after the next group commit (one fsync
                covers all appends since the last one; callers await it);
      interval  a commit runs at most fsync_interval_ms after an append;
      never     the OS decides; appends count as durable at once (rolled
                segments and a clean close are still fsynced).
    Retention values of -1 mean unlimited.
    """

    segment_bytes: int = 64 * 1024 * 1024
    segment_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    retention_ms: int = -1
    fsync: str = "always"
    fsync_interval_ms: int = 1000
    index_interval_bytes: int = 4096

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {self.fsync!r}")
        if self.segment_bytes < 64:
            raise ValueError(f"segment_bytes must be at least 64, not {self.segment_bytes}")
        if self.segment_ms <= 0:
            raise ValueError(f"segment_ms must be positive, not {self.segment_ms}")
        if self.fsync_interval_ms <= 0:
            raise ValueError(f"fsync_interval_ms must be positive, not {self.fsync_interval_ms}")
        if self.index_interval_bytes <= 0:
            raise ValueError(
                f"index_interval_bytes must be positive, not {self.index_interval_bytes}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown log settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def replace(self, **changes: Any) -> LogConfig:
        return dataclasses.replace(self, **changes)
