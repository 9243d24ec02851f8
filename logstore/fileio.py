"""Small file helpers shared by the log's parts."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written (a regular file rarely writes short)."""
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)
        while n < len(view):
            n += os.write(fd, view[n:])


def write_file_atomic(path: str, data: bytes, durable: bool = True) -> None:
    """Replace path with data so a crash leaves the old or the new file, never half."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path: str) -> None:
    """Make created, renamed and deleted names in a directory durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
