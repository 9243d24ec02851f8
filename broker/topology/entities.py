"""The entities of a definitions document, each with an identity and the settings that matter.

A plan compares the file's document with the broker's, entity by entity.
Both come as RabbitMQ definitions, but written by different hands: a file
may leave out defaults, RabbitMQ 3.10 writes tags as a string, a file may
give a password where the broker keeps only its hash. So each entity is
read into the same comparable form here, and two entities with the same
`key` differ exactly when `differences` says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..users import SHA256, check_password

# Dependency order: each kind may refer to the kinds before it.
KINDS = ("vhost", "user", "permission", "exchange", "queue", "binding")
SECTIONS = {"vhost": "vhosts", "user": "users", "permission": "permissions",
            "exchange": "exchanges", "queue": "queues", "binding": "bindings"}  # fmt: skip
DEFAULT_VHOST = "/"


def is_builtin_exchange(name: str) -> bool:
    """The default exchange and the amq.* ones exist in every vhost and are never declared."""
    return name == "" or name.startswith("amq.")


def canonical(value: Any) -> str:
    """One spelling of a JSON value, so equal arguments compare equal (1.0 is 1, keys sorted)."""
    return json.dumps(_integral(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def tags_of(value: Any, ordered: bool = False) -> list[str]:
    """Tags as a list, from a list or RabbitMQ 3.10's comma-separated string.

    Sorted for comparing (tags are a set); as written for sending, so a
    user's tags are listed back in the order the file gave them.
    """
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return []
    tags = list(dict.fromkeys(str(tag).strip() for tag in value if str(tag).strip()))
    return tags if ordered else sorted(tags)


@dataclass(frozen=True)
class BindingName:
    """A binding has no name: it is its two ends, its routing key and its arguments."""

    source: str
    destination_type: str
    destination: str
    routing_key: str
    arguments: str  # canonical JSON

    def __str__(self) -> str:
        text = f"'{self.source}' -> {self.destination_type} '{self.destination}'"
        if self.routing_key:
            text += f" (routing key '{self.routing_key}')"
        if self.arguments != "{}":
            text += f" (arguments {self.arguments})"
        return text

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "destination_type": self.destination_type,
                "destination": self.destination, "routing_key": self.routing_key,
                "arguments": json.loads(self.arguments)}  # fmt: skip


@dataclass(frozen=True)
class Entity:
    """One item of a definitions document. `declared` is False for a vhost the
    file only refers to (an entity's vhost): it must exist, its settings are not the file's."""

    kind: str
    vhost: str | None
    name: Any  # str, (for a permission) the user's name, or a BindingName
    item: dict[str, Any] = field(compare=False, hash=False)
    declared: bool = field(default=True, compare=False)

    @property
    def key(self) -> tuple[str, str | None, Any]:
        return (self.kind, self.vhost, self.name)

    def sort_key(self) -> tuple[int, str, str]:
        return (KINDS.index(self.kind), self.vhost or "", str(self.name))

    def touches(self, kind: str, vhost: str | None, name: str) -> bool:
        """A binding whose source or destination is this exchange or queue."""
        if self.kind != "binding" or self.vhost != vhost:
            return False
        b = self.name
        return (kind == "exchange" and b.source == name) or (b.destination_type == kind and b.destination == name)

    def label(self) -> str:
        where = f" in vhost '{self.vhost}'"
        if self.kind in ("vhost", "user"):
            return f"{self.kind} '{self.name}'"
        if self.kind == "permission":
            return f"permission of user '{self.name}'{where}"
        if self.kind == "binding":
            return f"binding {self.name}{where}"
        return f"{self.kind} '{self.name}'{where}"

    def settings(self) -> dict[str, Any]:
        """What is compared, with RabbitMQ's defaults filled in (passwords apart)."""
        item = self.item
        if self.kind == "vhost":
            metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
            return {"description": item.get("description", metadata.get("description")) or "",
                    "tags": tags_of(item.get("tags", metadata.get("tags")))}  # fmt: skip
        if self.kind == "user":
            return {"tags": tags_of(item.get("tags"))}
        if self.kind == "permission":
            return {k: item.get(k, "") for k in ("configure", "write", "read")}
        if self.kind == "exchange":
            return {"type": item.get("type", "direct"), "durable": item.get("durable", True),
                    "auto_delete": item.get("auto_delete", False),
                    "internal": item.get("internal", False),
                    "arguments": item.get("arguments") or {}}  # fmt: skip
        if self.kind == "queue":
            return {"durable": item.get("durable", True), "auto_delete": item.get("auto_delete", False),
                    "arguments": item.get("arguments") or {}}  # fmt: skip
        return {}

    def as_json(self) -> dict[str, Any]:
        name = self.name.as_json() if isinstance(self.name, BindingName) else self.name
        return {"kind": self.kind, "vhost": self.vhost, "name": name}


def differences(desired: Entity, live: Entity) -> list[str]:
    """What would change, one `key: old -> new` each; empty when they are equivalent."""
    if not desired.declared:
        return []
    want, have = desired.settings(), live.settings()
    out: list[str] = []
    for key, new in want.items():
        old = have.get(key)
        if key == "arguments":
            out += _argument_differences(old or {}, new)
        elif canonical(old) != canonical(new):
            out.append(f"{key}: {_show(old)} -> {_show(new)}")
    if desired.kind == "user" and not _same_password(desired.item, live.item):
        out.append("password: changes")
    return out


def _argument_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if key not in new:
            out.append(f"arguments.{key}: {_show(before)} -> (none)")
        elif key not in old:
            out.append(f"arguments.{key}: (none) -> {_show(after)}")
        elif canonical(before) != canonical(after):
            out.append(f"arguments.{key}: {_show(before)} -> {_show(after)}")
    return out


def _same_password(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    """A hash must be the same hash; a password must match the live hash; neither: no opinion."""
    live_hash, live_algorithm = live.get("password_hash") or "", live.get("hashing_algorithm") or SHA256
    if desired.get("password_hash") is not None:
        return (desired["password_hash"] == live_hash
                and (desired.get("hashing_algorithm") or SHA256) == live_algorithm)  # fmt: skip
    if desired.get("password") is not None:
        return check_password(live_hash, desired["password"], live_algorithm)
    return True


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return canonical(value)


def entities(doc: dict[str, Any], kind: str) -> Iterator[Entity]:
    """The entities of one kind in a definitions document (an item's vhost defaults to "/")."""
    for item in doc.get(SECTIONS[kind]) or []:
        if not isinstance(item, dict):
            continue
        vhost = None if kind in ("vhost", "user") else str(item.get("vhost", DEFAULT_VHOST))
        if kind in ("vhost", "user"):
            name: Any = str(item.get("name", ""))
        elif kind == "permission":
            name = str(item.get("user", ""))
        elif kind == "binding":
            name = BindingName(
                str(item.get("source", "")), str(item.get("destination_type", "queue")),
                str(item.get("destination", "")), str(item.get("routing_key", "")),
                canonical(item.get("arguments") or {}),
            )  # fmt: skip
        else:
            name = str(item.get("name", ""))
        yield Entity(kind, vhost, name, item)
