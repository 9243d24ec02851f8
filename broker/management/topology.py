"""Vhosts, exchanges, queues and bindings: list, show, declare, delete, bind, publish, get, purge."""

from __future__ import annotations

import urllib.parse
from typing import Any

from . import operations
from .bindings import (
    bindings_between,
    bindings_to,
    exchange_bindings,
    matches_properties_key,
    properties_key,
    vhost_bindings,
)
from .convert import (
    decode_payload,
    parse_bool,
    parse_int,
    parse_tags,
    properties_from_json,
    table,
)
from .errors import access_refused, bad_request, not_found
from .request import CREATED, NO_CONTENT, Answer, ApiRequest, created_or_updated


def _exchange_name(name: str) -> str:
    """The path spells the default exchange `amq.default`."""
    return "" if name == "amq.default" else name


# ------------------------------------------------------------------ vhosts
def list_vhosts(req: ApiRequest) -> Any:
    vhosts = req.broker.vhosts
    return req.listing([req.views.vhost(vhosts[n]) for n in req.caller.visible_vhosts()], ("name",))


def get_vhost(req: ApiRequest) -> Any:
    req.caller.require_admin()
    return req.views.vhost(req.vhost())


def put_vhost(req: ApiRequest) -> Answer:
    req.caller.require_admin()
    body = req.json()
    name = req.params["vhost"]
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    description = body.get("description", metadata.get("description", ""))
    tags = parse_tags(body.get("tags", metadata.get("tags")))
    if not isinstance(description, str):
        raise bad_request(["not_string", "description"])
    created = name not in req.broker.vhosts
    req.broker.add_vhost(name, description, tuple(tags))
    return created_or_updated(created)


def delete_vhost(req: ApiRequest) -> Answer:
    req.caller.require_admin()
    if not req.broker.delete_vhost(req.vhost().name):
        raise not_found()
    return NO_CONTENT


def vhost_permissions(req: ApiRequest) -> Any:
    req.caller.require_admin()
    vhost = req.vhost()
    perms = [p for (_u, v), p in req.broker.users.permissions.items() if v == vhost.name]
    return req.listing([req.views.permission(p) for p in perms], ("vhost", "user"))


# --------------------------------------------------------------- exchanges
def _visible(req: ApiRequest) -> list[Any]:
    """The vhosts whose contents the caller may list: the one in the path, or all it may see."""
    if "vhost" in req.params:
        req.caller.require_vhost(req.params["vhost"])
        return [req.vhost()]
    caller = req.caller
    return [v for n, v in req.broker.vhosts.items() if caller.sees_vhost_contents(n)]


def list_exchanges(req: ApiRequest) -> Any:
    views = req.views
    return req.listing([views.exchange(x) for v in _visible(req) for x in list(v.exchanges.values())])


def _exchange(req: ApiRequest) -> tuple[Any, Any]:
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    exchange = vhost.exchanges.get(_exchange_name(req.params["exchange"]))
    if exchange is None:
        raise not_found()
    return vhost, exchange


def get_exchange(req: ApiRequest) -> Any:
    _vhost, exchange = _exchange(req)
    return req.views.exchange(exchange, single=True)


def put_exchange(req: ApiRequest) -> Answer:
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    if _exchange_name(req.params["exchange"]) == "":
        raise access_refused()  # the default exchange cannot be declared
    body = req.json()
    type_name = body.get("type", "direct")
    if not isinstance(type_name, str):
        raise bad_request(["not_string", "type"])
    created = operations.declare_exchange(
        req.caller, vhost, _exchange_name(req.params["exchange"]), type_name,
        durable=parse_bool(body.get("durable"), False),
        auto_delete=parse_bool(body.get("auto_delete"), False),
        internal=parse_bool(body.get("internal"), False),
        arguments=table(body.get("arguments"), "arguments"),
    )  # fmt: skip
    return created_or_updated(created)


def delete_exchange(req: ApiRequest) -> Answer:
    vhost, exchange = _exchange(req)
    operations.delete_exchange(req.caller, vhost, exchange.name, req.flag("if-unused"))
    return NO_CONTENT


def exchange_source_bindings(req: ApiRequest) -> Any:
    _vhost, exchange = _exchange(req)
    views = req.views
    if exchange.name == "":
        refs = [r for r in vhost_bindings(_vhost) if r.source == ""]
    else:
        refs = exchange_bindings(exchange)
    return req.listing([views.binding(r) for r in refs], ())


def exchange_destination_bindings(req: ApiRequest) -> Any:
    vhost, exchange = _exchange(req)
    refs = bindings_to(vhost, exchange.name, "exchange")
    return req.listing([req.views.binding(r) for r in refs], ())


def publish(req: ApiRequest) -> Any:
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    body = req.require("routing_key", "properties", "payload", "payload_encoding")
    routing_key = body["routing_key"]
    if not isinstance(routing_key, str):
        raise bad_request(["not_string", "routing_key"])
    properties = properties_from_json(body["properties"])
    payload = decode_payload(body["payload"], body["payload_encoding"])
    routed = operations.publish(req.caller, vhost, _exchange_name(req.params["exchange"]),
                                routing_key, properties, payload)  # fmt: skip
    return {"routed": routed}


# ------------------------------------------------------------------ queues
def list_queues(req: ApiRequest) -> Any:
    views = req.views
    unacked = views.unacked_bytes()
    return req.listing([views.queue(q, unacked) for v in _visible(req) for q in list(v.queues.values())])


def _queue(req: ApiRequest) -> tuple[Any, Any]:
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    queue = vhost.queues.get(req.params["queue"])
    if queue is None:
        raise not_found()
    return vhost, queue


def get_queue(req: ApiRequest) -> Any:
    _vhost, queue = _queue(req)
    return req.views.queue(queue, single=True)


def put_queue(req: ApiRequest) -> Answer:
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    body = req.json()
    created = operations.declare_queue(
        req.caller, vhost, req.params["queue"],
        durable=parse_bool(body.get("durable"), False),
        auto_delete=parse_bool(body.get("auto_delete"), False),
        arguments=table(body.get("arguments"), "arguments"),
    )  # fmt: skip
    return created_or_updated(created)


def delete_queue(req: ApiRequest) -> Answer:
    vhost, queue = _queue(req)
    operations.delete_queue(req.caller, vhost, queue, req.flag("if-empty"), req.flag("if-unused"))
    return NO_CONTENT


def purge_queue(req: ApiRequest) -> Answer:
    vhost, queue = _queue(req)
    operations.purge_queue(req.caller, vhost, queue)
    return NO_CONTENT


def get_messages(req: ApiRequest) -> Any:
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    body = req.require("count", "ackmode", "encoding")
    truncate = body.get("truncate")
    return operations.get(
        req.caller, vhost, req.params["queue"], parse_int(body["count"]), body["ackmode"],
        body["encoding"], parse_int(truncate) if truncate is not None else None,
    )  # fmt: skip


def queue_bindings(req: ApiRequest) -> Any:
    vhost, queue = _queue(req)
    return req.listing([req.views.binding(r) for r in bindings_to(vhost, queue.name, "queue")], ())


# ---------------------------------------------------------------- bindings
def list_bindings(req: ApiRequest) -> Any:
    views = req.views
    return req.listing([views.binding(r) for v in _visible(req) for r in vhost_bindings(v)], ())


def _ends(req: ApiRequest) -> tuple[Any, str, str, str]:
    """(vhost, source, destination, destination type) of a binding path; 404 when an end is missing."""
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    kind = {"q": "queue", "e": "exchange"}.get(req.params["dtype"])
    if kind is None:
        raise not_found()
    source = _exchange_name(req.params["source"])
    destination = req.params["destination"]
    if kind == "exchange":
        destination = _exchange_name(destination)
    return vhost, source, destination, kind


def _ends_exist(vhost: Any, source: str, destination: str, kind: str) -> None:
    dests = vhost.queues if kind == "queue" else vhost.exchanges
    if source not in vhost.exchanges or destination not in dests:
        raise not_found()


def list_bindings_between(req: ApiRequest) -> Any:
    vhost, source, destination, kind = _ends(req)
    _ends_exist(vhost, source, destination, kind)
    refs = bindings_between(vhost, source, destination, kind)
    return req.listing([req.views.binding(r) for r in refs], ())


def create_binding(req: ApiRequest) -> Answer:
    vhost, source, destination, kind = _ends(req)
    body = req.json()
    routing_key = body.get("routing_key", "")
    if not isinstance(routing_key, str):
        raise bad_request(["not_string", "routing_key"])
    arguments = table(body.get("arguments"), "arguments")
    operations.bind(req.caller, vhost, source, destination, kind == "exchange", routing_key, arguments)
    location = f"{urllib.parse.quote(req.params['destination'], safe='')}/{properties_key(routing_key, arguments)}"
    return Answer(CREATED.status, headers={"Location": location})


def _binding(req: ApiRequest) -> tuple[Any, Any]:
    vhost, source, destination, kind = _ends(req)
    _ends_exist(vhost, source, destination, kind)
    props = req.params["props"]
    for ref in bindings_between(vhost, source, destination, kind):
        if matches_properties_key(props, ref.routing_key, ref.arguments):
            return vhost, ref
    raise not_found()


def get_binding(req: ApiRequest) -> Any:
    _vhost, ref = _binding(req)
    return req.views.binding(ref)


def delete_binding(req: ApiRequest) -> Answer:
    vhost, ref = _binding(req)
    operations.unbind(req.caller, vhost, ref.source, ref.destination, ref.destination_type == "exchange",
                      ref.routing_key, ref.arguments)  # fmt: skip
    return NO_CONTENT
