"""`load`: a topology file -> a checked `Topology` (or every problem in it at once).

The file is either the YAML format (docs/topology.md) or a RabbitMQ
definitions document, told apart by content, not by name: JSON whose
object has `rabbit_version`, `rabbitmq_version`, `queues`, `exchanges` or
`bindings`, or YAML with a version key, is a definitions document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .defdoc import DefinitionsReader
from .entries import Entry, binding_identity, identity, to_definitions
from .normalize import FriendlyReader
from .problems import Problem, TopologyError
from .retry import RetryLadder, expand_retries
from .source import read_text
from .superstream import SuperStream, expand_super_streams
from .validate import validate_entries

DEFINITIONS_MARKERS = ("rabbit_version", "rabbitmq_version", "queues", "exchanges", "bindings")
VERSION_MARKERS = ("rabbit_version", "rabbitmq_version")


@dataclass
class Topology:
    """A checked topology: its definitions, its shorthands, and where each entity was written."""

    definitions: dict[str, list[dict[str, Any]]]
    retries: list[RetryLadder] = field(default_factory=list)
    super_streams: list[SuperStream] = field(default_factory=list)
    file: str = "<topology>"
    # User -> the password the file gave in clear (definitions keep only a salted hash).
    passwords: dict[str, str] = field(default_factory=dict)
    _locations: dict[tuple[Any, ...], tuple[str, int | None]] = field(
        default_factory=dict, repr=False
    )

    def location(self, kind: str, vhost: str | None, name: Any) -> tuple[str, int] | None:
        """(file, line) of an entity; None when unknown (or the entity did not come from text).

        kind is vhost, user, permission, exchange, queue or binding. name is the
        entity's name; a permission's is its user; a binding's is the binding
        itself (a dict as in `definitions["bindings"]`). vhost is ignored for
        vhosts and users.
        """
        if kind == "binding":
            key: tuple[Any, ...] = ("binding", *binding_identity({**name, "vhost": vhost}))
        elif kind in ("vhost", "user"):
            key = (kind, name)
        else:
            key = (kind, vhost, name)
        where = self._locations.get(key)
        if where is None or where[1] is None:
            return None
        return where[0], where[1]


def _json_definitions(text: str) -> dict[str, Any] | None:
    """The document, when text is JSON of a definitions export."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if isinstance(parsed, dict) and any(key in parsed for key in DEFINITIONS_MARKERS):
        return parsed
    return None


def is_definitions_document(text: str, value: Any) -> bool:
    """A RabbitMQ definitions export, by content: see the module docstring."""
    if not isinstance(value, dict):
        return False
    return any(key in value for key in VERSION_MARKERS) or _json_definitions(text) is not None


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


def _topology(entries: list[Entry], retries: list[RetryLadder], super_streams: list[SuperStream],
              file: str, passwords: dict[str, str]) -> Topology:  # fmt: skip
    locations: dict[tuple[Any, ...], tuple[str, int | None]] = {}
    for entry in entries:
        key = (entry.kind, *identity(entry.kind, entry.body))
        locations.setdefault(key, (file, entry.line))
    return Topology(
        to_definitions(entries), list(retries), list(super_streams), file, passwords, locations
    )


def load(source: str | Path = "<topology>", *, text: str | None = None) -> Topology:
    """Read, expand and check a topology; TopologyError lists every problem found.

    source is the file's path (read unless text is given) and the name
    problems carry.
    """
    file = str(source)
    if text is None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise TopologyError(
                [Problem(file, None, "", f"cannot read the topology: {exc.strerror}")]
            ) from None
    as_json = _json_definitions(text)
    value, lines, problems = read_text(text, file)
    if as_json is not None:
        # JSON's own reading: YAML 1.1 reads some JSON differently (1e3, escaped surrogate pairs).
        value, problems = as_json, [p for p in problems if "not valid YAML" not in p.message]
    elif problems and value is None:
        raise TopologyError(problems)
    retries: list[RetryLadder] = []
    super_streams: list[SuperStream] = []
    if as_json is not None or is_definitions_document(text, value):
        reader: DefinitionsReader | FriendlyReader = DefinitionsReader(file, lines)
        reader.read(value)
    else:
        reader = FriendlyReader(file, lines)
        reader.read(value)
        retries = reader.retries
        super_streams = reader.super_streams
    problems += reader.problems
    entries = reader.entries
    problems += expand_retries(retries, entries, file)
    problems += expand_super_streams(super_streams, entries, file)
    unique, found = validate_entries(entries, file)
    problems += found
    if problems:
        raise TopologyError(_sorted(problems))
    return _topology(unique, retries, super_streams, file, reader.passwords)


def validate_definitions(
    definitions: dict[str, Any], *, file: str = "<definitions>"
) -> list[Problem]:
    """Every problem of a definitions document that did not come from a file (lines are None)."""
    reader = DefinitionsReader(file)
    reader.read(definitions)
    _, found = validate_entries(reader.entries, file)
    return _sorted(reader.problems + found)
