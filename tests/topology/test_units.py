"""Durations and sizes: what people write, what RabbitMQ takes, and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warrenmq.broker.topology.units import (
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500), ("30s", 30_000), ("10m", 600_000), ("2h", 7_200_000), ("7d", 604_800_000),
        (1500, 1500), ("1500", 1500), ("1.5s", 1500), (" 2 m ", 120_000), (0, 0), ("0s", 0),
    ],
)  # fmt: skip
def test_durations(text: object, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    "text", ["soon", "-1", -1, "1.5ms", "10 min", "1w", True, 1.5, None, "s", ""]
)
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="must be a duration such as 30s or 500ms, not "):
        parse_duration(text)


def test_bad_duration_message_quotes_the_value() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("soon")
    assert str(info.value) == "must be a duration such as 30s or 500ms, not 'soon'"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (1000, 1000), ("1000", 1000), ("1KB", 1000), ("1KiB", 1024), ("1 GiB", 1024**3),
        ("1GB", 10**9), ("2TiB", 2 * 1024**4), ("1.5KiB", 1536), ("1.5 MB", 1_500_000),
        ("3MiB", 3 * 1024**2), ("4TB", 4 * 10**12),
    ],
)  # fmt: skip
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1.1KiB", "1kb", "1 G", "lots", -5, "1.0001KB", "1B", True, 2.0])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match="must be a size such as"):
        parse_size(text)


@pytest.mark.parametrize(
    ("ms", "text"),
    [(60_000, "1m"), (1500, "1500ms"), (1000, "1s"), (86_400_000, "1d"), (90_000, "90s"),
     (3_600_000 * 25, "25h"), (0, "0s"), (7, "7ms")],
)  # fmt: skip
def test_format_duration_uses_the_largest_even_unit(ms: int, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    ("size", "written"),
    [(1024**3, "1GiB"), (10**6, "1MB"), (1536, 1536), (2048, "2KiB"),
     (1500, 1500), (1_500_000, "1500KB"), (1024_000, "1000KiB"), (0, 0), (7, 7)],
)  # fmt: skip
def test_format_size_uses_the_largest_even_unit(size: int, written: object) -> None:
    assert format_size(size) == written


@given(st.integers(min_value=0, max_value=10**15))
def test_durations_read_back(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


@given(st.integers(min_value=0, max_value=10**16))
def test_sizes_read_back(size: int) -> None:
    assert parse_size(format_size(size)) == size
