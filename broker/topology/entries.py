"""Entities in definitions form, each with where it came from.

Both input formats (the friendly YAML and a RabbitMQ definitions document)
become a list of `Entry`: one vhost, user, permission, exchange, queue or
binding, in exactly the form of RabbitMQ's `/api/definitions`, plus the file
location of the entity and of each of its fields. Checks then work on one
form and still point at the line (and key) the user wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

KINDS = ("vhost", "user", "permission", "exchange", "queue", "binding")
SECTIONS = {"vhost": "vhosts", "user": "users", "permission": "permissions",
            "exchange": "exchanges", "queue": "queues", "binding": "bindings"}  # fmt: skip
KIND_OF_SECTION = {section: kind for kind, section in SECTIONS.items()}


@dataclass
class Entry:
    """One entity: `body` in definitions form; `path`/`line` where it was written.

    `fields` maps a definitions field (`durable`, `arguments.x-message-ttl`)
    to the key path and line that set it, when that differs from the
    entity's own (a friendly key such as `ttl`, or a retry entry's delay).
    """

    kind: str
    body: dict[str, Any]
    path: str
    line: int | None
    fields: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    # Where every field not in `fields` was set, when not under `path` (an expanded retry entry).
    fallback: tuple[str, int | None] | None = None

    def at(self, field_name: str) -> tuple[str, int | None]:
        """The key path and line of one field (the entity's own when not recorded)."""
        if field_name in self.fields:
            return self.fields[field_name]
        return self.fallback or (f"{self.path}.{field_name}", self.line)

    @property
    def identity(self) -> tuple[Any, ...]:
        return identity(self.kind, self.body)

    def describe(self) -> str:
        return describe(self.kind, self.body)


def identity(kind: str, body: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two entities the same one (a second declaration of it, not a new one)."""
    if kind in ("vhost", "user"):
        return (body.get("name"),)
    if kind == "permission":
        return (body.get("vhost"), body.get("user"))
    if kind in ("exchange", "queue"):
        return (body.get("vhost"), body.get("name"))
    return binding_identity(body)


def binding_identity(binding: dict[str, Any]) -> tuple[Any, ...]:
    """A binding's identity and sort key: vhost, source, destination type and name, key, arguments."""
    return (
        binding.get("vhost"), binding.get("source"), binding.get("destination_type"),
        binding.get("destination"), binding.get("routing_key"), arguments_json(binding.get("arguments")),
    )  # fmt: skip


def arguments_json(arguments: Any) -> str:
    return json.dumps(arguments, sort_keys=True, default=str)


def describe(kind: str, body: dict[str, Any]) -> str:
    vhost = body.get("vhost")
    if kind in ("vhost", "user"):
        return f"{kind} '{body.get('name')}'"
    if kind == "permission":
        return f"permission of user '{body.get('user')}' in vhost '{vhost}'"
    if kind in ("exchange", "queue"):
        return f"{kind} '{body.get('name')}' in vhost '{vhost}'"
    return (
        f"binding from exchange '{body.get('source')}' to {body.get('destination_type')} "
        f"'{body.get('destination')}' with routing key '{body.get('routing_key')}' "
        f"in vhost '{vhost}'"
    )


def sort_key(kind: str, body: dict[str, Any]) -> tuple[Any, ...]:
    """Definitions lists are sorted by (vhost, name); bindings by their identity."""
    if kind in ("vhost", "user"):
        return (str(body.get("name")),)
    if kind == "permission":
        return (str(body.get("vhost")), str(body.get("user")))
    if kind in ("exchange", "queue"):
        return (str(body.get("vhost")), str(body.get("name")))
    return tuple(str(part) for part in binding_identity(body))


def differences(first: dict[str, Any], second: dict[str, Any]) -> str:
    """`durable: true vs false, arguments.x-message-ttl: 1000 vs none`: how two bodies differ."""
    out = []
    for key in dict.fromkeys([*first, *second]):
        a, b = first.get(key), second.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in dict.fromkeys([*a, *b]):
                if not _same(a.get(sub, _NONE), b.get(sub, _NONE)):
                    out.append(
                        f"{key}.{sub}: {_show(a.get(sub, _NONE))} vs {_show(b.get(sub, _NONE))}"
                    )
        elif not _same(a, b):
            out.append(f"{key}: {_show(a)} vs {_show(b)}")
    return ", ".join(out)


_NONE = object()


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _show(value: Any) -> str:
    if value is _NONE:
        return "none"
    return json.dumps(value, default=str)


def to_definitions(entries: list[Entry]) -> dict[str, list[dict[str, Any]]]:
    """The definitions document of entries (already free of duplicates), sorted."""
    doc: dict[str, list[dict[str, Any]]] = {SECTIONS[kind]: [] for kind in KINDS}
    for entry in entries:
        body = entry.body
        if isinstance(body.get("arguments"), dict):
            body = {**body, "arguments": dict(sorted(body["arguments"].items()))}
        doc[SECTIONS[entry.kind]].append(body)
    for kind in KINDS:
        doc[SECTIONS[kind]].sort(key=lambda body, kind=kind: sort_key(kind, body))
    return doc
