"""Durations and sizes as people write them (`30s`, `1GiB`), and back.

RabbitMQ takes milliseconds and bytes; a topology file says `ttl: 30s`.
Parsing is exact (Decimal), so `1.5s` is 1500 but `0.5ms` is refused
rather than rounded. Formatting picks the largest unit that divides the
value evenly, so a value written by `dump_yaml` reads back unchanged.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

DURATION_UNITS: dict[str, int] = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
SIZE_UNITS: dict[str, int] = {
    "TiB": 1024**4, "TB": 1000**4, "GiB": 1024**3, "GB": 1000**3,
    "MiB": 1024**2, "MB": 1000**2, "KiB": 1024, "KB": 1000,
}  # fmt: skip
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
_DIGITS = re.compile(r"\d+")


def _whole(number: str, factor: int) -> int | None:
    try:
        value = Decimal(number) * factor
    except InvalidOperation:
        return None
    return int(value) if value == value.to_integral_value() else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_duration(value: Any) -> int:
    """Milliseconds from `500ms`, `30s`, `10m`, `2h`, `7d` or a bare integer (milliseconds)."""
    if _is_int(value) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text):
            return int(text)
        match = _DURATION.fullmatch(text)
        if match:
            ms = _whole(match.group(1), DURATION_UNITS[match.group(2)])
            if ms is not None:
                return ms
    raise ValueError(f"must be a duration such as 30s or 500ms, not {value!r}")


def parse_size(value: Any) -> int:
    """Bytes from a bare integer, `512KB` (powers of 1000) or `1 GiB` (powers of 1024)."""
    if _is_int(value) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text):
            return int(text)
        match = _SIZE.fullmatch(text)
        if match:
            size = _whole(match.group(1), SIZE_UNITS[match.group(2)])
            if size is not None:
                return size
    raise ValueError(
        f"must be a size such as 1048576, 512KB or 1GiB (a whole number of bytes), not {value!r}"
    )


def format_duration(ms: int) -> str:
    """`1m` for 60000, `1500ms` for 1500: the largest unit that divides ms evenly."""
    if ms == 0:
        return "0s"
    for unit, factor in DURATION_UNITS.items():
        if ms % factor == 0:
            return f"{ms // factor}{unit}"
    raise AssertionError("unreachable: ms divides every value")


def format_size(size: int) -> str | int:
    """`1GiB` for 1073741824, `1MB` for 1000000; a plain integer when no unit divides evenly."""
    if size == 0:
        return 0
    for unit, factor in SIZE_UNITS.items():
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return size
