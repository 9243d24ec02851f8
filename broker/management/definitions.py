"""Definitions export and import: RabbitMQ's JSON document of users, vhosts, permissions and topology.

Entities are listed in name order, so an export does not depend on the
order things were declared (or replayed at start) in. Only what survives a
restart is exported, as RabbitMQ does: durable
exchanges (not the default and amq.* ones), durable queues, and bindings
whose two ends are durable. Import creates what is missing and checks what
exists (a redeclare with other settings is a 400, as over AMQP), in the
order users, vhosts, permissions, exchanges, queues, bindings. Policies,
parameters and topic permissions are not features of this broker: they are
exported empty and skipped (with a warning in the log) on import.
"""

from __future__ import annotations

import logging
from typing import Any

from ..server import VERSION
from ..users import UnknownHashingAlgorithm, User
from . import operations
from .auth import Caller
from .bindings import vhost_bindings
from .convert import parse_bool, parse_tags, table, to_json
from .errors import ApiError, bad_request
from .request import NO_CONTENT, Answer, ApiRequest
from .views import API_VERSION

log = logging.getLogger("warrenmq.management")
UNSUPPORTED = ("policies", "parameters", "global_parameters", "topic_permissions")
INTERNAL_USER = "rmq-internal"


# ------------------------------------------------------------------ export
def _queues(vhost: Any, with_vhost: bool) -> list[dict[str, Any]]:
    out = []
    for queue in sorted(vhost.queues.values(), key=lambda q: q.name):
        if queue.durable and queue.exclusive_owner is None:
            item = {"name": queue.name, "durable": True, "auto_delete": queue.auto_delete,
                    "arguments": to_json(queue.arguments)}  # fmt: skip
            out.append({**item, "vhost": vhost.name} if with_vhost else item)
    return out


def _exchanges(vhost: Any, with_vhost: bool) -> list[dict[str, Any]]:
    out = []
    for x in sorted(vhost.exchanges.values(), key=lambda x: x.name):
        if x.durable and not x.builtin:
            item = {"name": x.name, "type": x.type, "durable": True, "auto_delete": x.auto_delete,
                    "internal": x.internal, "arguments": to_json(x.arguments)}  # fmt: skip
            out.append({**item, "vhost": vhost.name} if with_vhost else item)
    return out


def _bindings(vhost: Any, with_vhost: bool) -> list[dict[str, Any]]:
    out = []
    for ref in vhost_bindings(vhost):
        if ref.source == "":
            continue
        dests = vhost.queues if ref.destination_type == "queue" else vhost.exchanges
        dest, source = dests.get(ref.destination), vhost.exchanges.get(ref.source)
        if dest is None or source is None or not (dest.durable and source.durable):
            continue
        item = {"source": ref.source, "destination": ref.destination,
                "destination_type": ref.destination_type, "routing_key": ref.routing_key,
                "arguments": to_json(ref.arguments)}  # fmt: skip
        out.append({**item, "vhost": vhost.name} if with_vhost else item)
    return out


def export_all(broker: Any, views: Any) -> dict[str, Any]:
    vhosts = [broker.vhosts[n] for n in sorted(broker.vhosts)]
    users = broker.users
    return {
        "rabbit_version": API_VERSION,
        "rabbitmq_version": API_VERSION,
        "product_name": "warrenmq",
        "product_version": VERSION,
        "users": [views.user(users.users[n]) for n in sorted(users.users)],
        "vhosts": [{"name": v.name, "description": v.description, "tags": list(v.tags),
                    "metadata": {"description": v.description, "tags": list(v.tags)}}
                   for v in vhosts],
        "permissions": [views.permission(users.permissions[k]) for k in sorted(users.permissions)],
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        "queues": [q for v in vhosts for q in _queues(v, True)],
        "exchanges": [x for v in vhosts for x in _exchanges(v, True)],
        "bindings": [b for v in vhosts for b in _bindings(v, True)],
    }  # fmt: skip


def export_vhost(vhost: Any) -> dict[str, Any]:
    return {
        "rabbit_version": API_VERSION,
        "rabbitmq_version": API_VERSION,
        "product_name": "warrenmq",
        "product_version": VERSION,
        "parameters": [],
        "policies": [],
        "queues": _queues(vhost, False),
        "exchanges": _exchanges(vhost, False),
        "bindings": _bindings(vhost, False),
    }


# ------------------------------------------------------------------ import
def _items(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = doc.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise bad_request(f"'{key}' must be a list of objects")
    return items


def _field(item: dict[str, Any], key: str, what: str) -> Any:
    if key not in item:
        raise bad_request(f"{what} without '{key}': {item}")
    return item[key]


def import_definitions(req: ApiRequest, doc: dict[str, Any], only_vhost: Any = None) -> None:
    import_into(req.broker, req.caller.trusting(), doc, only_vhost)


def internal_administrator(broker: Any) -> Caller:
    """The caller of an import with no HTTP request (a topology file at start): an
    administrator, trusted as an importing one is; RabbitMQ names it rmq-internal."""
    user = User(INTERNAL_USER, password_hash="", tags=["administrator"])
    return Caller(broker, user).trusting()


def import_into(broker: Any, caller: Caller, doc: dict[str, Any], only_vhost: Any = None) -> None:
    """Create what is missing and check what exists; ApiError (400) at the first refusal."""
    for key in UNSUPPORTED:
        if doc.get(key):
            log.warning("definitions import: skipping %d %s (not supported)", len(doc[key]), key)
    if only_vhost is None:
        for item in _items(doc, "users"):
            name = _field(item, "name", "a user")
            try:
                broker.users.put_user(
                    name, password=item.get("password"), password_hash=item.get("password_hash"),
                    hashing_algorithm=item.get("hashing_algorithm"),
                    tags=parse_tags(item.get("tags")), limits=item.get("limits") or None,
                )  # fmt: skip
            except UnknownHashingAlgorithm as exc:
                raise bad_request(f"user '{name}': unknown hashing algorithm {exc}") from None
        for item in _items(doc, "vhosts"):
            metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
            description = item.get("description", metadata.get("description", "")) or ""
            tags = parse_tags(item.get("tags", metadata.get("tags")))
            broker.add_vhost(_field(item, "name", "a vhost"), description, tuple(tags))
        for item in _items(doc, "permissions"):
            user, vhost = _field(item, "user", "a permission"), _field(item, "vhost", "a permission")
            if user not in broker.users.users or vhost not in broker.vhosts:
                raise bad_request(f"permission of user '{user}' in vhost '{vhost}': no such user or vhost")
            broker.users.set_permission(user, vhost, item.get("configure", ""), item.get("write", ""),
                                        item.get("read", ""))  # fmt: skip

    def vhost_of(item: dict[str, Any]) -> Any:
        if only_vhost is not None:
            return only_vhost
        name = _field(item, "vhost", "an entity")
        vhost = broker.vhosts.get(name)
        if vhost is None:
            raise bad_request(f"vhost '{name}' does not exist")
        return vhost

    for item in _items(doc, "exchanges"):
        operations.declare_exchange(
            caller, vhost_of(item), _field(item, "name", "an exchange"), item.get("type", "direct"),
            durable=parse_bool(item.get("durable"), True), auto_delete=parse_bool(item.get("auto_delete"), False),
            internal=parse_bool(item.get("internal"), False), arguments=table(item.get("arguments"), "arguments"),
        )  # fmt: skip
    for item in _items(doc, "queues"):
        operations.declare_queue(
            caller, vhost_of(item), _field(item, "name", "a queue"),
            durable=parse_bool(item.get("durable"), True), auto_delete=parse_bool(item.get("auto_delete"), False),
            arguments=table(item.get("arguments"), "arguments"),
        )  # fmt: skip
    for item in _items(doc, "bindings"):
        kind = item.get("destination_type", "queue")
        if kind not in ("queue", "exchange"):
            raise bad_request(f"binding with destination_type '{kind}'")
        operations.bind(caller, vhost_of(item), _field(item, "source", "a binding"),
                        _field(item, "destination", "a binding"), kind == "exchange",
                        item.get("routing_key", ""), table(item.get("arguments"), "arguments"))  # fmt: skip


# --------------------------------------------------------------- handlers
def get_all(req: ApiRequest) -> Any:
    req.caller.require_admin()
    return _download(req, export_all(req.broker, req.views))


def get_vhost(req: ApiRequest) -> Any:
    req.caller.require_admin()
    return _download(req, export_vhost(req.vhost()))


def _download(req: ApiRequest, doc: dict[str, Any]) -> Any:
    """`?download=name` asks for an attachment, as the management UI's export button does."""
    name = req.query.get("download")
    if not name:
        return doc
    return Answer(200, doc, {"Content-Disposition": f'attachment; filename="{name}"'})


def post_all(req: ApiRequest) -> Answer:
    req.caller.require_admin()
    _import(req, None)
    return NO_CONTENT


def post_vhost(req: ApiRequest) -> Answer:
    req.caller.require_admin()
    _import(req, req.vhost())
    return NO_CONTENT


def _import(req: ApiRequest, vhost: Any) -> None:
    try:
        import_definitions(req, req.json(), vhost)
    except ApiError as exc:
        if exc.status == 400:
            raise
        # A refused declare (say, no permission) fails the import as a whole, as a 400.
        reason = exc.reason if isinstance(exc.reason, str) else str(exc.reason)
        raise bad_request(reason) from None
