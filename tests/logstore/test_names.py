"""Client-given names never escape the data directory, and map to distinct, reversible dirs."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from warrenmq.logstore import escape_name, unescape_name

HOSTILE = [
    "../x",
    "..",
    ".",
    "",
    "a/b",
    "/etc/passwd",
    "nul\x00byte",
    "x" * 255,
    "é" * 127,
    "名前/../../キュー",
    "%2F",
    "a%2Fb",
    "~home",
    ".hidden",
    "CON",
    "trailing.",
    "\\windows\\path",
]


def test_hostile_names_stay_inside_the_data_directory(make_manager) -> None:
    manager = make_manager()
    data = os.path.realpath(manager.data_dir)
    for name in HOSTILE:
        topic = manager.create_topic(name)
        path = os.path.realpath(topic.directory)
        assert os.path.dirname(path) == os.path.join(data, "topics"), (name, path)
        assert len(os.path.basename(path).encode()) <= 255
    dirs = os.listdir(os.path.join(data, "topics"))
    assert len(dirs) == len(HOSTILE), "two names shared a directory"
    manager.close()
    reopened = make_manager()
    assert sorted(t.name for t in reopened.topics()) == sorted(HOSTILE)
    for name in HOSTILE:
        part = reopened.topic(name).partition(0)
        part.append([(1, None, name.encode("utf-8", "surrogatepass"), b"")])
        assert part.read(0, 1)[0].value == name.encode("utf-8", "surrogatepass")


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_escaping_is_safe_and_reversible(name: str) -> None:
    escaped = escape_name(name)
    assert "/" not in escaped and "\x00" not in escaped
    assert escaped not in (".", "..") and not escaped.startswith(".")
    assert len(escaped.encode()) <= 255
    back = unescape_name(escaped)
    assert back is None or back == name
    if back is None:  # shortened: the full name is kept in the topic's metadata
        assert "~" in escaped


@settings(max_examples=500)
@given(st.text(max_size=80), st.text(max_size=80))
def test_distinct_names_get_distinct_directories(a: str, b: str) -> None:
    if a != b:
        assert escape_name(a) != escape_name(b)
