"""Broker objects as the management API's JSON: RabbitMQ's keys and types, our values.

Every number is read from the broker as it is now, between two event-loop
turns, so one answer is consistent with itself. Rates come from `Sampler`.
Keys describing Erlang VM internals (garbage_collection, reductions, an
Erlang process's memory) and classic-queue storage accounting are not
served; docs/operations.md lists them and says why.
"""

from __future__ import annotations

import os
import shutil
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from warrenmq.exchanges.registry import EXCHANGE_TYPES

from ..partitioned import PartitionedQueue
from .bindings import BindingRef, properties_key
from .convert import to_json
from .stats import (
    Sampler,
    channel_counts,
    exchange_counts,
    iso_time,
    queue_counts,
    sum_channels,
)

# The management API version whose paths and JSON shapes we serve.
API_VERSION = "3.10.8"
EXCHANGE_DESCRIPTIONS = {
    "direct": "AMQP direct exchange, as per the AMQP specification",
    "fanout": "AMQP fanout exchange, as per the AMQP specification",
    "topic": "AMQP topic exchange, as per the AMQP specification",
    "headers": "AMQP headers exchange, as per the AMQP specification",
    "x-consistent-hash": "Consistent Hashing Exchange",
    "x-delayed-message": "Delayed Message Exchange",
}
# broker.counters names of the churn counts, by RabbitMQ's names.
CHURN = {
    "connection_created": "connections_opened", "connection_closed": "connections_closed",
    "channel_created": "channels_opened", "channel_closed": "channels_closed",
    "queue_declared": "queues_declared", "queue_created": "queues_created",
    "queue_deleted": "queues_deleted",
}  # fmt: skip


def _address(sockaddr: Any) -> tuple[str, int]:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(sockaddr[0]), int(sockaddr[1])
    return "", 0


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Views:
    """Renders broker objects; one per app, holding the sampler and connection addresses."""

    def __init__(self, broker: Any, sampler: Sampler) -> None:
        self.broker = broker
        self.sampler = sampler
        # A connection's (peer, local) addresses, kept: a closing transport forgets them.
        self._addresses: weakref.WeakKeyDictionary[Any, tuple[tuple[str, int], tuple[str, int]]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def node(self) -> str:
        return self.broker.node

    # ------------------------------------------------------------- names
    def addresses(self, bc: Any) -> tuple[tuple[str, int], tuple[str, int]]:
        known = self._addresses.get(bc)
        if known is None:
            proto = bc.conn.transport_protocol
            transport = getattr(proto, "transport", None)
            if transport is None:
                return ("", 0), ("", 0)
            known = (_address(transport.get_extra_info("peername")),
                     _address(transport.get_extra_info("sockname")))  # fmt: skip
            self._addresses[bc] = known
        return known

    def connection_name(self, bc: Any) -> str:
        """RabbitMQ's connection name: "peer -> local"."""
        peer, local = self.addresses(bc)
        return f"{_hostport(*peer)} -> {_hostport(*local)}"

    def channel_name(self, session: Any) -> str:
        return f"{self.connection_name(session.owner)} ({session.number})"

    # ------------------------------------------------------------ numbers
    def queue_numbers(self, queue: Any) -> dict[str, int]:
        ready, unacked = queue.message_count, queue.unacked_count
        return {**queue_counts(queue), "messages": ready + unacked, "messages_ready": ready,
                "messages_unacknowledged": unacked}  # fmt: skip

    def sessions(self, vhost: str | None = None) -> Iterator[Any]:
        for bc in list(self.broker.connections):
            if vhost is None or (bc.vhost is not None and bc.vhost.name == vhost):
                yield from bc.sessions.values()

    def traffic(self, bc: Any) -> dict[str, int]:
        proto = bc.conn.transport_protocol
        return {"recv_oct": getattr(proto, "recv_oct", 0), "send_oct": getattr(proto, "send_oct", 0)}

    def vhost_numbers(self, vhost: Any, connections: list[Any] | None = None) -> dict[str, int]:
        """A vhost's totals; connections (those in this vhost) may be given when already known."""
        if connections is None:
            connections = [bc for bc in self.broker.connections if bc.vhost is vhost]
        sessions = (s for bc in connections for s in bc.sessions.values())
        numbers = sum_channels(getattr(vhost, "counters", {}), sessions)
        ready = unacked = 0
        for queue in vhost.queues.values():
            ready += queue.message_count
            unacked += queue.unacked_count
        numbers.update(messages=ready + unacked, messages_ready=ready, messages_unacknowledged=unacked)
        recv = send = 0
        for bc in connections:
            t = self.traffic(bc)
            recv, send = recv + t["recv_oct"], send + t["send_oct"]
        numbers.update(recv_oct=recv, send_oct=send)
        return numbers

    def broker_numbers(self) -> dict[str, int]:
        broker = self.broker
        numbers = sum_channels(broker.counters, self.sessions())
        ready = unacked = 0
        for vhost in broker.vhosts.values():
            for queue in vhost.queues.values():
                ready += queue.message_count
                unacked += queue.unacked_count
        numbers.update(messages=ready + unacked, messages_ready=ready, messages_unacknowledged=unacked)
        for ours, theirs in CHURN.items():
            numbers[ours] = broker.counters.get(theirs, 0)
        return numbers

    def all_numbers(self, broker: Any) -> Iterator[tuple[Any, dict[str, int]]]:
        """Every object with rates, and its numbers now: what the sampler records."""
        yield broker, self.broker_numbers()
        by_vhost: dict[Any, list[Any]] = {}
        for bc in list(broker.connections):
            by_vhost.setdefault(bc.vhost, []).append(bc)
        for vhost in list(broker.vhosts.values()):
            yield vhost, self.vhost_numbers(vhost, by_vhost.get(vhost, []))
            for queue in list(vhost.queues.values()):
                yield queue, self.queue_numbers(queue)
            for exchange in list(vhost.exchanges.values()):
                yield exchange, exchange_counts(exchange)
        for bc in list(broker.connections):
            yield bc, self.traffic(bc)
            for session in list(bc.sessions.values()):
                yield session, channel_counts(session.counters)

    def _detailed(self, obj: Any, numbers: dict[str, int], keys: Iterable[str]) -> dict[str, Any]:
        return self.sampler.details(obj, {k: numbers[k] for k in keys})

    # ------------------------------------------------------------- vhosts
    def vhost(self, vhost: Any) -> dict[str, Any]:
        numbers = self.vhost_numbers(vhost)
        stats_keys = [k for k in numbers if k not in _GAUGES and k not in ("recv_oct", "send_oct")]
        return {
            "name": vhost.name,
            "description": vhost.description,
            "tags": list(vhost.tags),
            "metadata": {"description": vhost.description, "tags": list(vhost.tags)},
            "default_queue_type": "classic",
            "tracing": False,
            "cluster_state": {self.node: "running"},
            "message_stats": self._detailed(vhost, numbers, stats_keys),
            **self._detailed(vhost, numbers, (*_GAUGES, "recv_oct", "send_oct")),
        }

    # ---------------------------------------------------------- exchanges
    def exchange(self, exchange: Any, single: bool = False) -> dict[str, Any]:
        out = {
            "name": exchange.name,
            "vhost": exchange.vhost,
            "type": exchange.type,
            "durable": exchange.durable,
            "auto_delete": exchange.auto_delete,
            "internal": exchange.internal,
            "arguments": to_json(exchange.arguments),
            "user_who_performed_action": _actor(exchange),
            "message_stats": self.sampler.details(exchange, exchange_counts(exchange)),
        }
        if single:
            out["incoming"] = []  # per-channel breakdowns: only in RabbitMQ's "detailed" rates mode
            out["outgoing"] = []
        return out

    # ------------------------------------------------------------- queues
    def unacked_bytes(self) -> dict[Any, int]:
        """Body bytes delivered and not yet acked, per queue (one pass over every channel)."""
        out: dict[Any, int] = {}
        for session in self.sessions():
            for queue, msg, _consumer in session.unacked.values():
                out[queue] = out.get(queue, 0) + len(msg.body)
        return out

    def queue(self, queue: Any, unacked_bytes: dict[Any, int] | None = None,
              single: bool = False) -> dict[str, Any]:  # fmt: skip
        if unacked_bytes is None:
            unacked_bytes = self.unacked_bytes()
        numbers = self.queue_numbers(queue)
        stats_keys = [k for k in numbers if k not in _GAUGES]
        consumers = list(queue.consumers)
        exclusive_tag = next((c.tag for c in consumers if c.exclusive), None)
        single_active = getattr(queue, "single_active", False)
        capacity = 0.0
        if consumers:
            capacity = 1.0 if any(c.can_take() for c in consumers) else 0.0
        ready_bytes, unacked = queue.ready_bytes, unacked_bytes.get(queue, 0)
        if isinstance(queue, PartitionedQueue):  # consumers' deliveries are held by the partitions
            unacked += sum(unacked_bytes.get(member, 0) for member in queue.members)
        out = {
            "name": queue.name,
            "vhost": queue.vhost,
            "durable": queue.durable,
            "auto_delete": queue.auto_delete,
            "exclusive": queue.exclusive_owner is not None,
            "arguments": to_json(queue.arguments),
            "type": _queue_type(queue),
            "state": "running",
            "node": self.node,
            "policy": None,
            "operator_policy": None,
            "effective_policy_definition": {},
            "consumers": len(consumers),
            "consumer_capacity": capacity,
            "consumer_utilisation": capacity,
            "exclusive_consumer_tag": exclusive_tag,
            "single_active_consumer_tag": consumers[0].tag if single_active and consumers else None,
            "head_message_timestamp": None,
            "idle_since": self.sampler.idle_since(queue, self.broker.started_at),
            "message_bytes": ready_bytes + unacked,
            "message_bytes_ready": ready_bytes,
            "message_bytes_unacknowledged": unacked,
            "message_stats": self._detailed(queue, numbers, stats_keys),
            **self._detailed(queue, numbers, _GAUGES),
        }
        if isinstance(queue, PartitionedQueue):
            out["partitions"] = queue.partitions
        owner = queue.exclusive_owner
        if owner is not None:
            peer, _local = self.addresses(owner)
            out["owner_pid_details"] = {"name": self.connection_name(owner),
                                        "peer_host": peer[0], "peer_port": peer[1]}  # fmt: skip
        if single:
            out["consumer_details"] = [self.consumer(c) for c in consumers]
            out["deliveries"] = []
            out["incoming"] = []
        return out

    # ----------------------------------------------------------- bindings
    def binding(self, ref: BindingRef) -> dict[str, Any]:
        return {
            "source": ref.source,
            "vhost": ref.vhost,
            "destination": ref.destination,
            "destination_type": ref.destination_type,
            "routing_key": ref.routing_key,
            "arguments": to_json(ref.arguments),
            "properties_key": properties_key(ref.routing_key, ref.arguments),
        }

    # -------------------------------------------------------- connections
    def connection(self, bc: Any, single: bool = False) -> dict[str, Any]:
        conn = bc.conn
        no_tls = "" if single else None  # RabbitMQ lists these as null, shows them as ""
        peer, local = self.addresses(bc)
        traffic = self.traffic(bc)
        proto = conn.transport_protocol
        transport = getattr(proto, "transport", None)
        client_properties = to_json(conn.client_properties or {})
        out = {
            "name": self.connection_name(bc),
            "node": self.node,
            "vhost": bc.vhost.name if bc.vhost is not None else None,
            "user": conn.username,
            "user_who_performed_action": conn.username,
            "auth_mechanism": getattr(conn, "auth_mechanism", None) or "PLAIN",
            "protocol": "AMQP 0-9-1",
            "type": "network",
            "state": _connection_state(conn),
            "host": local[0],
            "port": local[1],
            "peer_host": peer[0],
            "peer_port": peer[1],
            "ssl": False,
            "ssl_protocol": no_tls,
            "ssl_key_exchange": no_tls,
            "ssl_cipher": no_tls,
            "ssl_hash": no_tls,
            "peer_cert_subject": no_tls,
            "peer_cert_issuer": no_tls,
            "peer_cert_validity": no_tls,
            "channel_max": conn.channel_max,
            "frame_max": conn.frame_max,
            "timeout": conn.heartbeat,
            "channels": len(bc.sessions),
            "connected_at": int(getattr(bc, "connected_at", self.broker.started_at) * 1000),
            "client_properties": client_properties,
            "recv_cnt": getattr(proto, "recv_cnt", 0),
            "send_cnt": getattr(proto, "send_cnt", 0),
            "send_pend": transport.get_write_buffer_size() if transport is not None else 0,
            **self.sampler.details(bc, traffic),
        }
        name = client_properties.get("connection_name") if isinstance(client_properties, dict) else None
        if isinstance(name, str):
            out["user_provided_name"] = name
        return out

    def connection_details(self, bc: Any) -> dict[str, Any]:
        peer, _local = self.addresses(bc)
        return {"name": self.connection_name(bc), "peer_host": peer[0], "peer_port": peer[1]}

    def channel(self, session: Any, single: bool = False) -> dict[str, Any]:
        bc = session.owner
        user = bc.conn.username
        out = {
            "name": self.channel_name(session),
            "node": self.node,
            "number": session.number,
            "vhost": bc.vhost.name if bc.vhost is not None else None,
            "user": user,
            "user_who_performed_action": user,
            "connection_details": self.connection_details(bc),
            "state": "running",
            "confirm": session.confirming,
            "transactional": session.transactional,
            "consumer_count": len(session.consumers),
            "prefetch_count": session.prefetch_count,
            "global_prefetch_count": session.global_prefetch,
            "messages_unacknowledged": len(session.unacked),
            "messages_unconfirmed": session.unconfirmed if session.confirming else 0,
            "messages_uncommitted": len(session.tx_publishes),
            "acks_uncommitted": len(session.tx_acks),
            "pending_raft_commands": 0,
            "idle_since": self.sampler.idle_since(session, getattr(bc, "connected_at", 0.0)),
            "message_stats": self.sampler.details(session, channel_counts(session.counters)),
        }
        if single:
            out["consumer_details"] = [self.consumer(c) for c in session.consumers.values()]
            out["deliveries"] = []
            out["publishes"] = []
        return out

    def consumer(self, consumer: Any) -> dict[str, Any]:
        session = consumer.channel
        bc = session.owner
        peer, _local = self.addresses(bc)
        queue = consumer.queue
        single_active = getattr(queue, "single_active", False)
        active = not single_active or (bool(queue.consumers) and queue.consumers[0] is consumer)
        if isinstance(queue, PartitionedQueue):  # one active consumer per partition
            active = queue.is_active(consumer)
        status = ("single_active" if active else "waiting") if single_active else "up"
        return {
            "consumer_tag": consumer.tag,
            "exclusive": consumer.exclusive,
            "ack_required": not consumer.no_ack,
            "prefetch_count": consumer.prefetch,
            "active": active,
            "activity_status": status,
            "arguments": to_json(consumer.arguments),
            "queue": {"name": queue.name, "vhost": queue.vhost},
            "channel_details": {
                "name": self.channel_name(session),
                "number": session.number,
                "connection_name": self.connection_name(bc),
                "node": self.node,
                "peer_host": peer[0],
                "peer_port": peer[1],
                "user": bc.conn.username,
            },
        }

    # ------------------------------------------------------ users, access
    @staticmethod
    def user(user: Any) -> dict[str, Any]:
        return {
            "name": user.name,
            "password_hash": user.password_hash,
            "hashing_algorithm": user.hashing_algorithm,
            "tags": list(user.tags),
            "limits": dict(user.limits),
        }

    @staticmethod
    def permission(perm: Any) -> dict[str, Any]:
        return {"user": perm.user, "vhost": perm.vhost, "configure": perm.configure,
                "write": perm.write, "read": perm.read}  # fmt: skip

    # ------------------------------------------------------------ overview
    def exchange_types(self) -> list[dict[str, Any]]:
        names = sorted({*EXCHANGE_TYPES, "x-delayed-message"})
        return [{"name": n, "description": EXCHANGE_DESCRIPTIONS.get(n, ""), "enabled": True}
                for n in names]  # fmt: skip

    def listeners(self) -> list[dict[str, Any]]:
        out = []
        for server in self.broker.servers:
            for sock in server.sockets:
                host, port = _address(sock.getsockname())
                out.append({"node": self.node, "protocol": "amqp", "ip_address": host, "port": port,
                            "socket_opts": {"nodelay": True}})  # fmt: skip
        for kind, (host, port) in self.http_listeners():
            out.append({"node": self.node, "protocol": kind, "ip_address": host, "port": port,
                        "socket_opts": {}})  # fmt: skip
        return out

    def http_listeners(self) -> list[tuple[str, tuple[str, int]]]:
        out = []
        for runner, kind in zip(self.broker.http_runners, ("http", "http/prometheus"), strict=False):
            for addr in getattr(runner, "addresses", []):
                out.append((kind, _address(addr)))
        return out

    def contexts(self) -> list[dict[str, Any]]:
        descriptions = {"http": "RabbitMQ Management", "http/prometheus": "RabbitMQ Prometheus"}
        return [{"node": self.node, "description": descriptions[kind], "path": "/", "ip": host,
                 "port": str(port), "ssl_opts": []} for kind, (host, port) in self.http_listeners()]  # fmt: skip

    def overview(self, caller: Any, version: str) -> dict[str, Any]:
        """The node's totals; a user who is not a monitor sees those of its own vhosts."""
        broker = self.broker
        numbers = self.broker_numbers()
        visible = set(caller.visible_vhosts())
        if not caller.is_monitor:
            per_vhost = [self.vhost_numbers(broker.vhosts[n]) for n in visible]
            for key in (*_GAUGES, *_channel_keys(numbers)):
                numbers[key] = sum(v[key] for v in per_vhost)
        all_vhosts = caller.is_monitor
        connections = [bc for bc in broker.connections if all_vhosts or bc.conn.username == caller.name]
        channels = sum(len(bc.sessions) for bc in connections)
        queues = exchanges = consumers = 0
        for name in visible:
            vhost = broker.vhosts[name]
            queues += len(vhost.queues)
            exchanges += len(vhost.exchanges)
            consumers += sum(len(q.consumers) for q in vhost.queues.values())
        churn = {k: numbers[k] for k in CHURN}
        stats_keys = [k for k in numbers if k not in _GAUGES and k not in CHURN]
        return {
            "management_version": API_VERSION,
            "rabbitmq_version": API_VERSION,
            "product_name": "warrenmq",
            "product_version": version,
            "rates_mode": "basic",
            "sample_retention_policies": {"global": [], "basic": [], "detailed": []},
            "exchange_types": self.exchange_types(),
            "disable_stats": False,
            "enable_queue_totals": False,
            "message_stats": self._detailed(broker, numbers, stats_keys),
            "churn_rates": self._detailed(broker, numbers, churn),
            "queue_totals": self._detailed(broker, numbers, _GAUGES),
            "object_totals": {"connections": len(connections), "channels": channels,
                              "exchanges": exchanges, "queues": queues, "consumers": consumers},
            "node": self.node,
            "cluster_name": self.node,
            "listeners": self.listeners(),
            "contexts": self.contexts(),
        }  # fmt: skip

    def node_view(self, version: str) -> dict[str, Any]:
        broker = self.broker
        data_dir = os.path.abspath(broker.config.data_dir)
        try:
            disk_free = shutil.disk_usage(data_dir).free
        except OSError:
            disk_free = 0
        return {
            "name": self.node,
            "type": "disc",
            "running": True,
            "uptime": int((time.time() - broker.started_at) * 1000),
            "os_pid": str(os.getpid()),
            "processors": os.cpu_count() or 1,
            "mem_used": _resident_bytes(),
            "mem_alarm": "memory" in broker.alarms,
            "disk_free": disk_free,
            "disk_free_alarm": "disk" in broker.alarms,
            "db_dir": data_dir,
            "rates_mode": "basic",
            "exchange_types": self.exchange_types(),
            "auth_mechanisms": [{"name": "PLAIN", "description": "SASL PLAIN authentication mechanism",
                                 "enabled": True},
                                {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism",
                                 "enabled": True}],
            "contexts": self.contexts(),
            "partitions": [],
            "product_version": version,
        }  # fmt: skip


_GAUGES = ("messages", "messages_ready", "messages_unacknowledged")


def _channel_keys(numbers: dict[str, int]) -> list[str]:
    return [k for k in numbers if k not in _GAUGES and k not in CHURN]


def _queue_type(queue: Any) -> str:
    value = queue.arguments.get("x-queue-type")
    return value if isinstance(value, str) and value else "classic"


def _actor(exchange: Any) -> str:
    """Who declared an exchange: the built-in ones are RabbitMQ's "rmq-internal"."""
    if exchange.name == "" or exchange.name.startswith("amq."):
        return "rmq-internal"
    return getattr(exchange, "declared_by", None) or "unknown"


def _connection_state(conn: Any) -> str:
    if getattr(conn, "blocked", False):
        return "blocked"
    state = getattr(conn, "state", None)
    name = getattr(state, "name", "")
    return "closing" if name in ("CLOSING", "CLOSED") else "running"


def _resident_bytes() -> int:
    """This process's resident memory (Linux), 0 where it cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


__all__ = ["Views", "iso_time"]
