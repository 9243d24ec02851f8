"""Shared helpers of the two readers: sections, unknown keys, and problems with lines."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

from .problems import Problem
from .source import KeyPath, Lines, format_path

EXCLUSIVE_QUEUE = (
    "a topology cannot declare an exclusive queue: an exclusive queue belongs to the "
    "connection that declares it and goes with it"
)


class Reader:
    """Collects problems for one document, each located through its key path."""

    def __init__(self, file: str, lines: Lines | None = None) -> None:
        self.file = file
        self.lines = lines or Lines()
        self.problems: list[Problem] = []

    def line(self, path: KeyPath) -> int | None:
        return self.lines.of(path)

    def where(self, path: KeyPath) -> tuple[str, int | None]:
        return format_path(path), self.line(path)

    def problem(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.file, self.line(path), format_path(path), message))

    def items(self, doc: dict[str, Any], section: str) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
        """(path, item) of each mapping in a section; anything else there is a problem."""
        value = doc.get(section)
        if value is None:
            return
        if not isinstance(value, list):
            self.problem((section,), f"must be a list, not {type_name(value)}")
            return
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield (section, i), item
            else:
                self.problem((section, i), f"must be a mapping of keys, not {type_name(item)}")

    def unknown_keys(self, item: dict[str, Any], path: KeyPath, known: Iterable[str]) -> None:
        known = list(known)
        for key in item:
            if key not in known:
                self.problem((*path, key), unknown_key_message(key, known))


def unknown_key_message(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
    return f"unknown key '{key}'{hint}"


def type_name(value: Any) -> str:
    """The YAML name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
