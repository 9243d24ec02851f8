"""A topic: a name, its settings, and its partitions, kept in one directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .config import LogConfig
from .fileio import write_file_atomic
from .log import PartitionLog

META_FILE = "topic.json"


@dataclass
class Topic:
    """A named set of partitions sharing one LogConfig."""

    name: str
    directory: str
    config: LogConfig
    partitions: list[PartitionLog] = field(default_factory=list)

    def partition(self, number: int) -> PartitionLog:
        return self.partitions[number]

    def __len__(self) -> int:
        return len(self.partitions)


def write_topic_meta(directory: str, name: str, partitions: int, config: LogConfig) -> None:
    body = {"name": name, "partitions": partitions, "config": config.to_dict()}
    write_file_atomic(os.path.join(directory, META_FILE), json.dumps(body).encode("utf-8"))


def read_topic_meta(directory: str) -> tuple[str, int, LogConfig] | None:
    """(name, partition count, config), or None when the file is missing or unreadable."""
    try:
        with open(os.path.join(directory, META_FILE), encoding="utf-8") as f:
            body = json.load(f)
        return body["name"], int(body["partitions"]), LogConfig.from_dict(body["config"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
