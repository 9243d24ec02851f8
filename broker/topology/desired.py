"""A topology file as the plan reads it: the desired definitions, and where each entity was written.

The loader gives the normalized definitions, with one thing adjusted here
for comparing them with a broker's: a user the file gives a `password`
keeps that password instead of the loader's hash of it, which has a fresh
salt and so never equals the broker's hash; the plan checks the password
against the broker's hash instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .entities import Entity
from .load import Topology, load


@dataclass
class Desired:
    source: str
    definitions: dict[str, Any]
    topology: Topology

    def locate(self, entity: Entity) -> tuple[str, int] | None:
        """The file and line an entity comes from (a retry entry's, for what it expands into)."""
        name = entity.item if entity.kind == "binding" else entity.name  # a binding is its body
        found = self.topology.location(entity.kind, entity.vhost, name)
        return None if found is None else (str(found[0]), int(found[1]))


def read_topology(path: str | Path, text: str | None = None) -> Desired:
    """Load a topology file (YAML or RabbitMQ definitions JSON); TopologyError on problems."""
    topology = load(path, text=text)
    doc = dict(topology.definitions)
    passwords = topology.passwords
    doc["users"] = [_with_password(user, passwords.get(user["name"])) for user in doc.get("users") or []]
    return Desired(str(path), doc, topology)


def _with_password(user: dict[str, Any], password: str | None) -> dict[str, Any]:
    if password is None:
        return user
    out = {k: v for k, v in user.items() if k != "password_hash"}
    out["password"] = password
    return out
