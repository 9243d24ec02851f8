"""What applying a topology would do to a broker: the difference of two definitions documents.

The desired document is the file's; the live one is the broker's
`GET /api/definitions`. Exchanges, queues, bindings (and permissions) are
compared in the vhosts the file names (its `vhosts` and every entity's
vhost), so a file about one application's queues never touches another's.
Vhosts, users and permissions are compared only when the file has that
section (a section that is empty counts as left out); with a `vhosts` or
`users` section, the file lists all of them.

RabbitMQ refuses to redeclare a queue or an exchange with other settings,
so such a difference is a *replace* (delete, then create): a replaced queue
loses its messages, and the bindings of a replaced queue or exchange go
with it, so the plan re-creates the ones the file has. Live entities the
file does not have are listed and kept, or deleted with `prune`, except
what the broker needs or the person running the plan needs to finish it:
the built-in exchanges, vhost "/", the running user and its permissions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .entities import (
    DEFAULT_VHOST,
    KINDS,
    SECTIONS,
    Entity,
    differences,
    entities,
    is_builtin_exchange,
)

Location = tuple[str, int]
Locate = Callable[[Entity], Location | None]
ACTIONS = ("create", "change", "replace", "delete", "keep")
PREFIXES = {"create": "+", "change": "~", "replace": "-/+", "delete": "-", "keep": " "}
KEPT = "not in the file (kept; --prune deletes them)"
FULL_PERMISSIONS = {"configure": ".*", "write": ".*", "read": ".*"}


@dataclass(frozen=True)
class Change:
    """One line of a plan. `entity` is the file's for create/change/replace, the broker's otherwise."""

    action: str
    entity: Entity
    live: Entity | None = None
    differences: tuple[str, ...] = ()
    note: str = ""
    where: Location | None = None

    def describe(self) -> str:
        """The plan's line: prefix, entity, the file:line it comes from, what changes."""
        text = f"{PREFIXES[self.action]} {self.entity.label()}"
        if self.where is not None:
            text += f" ({self.where[0]}:{self.where[1]})"
        details = list(self.differences)
        if self.note:
            details.append(self.note)
        if self.action == "keep":
            details.append(KEPT)
        return text + (": " + "; ".join(details) if details else "")

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, **self.entity.as_json()}
        out["file"], out["line"] = self.where if self.where is not None else (None, None)
        out["differences"] = list(self.differences)
        out["note"] = self.note
        if self.action in ("create", "change", "replace"):
            out["desired"] = self.entity.item
        live = self.live if self.live is not None else (self.entity if self.action in ("delete", "keep") else None)
        out["live"] = live.item if live is not None else None
        return out


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    runner: str | None = None  # the user applying it: its own user is changed last

    def of(self, *actions: str) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    def counts(self) -> dict[str, int]:
        """As infrastructure tools count: a replace is one create and one delete."""
        return {"create": len(self.of("create", "replace")), "change": len(self.of("change")),
                "delete": len(self.of("delete", "replace"))}  # fmt: skip

    @property
    def empty(self) -> bool:
        return not self.of("create", "change", "replace", "delete")

    def summary(self) -> str:
        if self.empty:
            return "No changes."
        n = self.counts()
        return f"Plan: {n['create']} to create, {n['change']} to change, {n['delete']} to delete."

    def format(self) -> str:
        return "\n".join([*(c.describe() for c in self.changes), self.summary()])

    def as_json(self) -> dict[str, Any]:
        return {"changes": [c.as_json() for c in self.changes], "summary": self.counts(),
                "no_changes": self.empty}  # fmt: skip

    def to_json_text(self) -> str:
        return json.dumps(self.as_json(), indent=2, ensure_ascii=False)


def _no_location(_entity: Entity) -> Location | None:
    return None


def make_plan(desired: dict[str, Any], live: dict[str, Any], *, prune: bool = False,
              runner: str | None = None, locate: Locate = _no_location) -> Plan:  # fmt: skip
    """The changes that turn `live` into `desired`, within the file's scope (see the module doc)."""
    return _Planner(desired, live, prune, runner, locate).plan()


class _Planner:
    def __init__(self, desired: dict[str, Any], live: dict[str, Any], prune: bool,
                 runner: str | None, locate: Locate) -> None:  # fmt: skip
        self.prune, self.runner, self.locate = prune, runner, locate
        self.sections = {kind for kind in KINDS if desired.get(SECTIONS[kind])}
        self.want = {kind: {e.key: e for e in entities(desired, kind)} for kind in KINDS}
        self.have = {kind: {e.key: e for e in entities(live, kind)} for kind in KINDS}
        self.vhosts = {e.name for e in self.want["vhost"].values()} | {
            e.vhost for kind in KINDS[2:] for e in self.want[kind].values()
        }
        for name in sorted(self.vhosts - {e.name for e in self.want["vhost"].values()}):
            self.want["vhost"][("vhost", None, name)] = Entity("vhost", None, name, {"name": name},
                                                               declared=False)  # fmt: skip
        self.changes: list[Change] = []

    def plan(self) -> Plan:
        self._vhosts()
        self._users()
        self._permissions()
        replaced: list[Entity] = []
        for kind in ("exchange", "queue"):
            replaced += self._declared(kind)
        self._bindings(replaced)
        self.changes.sort(key=lambda c: (c.action == "keep", c.entity.sort_key(), c.action))
        return Plan(self.changes, self.runner)

    # ----------------------------------------------------------- helpers
    def _add(self, action: str, entity: Entity, live: Entity | None = None,
             diffs: list[str] | tuple[str, ...] = (), note: str = "") -> None:  # fmt: skip
        where = self.locate(entity) if action in ("create", "change", "replace") else None
        self.changes.append(Change(action, entity, live, tuple(diffs), note, where))

    def _extra(self, entity: Entity, protected: bool = False) -> None:
        """A live entity the file does not have."""
        if protected:
            return
        self._add("delete" if self.prune else "keep", entity)

    def _in_scope(self, entity: Entity) -> bool:
        return entity.vhost in self.vhosts

    def _compare(self, kind: str, in_place: bool) -> list[Entity]:
        """Create what is missing, change (or replace) what differs; the desired entities replaced."""
        replaced = []
        for key, want in self.want[kind].items():
            have = self.have[kind].get(key)
            if have is None:
                self._add("create", want)
                continue
            diffs = differences(want, have)
            if not diffs:
                continue
            if in_place:
                self._add("change", want, have, diffs)
            else:
                note = "replacing it deletes its messages" if kind == "queue" else ""
                self._add("replace", want, have, diffs, note)
                replaced.append(want)
        return replaced

    # ------------------------------------------------------------- kinds
    def _vhosts(self) -> None:
        self._compare("vhost", in_place=True)
        if "vhost" in self.sections:
            for key, have in self.have["vhost"].items():
                if key not in self.want["vhost"]:
                    self._extra(have, protected=have.name == DEFAULT_VHOST)

    def _users(self) -> None:
        if "user" not in self.sections:
            return
        self._compare("user", in_place=True)
        for key, have in self.have["user"].items():
            if key not in self.want["user"]:
                self._extra(have, protected=have.name == self.runner)

    def _permissions(self) -> None:
        if "permission" in self.sections:
            self._compare("permission", in_place=True)
            for key, have in self.have["permission"].items():
                if key not in self.want["permission"] and self._in_scope(have):
                    self._extra(have, protected=have.name == self.runner)
        self._runner_permissions()

    def _runner_permissions(self) -> None:
        """The management API checks an administrator's vhost permissions too (as RabbitMQ's
        does): where the running user has none and the file gives none, the plan grants them."""
        if self.runner is None:
            return
        used = {e.vhost for kind in ("exchange", "queue", "binding") for e in self.want[kind].values()}
        for vhost in sorted(used):
            key = ("permission", vhost, self.runner)
            if key in self.have["permission"] or key in self.want["permission"]:
                continue
            item = {"user": self.runner, "vhost": vhost, **FULL_PERMISSIONS}
            self._add("create", Entity("permission", vhost, self.runner, item),
                      note=f"not in the file: user '{self.runner}' needs it to apply the file")  # fmt: skip

    def _declared(self, kind: str) -> list[Entity]:
        for key in [k for k in self.want[kind] if is_builtin_exchange(k[2]) and kind == "exchange"]:
            del self.want[kind][key]  # every vhost has them; nothing to declare
        replaced = self._compare(kind, in_place=False)
        for key, have in self.have[kind].items():
            if key not in self.want[kind] and self._in_scope(have):
                self._extra(have, protected=kind == "exchange" and is_builtin_exchange(have.name))
        return replaced

    def _bindings(self, replaced: list[Entity]) -> None:
        def goes_with_replaced(binding: Entity) -> Entity | None:
            return next((r for r in replaced if binding.touches(r.kind, r.vhost, r.name)), None)

        for key, want in self.want["binding"].items():
            if key not in self.have["binding"]:
                self._add("create", want)
            elif (end := goes_with_replaced(want)) is not None:
                self._add("create", want, note=f"re-created: its {end.kind} '{end.name}' is replaced")
        for key, have in self.have["binding"].items():
            if key in self.want["binding"] or not self._in_scope(have):
                continue
            end = goes_with_replaced(have)
            if end is not None and not self.prune:
                self._add("delete", have, note=f"goes with the replaced {end.kind} '{end.name}'")
            else:
                self._extra(have)
