"""Shared helpers for the log tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from warrenmq.logstore import LogConfig, LogManager


@pytest.fixture
def make_manager(tmp_path: Path) -> Iterator:
    opened: list[LogManager] = []

    def make(config: LogConfig | None = None, **kwargs) -> LogManager:
        manager = LogManager(str(tmp_path / "data"), config or LogConfig(fsync="never"), **kwargs)
        opened.append(manager)
        return manager

    yield make
    for manager in opened:
        with contextlib.suppress(Exception):  # already closed, or crashed on purpose
            manager.close()
