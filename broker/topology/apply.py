"""Carrying out a plan through the management HTTP API, one request per entity.

Deletes run first, in reverse dependency order (bindings before their
queues, vhosts last), then creates and changes in dependency order (vhosts,
users, permissions, exchanges, queues, bindings). A replace is its delete
and its create. The running user's own user is changed last, so a new
password or tag cannot lock the apply out half way. Every request is one
that RabbitMQ's API also takes, so a plan applies to a RabbitMQ node too.

The first refused request stops the apply; the error names the entity and
the file:line it came from, and what was done before it stays done (a
second apply carries on from there, as plans are recomputed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..ctl import ApiError, CtlError, ManagementClient, api_path
from .entities import KINDS, BindingName, Entity, canonical, tags_of
from .plan import Change, Plan


class ApplyError(Exception):
    """An apply that stopped: `file:line: entity: why` (or without file:line for a live entity)."""


@dataclass(frozen=True)
class Step:
    verb: str  # "delete" or "put"
    change: Change

    def describe(self) -> str:
        done = {"create": "created", "change": "changed", "replace": "replaced", "delete": "deleted"}
        if self.verb == "delete" and self.change.action == "replace":
            return f"deleted {self.change.entity.label()} (to replace it)"
        return f"{done[self.change.action]} {self.change.entity.label()}"


def steps(plan: Plan) -> list[Step]:
    """The requests a plan makes, in the order they must run."""
    rank = {kind: i for i, kind in enumerate(KINDS)}
    deletes = sorted(plan.of("delete", "replace"), key=lambda c: -rank[c.entity.kind])
    puts = sorted(plan.of("create", "change", "replace"),
                  key=lambda c: (_is_runner(c, plan.runner), rank[c.entity.kind]))  # fmt: skip
    return [Step("delete", c) for c in deletes] + [Step("put", c) for c in puts]


def _is_runner(change: Change, runner: str | None) -> bool:
    return change.entity.kind == "user" and change.entity.name == runner


def refused_replaces(plan: Plan) -> str | None:
    """Why an apply without --replace must not run this plan, or None when it may."""
    replaces = plan.of("replace")
    if not replaces:
        return None
    lines = [f"  {c.describe()}" for c in replaces]
    return ("refusing to apply: these cannot be changed in place, only deleted and created again "
            "(a queue loses its messages); run again with --replace to do that:\n" + "\n".join(lines))  # fmt: skip


def apply_plan(client: ManagementClient, plan: Plan,
               report: Callable[[str], None] = lambda _line: None) -> int:  # fmt: skip
    """Run every step; the number of requests made. ApplyError at the first refused one."""
    done = 0
    for step in steps(plan):
        try:
            if step.verb == "delete":
                _delete_if_there(client, step.change.live or step.change.entity)
            else:
                _put(client, step.change.entity)
        except CtlError as exc:
            raise ApplyError(_where(step.change) + f"{step.change.entity.label()}: {exc}") from None
        done += 1
        report(step.describe())
    return done


def _where(change: Change) -> str:
    return f"{change.where[0]}:{change.where[1]}: " if change.where is not None else ""


# ------------------------------------------------------------ requests
def _put(client: ManagementClient, entity: Entity) -> None:
    item = entity.item
    settings = entity.settings()
    if entity.kind == "vhost":
        body: dict[str, Any] = {"name": entity.name}
        if entity.declared:
            tags = tags_of(item.get("tags", (item.get("metadata") or {}).get("tags")), ordered=True)
            body.update(description=settings["description"], tags=",".join(tags))
        client.request("PUT", api_path("vhosts", entity.name), body)
    elif entity.kind == "user":
        body = {"tags": ",".join(tags_of(item.get("tags"), ordered=True))}
        if item.get("password_hash") is not None:
            body["password_hash"] = item["password_hash"]
            if item.get("hashing_algorithm"):
                body["hashing_algorithm"] = item["hashing_algorithm"]
        elif item.get("password") is not None:
            body["password"] = item["password"]
        client.request("PUT", api_path("users", entity.name), body)
    elif entity.kind == "permission":
        client.request("PUT", api_path("permissions", entity.vhost, entity.name), settings)
    elif entity.kind in ("exchange", "queue"):
        client.request("PUT", api_path(f"{entity.kind}s", entity.vhost, entity.name), settings)
    else:
        b: BindingName = entity.name
        body = {"routing_key": b.routing_key, "arguments": item.get("arguments") or {}}
        client.request("POST", api_path("bindings", entity.vhost, "e", b.source,
                                        b.destination_type[0], b.destination), body)  # fmt: skip


def _delete_if_there(client: ManagementClient, entity: Entity) -> None:
    """Gone already is as good as deleted: an earlier step may have taken it along (the
    last binding of an auto-delete exchange, say)."""
    try:
        _delete(client, entity)
    except ApiError as exc:
        if exc.status != 404:
            raise


def _delete(client: ManagementClient, entity: Entity) -> None:
    if entity.kind in ("vhost", "user"):
        client.request("DELETE", api_path(f"{entity.kind}s", entity.name))
    elif entity.kind == "permission":
        client.request("DELETE", api_path("permissions", entity.vhost, entity.name))
    elif entity.kind in ("exchange", "queue"):
        client.request("DELETE", api_path(f"{entity.kind}s", entity.vhost, entity.name))
    else:
        b: BindingName = entity.name
        path = api_path("bindings", entity.vhost, "e", b.source, b.destination_type[0], b.destination)
        for listed in client.request("GET", path) or []:
            if (listed.get("routing_key") == b.routing_key
                    and canonical(listed.get("arguments") or {}) == b.arguments):  # fmt: skip
                # Quoted again, as rabbitmqadmin does: RabbitMQ decodes a path segment once.
                client.request("DELETE", f"{path}/{quote(listed['properties_key'], safe='')}")
                return
