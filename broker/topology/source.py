"""Reading a topology's text: the values, and the line every key and item came from.

PyYAML's node tree knows lines; its plain values do not. We walk the nodes
once, building the values and a map from key path (`("queues", 2, "ttl")`)
to line, so every later check can say where a problem is. JSON is YAML, so a
RabbitMQ definitions export reads the same way. Duplicate keys, which
PyYAML would silently resolve to the last, are problems here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .problems import Problem

KeyPath = tuple[str | int, ...]


@dataclass
class Lines:
    """Key path -> line (1-based); a path not recorded takes the line of its nearest parent."""

    lines: dict[KeyPath, int] = field(default_factory=dict)

    def of(self, path: KeyPath) -> int | None:
        while path not in self.lines:
            if not path:
                return None
            path = path[:-1]
        return self.lines[path]


def format_path(path: KeyPath) -> str:
    """`queues[2].ttl` for ("queues", 2, "ttl")."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_text(text: str, file: str) -> tuple[Any, Lines, list[Problem]]:
    """The document's value and lines; a syntax error is a problem with the error's line."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = f"not valid YAML: {problem}" + (f" ({context})" if context else "")
        return None, Lines(), [Problem(file, line, "", message)]
    finally:
        loader.dispose()
    lines = Lines()
    problems: list[Problem] = []
    if root is None:
        return None, lines, problems
    value = _Walker(loader, file, lines, problems).walk(root, ())
    return value, lines, problems


class _Walker:
    def __init__(
        self, loader: yaml.SafeLoader, file: str, lines: Lines, problems: list[Problem]
    ) -> None:
        self.loader, self.file, self.lines, self.problems = loader, file, lines, problems

    def walk(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.problems.append(
                Problem(
                    self.file,
                    node.start_mark.line + 1,
                    format_path(path),
                    f"not valid YAML: {problem}",
                )
            )
            return None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # `<<: *anchor` merge keys
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = (
                self.walk(key_node, (*path, "<key>"))
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                self.problems.append(Problem(self.file, line, format_path(path),
                                             f"keys must be strings, not {key!r}"))  # fmt: skip
                continue
            if key in first_line:
                self.problems.append(Problem(
                    self.file, line, format_path((*path, key)),
                    f"duplicate key (first at line {first_line[key]})",
                ))  # fmt: skip
                continue
            first_line[key] = line
            self.lines.lines[(*path, key)] = line
            out[key] = self.walk(value_node, (*path, key))
        self.lines.lines.pop((*path, "<key>"), None)
        return out
