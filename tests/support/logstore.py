"""Helpers shared by the log tests."""

from __future__ import annotations

from warrenmq.logstore import LogManager


def records(n: int, start_ts: int = 1_700_000_000_000, size: int = 100, tag: bytes = b"r"):
    """n records with distinct values and rising timestamps."""
    return [(start_ts + i, None, tag + str(i).encode() * (size // 4 + 1), b"") for i in range(n)]


def crash(manager: LogManager) -> None:
    """Drop a manager as a killed process would: no seal, no checkpoint, no marker."""
    for part in manager.all_logs():
        for seg in part.segments:
            seg.close()
