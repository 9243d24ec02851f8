"""Bindings as the management API names and lists them.

AMQP bindings have no names, so RabbitMQ synthesises a `properties_key`
from the routing key (URL-quoted) and, when there are arguments, a short
hash of them after a `~`. Clients read it from a listing and send it back
to delete that binding; its exact value is opaque. Ours hashes a canonical
encoding of the arguments (RabbitMQ hashes the Erlang term), so the keys of
bindings with arguments differ from RabbitMQ's. The default exchange's
implicit binding to every queue is listed too, as RabbitMQ lists it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from .convert import to_json


class BindingRef(NamedTuple):
    vhost: str
    source: str
    destination: str
    destination_type: str  # "queue" or "exchange"
    routing_key: str
    arguments: Mapping[str, Any]


def properties_key(routing_key: str, arguments: Mapping[str, Any]) -> str:
    if not arguments:
        return urllib.parse.quote_plus(routing_key, safe="") if routing_key else "~"
    canonical = json.dumps(to_json(dict(arguments)), sort_keys=True, separators=(",", ":"))
    digest = hashlib.md5(canonical.encode(), usedforsecurity=False).digest()[:4]
    hashed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return f"{urllib.parse.quote_plus(routing_key, safe='')}~{hashed}"


def matches_properties_key(given: str, routing_key: str, arguments: Mapping[str, Any]) -> bool:
    """Whether a properties key from a path names this binding.

    The path's segment has been percent-decoded once, and clients differ on
    whether they encoded the key again (rabbitmqadmin does, a Location header
    resolved by a client does not), so the routing key part is taken either
    way, as RabbitMQ does.
    """
    expected = properties_key(routing_key, arguments)
    if given == expected:
        return True
    key, sep, hashed = given.rpartition("~")
    if not sep:
        key, hashed = given, ""
    if hashed != expected.rpartition("~")[2] if arguments else hashed != "":
        return False
    return routing_key in (key, urllib.parse.unquote_plus(key))


def vhost_bindings(vhost: Any) -> Iterator[BindingRef]:
    """Every binding in a vhost: the default exchange's implicit ones first, then by source."""
    for name in sorted(vhost.queues):
        yield BindingRef(vhost.name, "", name, "queue", name, {})
    for name in sorted(vhost.exchanges):
        yield from exchange_bindings(vhost.exchanges[name])


def exchange_bindings(exchange: Any) -> list[BindingRef]:
    """The bindings whose source is exchange, in a stable order."""
    refs = []
    for binding in exchange.router.bindings():
        dest = binding.destination
        kind = "queue" if hasattr(dest, "consumers") else "exchange"
        refs.append(BindingRef(exchange.vhost, exchange.name, dest.name, kind, binding.binding_key,
                               binding.arguments))  # fmt: skip
    refs.sort(key=lambda r: (r.destination, r.destination_type, r.routing_key,
                             properties_key(r.routing_key, r.arguments)))  # fmt: skip
    return refs


def bindings_between(vhost: Any, source: str, destination: str, destination_type: str) -> list[BindingRef]:
    if source == "":
        if destination_type == "queue" and destination in vhost.queues:
            return [BindingRef(vhost.name, "", destination, "queue", destination, {})]
        return []
    exchange = vhost.exchanges.get(source)
    if exchange is None:
        return []
    return [r for r in exchange_bindings(exchange)
            if r.destination == destination and r.destination_type == destination_type]  # fmt: skip


def bindings_to(vhost: Any, destination: str, destination_type: str) -> list[BindingRef]:
    """Bindings with this destination (a queue's include the default exchange's)."""
    return [r for r in vhost_bindings(vhost)
            if r.destination == destination and r.destination_type == destination_type]  # fmt: skip
