"""The API's paths, RabbitMQ's, and which handler answers each method.

Paths are matched on the raw (still percent-encoded) path, one segment at a
time, and each segment is decoded on its own: the vhost `/` arrives as
`%2F` and must not split the path.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from . import access, definitions, offsets, replay, runtime, topology

Handler = Callable[[Any], Any]

ROUTES: list[tuple[str, dict[str, Handler]]] = [
    ("/api/overview", {"GET": runtime.overview}),
    ("/api/whoami", {"GET": access.whoami}),
    ("/api/extensions", {"GET": runtime.extensions}),
    ("/api/nodes", {"GET": runtime.nodes}),
    ("/api/nodes/{node}", {"GET": runtime.node}),
    # vhosts
    ("/api/vhosts", {"GET": topology.list_vhosts}),
    ("/api/vhosts/{vhost}", {"GET": topology.get_vhost, "PUT": topology.put_vhost,
                             "DELETE": topology.delete_vhost}),
    ("/api/vhosts/{vhost}/permissions", {"GET": topology.vhost_permissions}),
    ("/api/vhosts/{vhost}/connections", {"GET": runtime.vhost_connections}),
    ("/api/vhosts/{vhost}/channels", {"GET": runtime.vhost_channels}),
    # users and permissions
    ("/api/users", {"GET": access.list_users}),
    ("/api/users/{user}", {"GET": access.get_user, "PUT": access.put_user, "DELETE": access.delete_user}),
    ("/api/users/{user}/permissions", {"GET": access.user_permissions}),
    ("/api/permissions", {"GET": access.list_permissions}),
    ("/api/permissions/{vhost}/{user}", {"GET": access.get_permission, "PUT": access.put_permission,
                                         "DELETE": access.delete_permission}),
    # exchanges
    ("/api/exchanges", {"GET": topology.list_exchanges}),
    ("/api/exchanges/{vhost}", {"GET": topology.list_exchanges}),
    ("/api/exchanges/{vhost}/{exchange}", {"GET": topology.get_exchange, "PUT": topology.put_exchange,
                                           "DELETE": topology.delete_exchange}),
    ("/api/exchanges/{vhost}/{exchange}/bindings/source", {"GET": topology.exchange_source_bindings}),
    ("/api/exchanges/{vhost}/{exchange}/bindings/destination",
     {"GET": topology.exchange_destination_bindings}),
    ("/api/exchanges/{vhost}/{exchange}/publish", {"POST": topology.publish}),
    # queues
    ("/api/queues", {"GET": topology.list_queues}),
    ("/api/queues/{vhost}", {"GET": topology.list_queues}),
    ("/api/queues/{vhost}/{queue}", {"GET": topology.get_queue, "PUT": topology.put_queue,
                                     "DELETE": topology.delete_queue}),
    ("/api/queues/{vhost}/{queue}/bindings", {"GET": topology.queue_bindings}),
    ("/api/queues/{vhost}/{queue}/contents", {"DELETE": topology.purge_queue}),
    ("/api/queues/{vhost}/{queue}/get", {"POST": topology.get_messages}),
    ("/api/queues/{vhost}/{queue}/replay", {"POST": replay.replay_queue}),
    ("/api/queues/{vhost}/{queue}/offsets", {"GET": offsets.queue_offsets}),
    # bindings
    ("/api/bindings", {"GET": topology.list_bindings}),
    ("/api/bindings/{vhost}", {"GET": topology.list_bindings}),
    ("/api/bindings/{vhost}/e/{source}/{dtype}/{destination}",
     {"GET": topology.list_bindings_between, "POST": topology.create_binding}),
    ("/api/bindings/{vhost}/e/{source}/{dtype}/{destination}/{props}",
     {"GET": topology.get_binding, "DELETE": topology.delete_binding}),
    # connections, channels, consumers
    ("/api/connections", {"GET": runtime.list_connections}),
    ("/api/connections/{connection}", {"GET": runtime.get_connection, "DELETE": runtime.close_connection}),
    ("/api/connections/{connection}/channels", {"GET": runtime.connection_channels}),
    ("/api/channels", {"GET": runtime.list_channels}),
    ("/api/channels/{channel}", {"GET": runtime.get_channel}),
    ("/api/consumers", {"GET": runtime.list_consumers}),
    ("/api/consumers/{vhost}", {"GET": runtime.list_consumers}),
    # definitions
    ("/api/definitions", {"GET": definitions.get_all, "POST": definitions.post_all}),
    ("/api/definitions/{vhost}", {"GET": definitions.get_vhost, "POST": definitions.post_vhost}),
    # health
    ("/api/health/checks/alarms", {"GET": runtime.alarms}),
    ("/api/health/checks/local-alarms", {"GET": runtime.local_alarms}),
    ("/api/health/checks/virtual-hosts", {"GET": runtime.virtual_hosts_health}),
    ("/api/aliveness-test/{vhost}", {"GET": runtime.aliveness}),
]  # fmt: skip

_COMPILED = [(tuple(p.strip("/").split("/")), methods) for p, methods in ROUTES]


def match(raw_path: str) -> tuple[dict[str, Handler], dict[str, str]] | None:
    """The handlers of the route raw_path names, and its decoded parameters; None when none does.

    As RabbitMQ's router: one trailing slash is ignored, an empty segment
    elsewhere matches nothing.
    """
    segments = raw_path.split("/")[1:]
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()
    if "" in segments:
        return None
    for pattern, methods in _COMPILED:
        if len(pattern) != len(segments):
            continue
        params: dict[str, str] = {}
        for want, got in zip(pattern, segments, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = urllib.parse.unquote(got)
            elif want != got:
                break
        else:
            return methods, params
    return None
