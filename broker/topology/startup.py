"""`warrenmq serve --topology FILE`: the file's entities exist before the first client connects.

The broker applies the file to itself after its stored definitions are
loaded and before its listeners open, through the definitions import of the
management API (as an administrator, with no HTTP request). It only ever
adds: what exists and matches is left alone, and something that exists
with other settings stops the start, naming the file:line, because
changing it (a queue's TTL, say) would mean deleting it and its messages,
which is an operator's decision (`warrenmq topology apply --replace`), not
a side effect of a restart.
"""

from __future__ import annotations

import logging
from typing import Any

from ..management.definitions import export_all, import_into, internal_administrator
from ..management.errors import ApiError
from ..management.views import Views
from .desired import Desired, read_topology
from .entities import SECTIONS
from .plan import Change, make_plan

log = logging.getLogger("warrenmq.topology")


class StartupRefused(Exception):
    """The broker must not start; the message names every problem, one a line."""


def load_for_start(path: str) -> Desired:
    """The file, or StartupRefused listing its problems."""
    try:
        return read_topology(path)
    except ValueError as exc:  # TopologyError: its problems, one a line
        raise StartupRefused(f"cannot use topology {path}:\n{exc}") from None
    except OSError as exc:
        raise StartupRefused(f"cannot read topology {path}: {exc.strerror or exc}") from None


def apply_at_start(broker: Any, desired: Desired) -> None:
    """Create what the file has and the broker lacks; StartupRefused at any conflict."""
    live = export_all(broker, Views)
    plan = make_plan(desired.definitions, live, locate=desired.locate)
    conflicts = plan.of("change", "replace")
    if conflicts:
        lines = [f"{_where(c)}{c.entity.label()} exists with other settings: "
                 f"{'; '.join(c.differences)}" for c in conflicts]  # fmt: skip
        raise StartupRefused("\n".join([
            *lines, "The broker does not change existing entities at start; change the file, or apply "
                    "it with `warrenmq topology apply --replace` to a running broker.",
        ]))  # fmt: skip
    caller = internal_administrator(broker)
    creates = plan.of("create")
    for change in creates:  # already in dependency order
        entity = change.entity
        try:
            import_into(broker, caller, {SECTIONS[entity.kind]: [entity.item]})
        except ApiError as exc:
            raise StartupRefused(f"{_where(change)}{entity.label()}: {exc.reason}") from None
    log.info("topology %s: %d entities created, the others were there already", desired.source,
             len(creates))  # fmt: skip


def _where(change: Change) -> str:
    return f"{change.where[0]}:{change.where[1]}: " if change.where is not None else ""
