"""What is running: overview, node, connections, channels, consumers, health checks."""

from __future__ import annotations

from typing import Any

from ..server import VERSION
from . import operations
from .errors import not_found
from .request import NO_CONTENT, Answer, ApiRequest


def overview(req: ApiRequest) -> Any:
    return req.views.overview(req.caller, VERSION)


def nodes(req: ApiRequest) -> Any:
    req.caller.require_monitor()
    return req.listing([req.views.node_view(VERSION)], ("name",))


def node(req: ApiRequest) -> Any:
    req.caller.require_monitor()
    if req.params["node"] != req.broker.node:
        raise not_found()
    return req.views.node_view(VERSION)


def extensions(req: ApiRequest) -> Any:
    return []  # no management UI plugins


# ------------------------------------------------------------ connections
def _connections(req: ApiRequest, vhost: str | None = None) -> list[Any]:
    caller = req.caller
    return [bc for bc in list(req.broker.connections)
            if caller.sees_connection_of(bc.conn.username)
            and (vhost is None or (bc.vhost is not None and bc.vhost.name == vhost))]  # fmt: skip


def list_connections(req: ApiRequest) -> Any:
    return req.listing([req.views.connection(bc) for bc in _connections(req)])


def vhost_connections(req: ApiRequest) -> Any:
    req.caller.require_vhost_visible(req.params["vhost"])
    vhost = req.vhost()
    return req.listing([req.views.connection(bc) for bc in _connections(req, vhost.name)])


def _connection(req: ApiRequest) -> Any:
    name = req.params["connection"]
    views = req.views
    for bc in list(req.broker.connections):
        if views.connection_name(bc) == name:
            req.caller.require_owner(bc.conn.username, req.method)
            return bc
    raise not_found()


def get_connection(req: ApiRequest) -> Any:
    return req.views.connection(_connection(req), single=True)


def close_connection(req: ApiRequest) -> Answer:
    bc = _connection(req)
    operations.close_connection(bc, req.headers.get("X-Reason") or "Closed via management plugin")
    return NO_CONTENT


def connection_channels(req: ApiRequest) -> Any:
    bc = _connection(req)
    views = req.views
    return req.listing([views.channel(s) for s in list(bc.sessions.values())])


# --------------------------------------------------------------- channels
def list_channels(req: ApiRequest) -> Any:
    views = req.views
    return req.listing([views.channel(s) for bc in _connections(req) for s in list(bc.sessions.values())])


def vhost_channels(req: ApiRequest) -> Any:
    req.caller.require_vhost_visible(req.params["vhost"])
    vhost = req.vhost()
    views = req.views
    return req.listing([views.channel(s) for bc in _connections(req, vhost.name)
                        for s in list(bc.sessions.values())])  # fmt: skip


def get_channel(req: ApiRequest) -> Any:
    name = req.params["channel"]
    views = req.views
    for bc in list(req.broker.connections):
        for session in list(bc.sessions.values()):
            if views.channel_name(session) == name:
                req.caller.require_owner(bc.conn.username, req.method)
                return views.channel(session, single=True)
    raise not_found()


# -------------------------------------------------------------- consumers
def list_consumers(req: ApiRequest) -> Any:
    vhost = None
    if "vhost" in req.params:
        req.caller.require_vhost_visible(req.params["vhost"])
        vhost = req.vhost().name
    views = req.views
    items = [views.consumer(c) for bc in _connections(req, vhost) for s in list(bc.sessions.values())
             for c in list(s.consumers.values())]  # fmt: skip
    return req.listing(items, ("queue.vhost", "queue.name", "consumer_tag"))


# ---------------------------------------------------------------- health
def alarms(req: ApiRequest) -> Any:
    """200 while no resource alarm is in force; 503 naming the alarms otherwise."""
    return _alarms(req, "There are alarms in effect in the cluster")


def local_alarms(req: ApiRequest) -> Any:
    return _alarms(req, "There are alarms in effect on the node")


def _alarms(req: ApiRequest, reason: str) -> Any:
    raised = sorted(req.broker.alarms)
    if not raised:
        return {"status": "ok"}
    node = req.broker.node
    return Answer(503, {"status": "failed", "reason": reason,
                        "alarms": [{"node": node, "resource": alarm} for alarm in raised]})


def virtual_hosts_health(req: ApiRequest) -> Any:
    return {"status": "ok"}  # every vhost lives in this process: all of them run while it does


def aliveness(req: ApiRequest) -> Any:
    req.caller.require_vhost(req.params["vhost"])
    operations.aliveness(req.caller, req.vhost())
    return {"status": "ok"}
