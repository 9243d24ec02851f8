"""The broker: vhosts, exchanges, queues and bindings over one data directory, and listeners.

Entities follow RabbitMQ's rules and reply codes. Durable ones are kept in
the metadata store and come back at start; transient ones (and their logs)
do not. Every queue is a log topic. Work is batched per event-loop turn:
publishes only collect into their queues' batches; the end-of-turn `flush`
appends each queue's batch once, dispatches to consumers, finishes each
channel's confirm group and writes the changed queue states in one append.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import ipaddress
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from warrenmq.amqp import ChannelError, ConnectionError, start_server
from warrenmq.amqp.codec import encode_short
from warrenmq.amqp.constants import (
    ACCESS_REFUSED,
    CONNECTION_FORCED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
)
from warrenmq.exchanges import (
    BindingRejected,
    InvalidArguments,
    UnknownExchangeType,
    make_exchange_type,
)
from warrenmq.logstore import LogConfig, LogManager

from . import retention
from .config import BrokerConfig
from .deadletter import (
    dead_letter_properties,
    dead_letter_routing_keys,
    death_routing_keys,
    is_automatic_cycle,
)
from .delayed import (
    DELAYED_TYPE,
    DELAYED_TYPE_ARG,
    DelayedStore,
    Hold,
    delayed_topic_name,
    due_time,
    negate_x_delay,
)
from .handler import BrokerConnection, _headers_of, _property
from .message import (
    FLAG_DEATHS_OURS,
    FLAG_EXPLICIT_KEY,
    Message,
    exchange_of,
    record_headers,
    routing_key_of,
)
from .metadata import MetadataStore, decode_arguments, encode_arguments
from .partitioned import PartitionedQueue, open_partitioned
from .partitioned_stream import PartitionedStream, open_partitioned_stream
from .partitioning import (
    PARTITION_KEY_ARG,
    PARTITIONS_ARG,
    is_partitioned,
    partition_argument_error,
    partition_count,
)
from .queue import Queue
from .session import CHANNEL_COUNTERS
from .stream import StreamQueue, apply_stream_retention
from .stream_declare import STREAM_ARGUMENTS, check_stream_declare, is_stream, stream_log_config
from .stream_offsets import ConsumerOffsets
from .users import UserStore
from .vhost import DEFAULT_EXCHANGES, Exchange, VirtualHost

if TYPE_CHECKING:
    from .session import ChannelSession

log = logging.getLogger("warrenmq.broker")

try:
    VERSION = importlib.metadata.version("warrenmq")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0+unknown"

QUEUE_ARGUMENT_TYPES: dict[str, tuple[type, ...]] = {
    "x-message-ttl": (int,),
    "x-expires": (int,),
    "x-max-length": (int,),
    "x-max-length-bytes": (int,),
    "x-dead-letter-exchange": (str,),
    "x-dead-letter-routing-key": (str,),
    "x-max-priority": (int,),
    "x-overflow": (str,),
    "x-queue-mode": (str,),
    "x-queue-type": (str,),
    "x-single-active-consumer": (bool,),
    "x-delivery-limit": (int,),
    "x-delayed-retry-type": (str,),
    "x-delayed-retry-min": (int,),
    "x-delayed-retry-max": (int,),
    "x-retain-settled": (int,),
    PARTITIONS_ARG: (int,),
    PARTITION_KEY_ARG: (str,),
}
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
RETRY_TYPES = ("disabled", "all", "failed", "returned")
MAX_EXPIRY = 315_360_000_000  # rabbit_misc:check_expiry: ten years, in milliseconds
# Broker.counters' keys (docs/metrics.md), a plain dict: "routed" is bumped per publish.
# A closing channel adds its own counts (CHANNEL_COUNTERS) and "received_confirm".
BROKER_COUNTERS = (
    "unroutable", "routed", "received_confirm", "connections_opened", "connections_closed",
    "channels_opened", "channels_closed", "queues_declared", "queues_created", "queues_deleted",
    *(f"{kind}_{reason}" for kind in ("dead_lettered", "discarded")
      for reason in ("rejected", "expired", "maxlen", "delivery_limit")),
    *CHANNEL_COUNTERS,
)  # fmt: skip


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Broker:
    """One broker process; see the module docstring."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.vhosts: dict[str, VirtualHost] = {}
        self.users = UserStore()
        self.users.put_user(config.default_user, password=config.default_pass, tags=["administrator"])
        self.users.set_permission(config.default_user, config.default_vhost, ".*", ".*", ".*")
        self.alarms: set[str] = set()  # resource alarms in force (none are raised yet)
        self.started_at = time.time()
        self.node = f"warrenmq@{socket.gethostname()}"
        self.connections: dict[BrokerConnection, None] = {}
        self.counters: dict[str, int] = dict.fromkeys(BROKER_COUNTERS, 0)
        self.servers: list[asyncio.Server] = []
        self.http_runners: list[Any] = []
        self.manager: LogManager | None = None
        self._dirty_queues: dict[Queue, None] = {}
        self._dirty_sessions: dict[ChannelSession, None] = {}
        self._dirty_stores: dict[DelayedStore, None] = {}
        self._flush_scheduled = False
        self._in_flush = False
        self._stopped = False  # the logs are closed: nothing may be written any more
        self._loop: asyncio.AbstractEventLoop | None = None
        self._upkeep: asyncio.Task | None = None
        self.now_ms = _now_ms
        self.startup_topology: Any = None  # a topology file to apply at start (serve --topology)

    # ================================================================= start
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        log.info("starting warrenmq %s, node %s, data directory %s, fsync %s",
                 VERSION, self.node, os.path.abspath(cfg.data_dir), cfg.fsync)  # fmt: skip
        self.log_config = LogConfig(
            fsync=cfg.fsync, fsync_interval_ms=cfg.fsync_interval_ms, segment_bytes=cfg.segment_bytes
        )
        self.transient_log_config = self.log_config.replace(fsync="never")
        self.manager = LogManager(cfg.data_dir, self.log_config)
        self.metadata = MetadataStore(self.manager, cfg.fsync)
        self.states = self.manager.offsets_store("queue-state", self.log_config)
        self.stream_offsets = ConsumerOffsets(self.manager.offsets_store("consumer-offsets", self.log_config))
        if not self.users.attach(self.metadata):
            log.info("first start: created user '%s'", cfg.default_user)
        self._load_definitions()
        if self.startup_topology is not None:
            from .topology.startup import apply_at_start  # a cycle at import time

            apply_at_start(self, self.startup_topology)
        for store in self._delayed_stores():
            store.start()
        await self._start_http()  # before AMQP: "listening for AMQP" means all is up
        for listener in cfg.listeners:
            server = await start_server(
                lambda conn: BrokerConnection(self, conn),
                listener.host,
                listener.port,
                frame_max=cfg.frame_max,
                channel_max=cfg.channel_max,
                heartbeat=cfg.heartbeat,
                max_message_size=cfg.max_message_size,
            )
            self.servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                log.info("listening for AMQP on %s:%d", host, port)
        self._upkeep = asyncio.create_task(self._upkeep_loop())

    async def _start_http(self) -> None:
        """The management API and the Prometheus endpoint, each on its own listener."""
        from .http import start_site
        from .management import build_app as management_app
        from .metrics import build_app as metrics_app

        for what, listener, build in (
            ("management HTTP", self.config.management_listener, management_app),
            ("Prometheus metrics", self.config.prometheus_listener, metrics_app),
        ):
            if listener is None:
                continue
            runner, port = await start_site(build(self), listener.host, listener.port)
            self.http_runners.append(runner)
            log.info("listening for %s on %s:%d", what, listener.host, port)

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for server in self.servers for sock in server.sockets]

    def _load_definitions(self) -> None:
        meta = self.metadata
        for (name,), value in meta.items("vhost"):
            self._add_vhost(name, value.get("description", ""), tuple(value.get("tags", ())))
        if self.config.default_vhost not in self.vhosts:
            self.add_vhost(self.config.default_vhost)
        for (vhost, name), value in meta.items("exchange"):
            if vhost in self.vhosts:
                self._create_exchange(self.vhosts[vhost], name, value["type"], True,
                                      value["auto_delete"], value["internal"],
                                      decode_arguments(value["arguments"]), restore=True)  # fmt: skip
        kept_topics = {store.log_topic for store in self._delayed_stores()}
        for (vhost, name), value in meta.items("queue"):
            if vhost not in self.vhosts:
                continue
            topic = self._topic_name(vhost, name)
            kept_topics.add(topic)
            arguments = decode_arguments(value["arguments"])
            if is_stream(arguments) and is_partitioned(arguments):
                self.vhosts[vhost].queues[name] = open_partitioned_stream(
                    vhost, name, self.manager.get_or_create_topic(
                        topic, partition_count(arguments), stream_log_config(self.log_config, arguments)),
                    arguments=arguments, on_dirty=self._queue_dirty, offsets=self.stream_offsets,
                )  # fmt: skip
                continue
            if is_stream(arguments):
                part = self.manager.get_or_create_topic(topic, 1, stream_log_config(self.log_config, arguments))
                self.vhosts[vhost].queues[name] = StreamQueue(
                    vhost, name, part.partition(0), arguments=arguments, on_dirty=self._queue_dirty,
                    offsets=self.stream_offsets,
                )  # fmt: skip
                continue
            if is_partitioned(arguments):
                queue = open_partitioned(
                    vhost, name, self.manager.get_or_create_topic(topic, partition_count(arguments), self.log_config),
                    durable=True, exclusive_owner=None, auto_delete=value["auto_delete"], arguments=arguments,
                    on_dirty=self._queue_dirty, state_of=self.states.get,
                )  # fmt: skip
            else:
                part = self.manager.get_or_create_topic(topic, 1, self.log_config).partition(0)
                queue = Queue(
                    vhost, name, part, durable=True, exclusive_owner=None,
                    auto_delete=value["auto_delete"], arguments=decode_arguments(value["arguments"]),
                    on_dirty=self._queue_dirty, state=self.states.get(_state_key(vhost, name)),
                )  # fmt: skip
            queue.on_dead_letter = self.dead_letter
            queue.on_unused_expired = self.delete_queue
            queue.touch()  # x-expires counts from now
            self.vhosts[vhost].queues[name] = queue
        for topic in list(self.manager.topics()):
            if topic.name not in kept_topics:  # a transient queue's log from the last run
                self.manager.delete_topic(topic.name)
        for (vhost, source, kind, dest, key, args), _value in meta.items("binding"):
            try:
                self._bind(self.vhosts[vhost], source, dest, key, decode_arguments(args), kind == "e")
            except (KeyError, ChannelError, BindingRejected):
                log.warning("dropping binding %s -> %s in vhost %s: an end is missing", source, dest, vhost)

    def add_vhost(self, name: str, description: str = "", tags: tuple[str, ...] = ()) -> VirtualHost:
        """Create a vhost (or update an existing one's description and tags); it is durable."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self._add_vhost(name, description, tags)
        else:
            vhost.description, vhost.tags = description, list(tags)
        self.metadata.put("vhost", (name,), {"description": description, "tags": list(tags)})
        return vhost

    def delete_vhost(self, name: str) -> bool:
        """Close its connections (320), delete its queues and exchanges, forget its permissions."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            return False
        for conn in [c for c in self.connections if c.vhost is vhost]:
            conn.force_close(f"vhost '{name}' is deleted")
        for queue in list(vhost.queues.values()):
            self.delete_queue(queue)
        for exchange in list(vhost.exchanges.values()):
            if exchange.name in vhost.exchanges:
                self._remove_exchange(vhost, exchange)
        del self.vhosts[name]
        self.metadata.delete("vhost", (name,))
        self.users.clear_vhost(name)
        log.info("vhost '%s' deleted", name)
        return True

    def _add_vhost(self, name: str, description: str = "", tags: tuple[str, ...] = ()) -> VirtualHost:
        vhost = VirtualHost(name, description, tags)
        self.vhosts[name] = vhost
        self._create_exchange(vhost, "", "direct", True, False, False, {})
        for ex_name, ex_type in DEFAULT_EXCHANGES:
            self._create_exchange(vhost, ex_name, ex_type, True, False, False, {})
        return vhost

    @staticmethod
    def _topic_name(vhost: str, queue: str) -> str:
        return f"{vhost}\x00{queue}"

    # ================================================================ auth
    def authenticate(self, username: str, password: str, peer_host: str) -> bool:
        if self.users.authenticate(username, password) is None:
            return False
        if username in self.config.loopback_users and not _is_loopback(peer_host):
            log.warning("user '%s' can only connect via localhost", username)
            return False
        return True

    def connection_opened(self, conn: BrokerConnection) -> None:
        self.connections[conn] = None
        self.counters["connections_opened"] += 1

    def connection_closed(self, conn: BrokerConnection) -> None:
        if conn in self.connections:
            del self.connections[conn]
            self.counters["connections_closed"] += 1

    # ============================================================ exchanges
    def _create_exchange(self, vhost: VirtualHost, name: str, type_name: str, durable: bool,
                         auto_delete: bool, internal: bool, arguments: dict[str, Any],
                         router: Any = None, restore: bool = False) -> Exchange:  # fmt: skip
        if type_name == DELAYED_TYPE:
            router = _delayed_router(arguments)
        elif router is None:
            router = make_exchange_type(type_name, arguments)
        if not hasattr(router, "route"):
            raise ChannelError(router.reply_code, router.reply_text, 40, 10)
        exchange = Exchange(vhost.name, name, type_name, durable, auto_delete, internal,
                            dict(arguments), router)  # fmt: skip
        if type_name == DELAYED_TYPE:
            exchange.delayed = self._open_delayed_store(exchange, restore)
            vhost.delayed_exchanges += 1
        vhost.exchanges[name] = exchange
        return exchange

    # ------------------------------------------------------ delayed delivery
    def _open_delayed_store(self, exchange: Exchange, restore: bool) -> DelayedStore:
        """The log of what a delayed exchange holds: reopened at start, fresh when declared."""
        topic = delayed_topic_name(exchange.vhost, exchange.name)
        if not restore and self.manager.topic(topic) is not None:
            self.manager.delete_topic(topic)  # left over from an exchange of the same name
        config = self.log_config if exchange.durable else self.transient_log_config
        part = self.manager.get_or_create_topic(topic, 1, config).partition(0)
        store = DelayedStore(
            f"'{exchange.name}' in vhost '{exchange.vhost}'", part, durable=exchange.durable,
            deliver=lambda flags, exrk, props, body: self._route_due(exchange, flags, exrk, props, body),
            on_dirty=self._store_dirty, now_ms=self.now_ms,
        )  # fmt: skip
        store.log_topic = topic
        if self._loop is not None and not restore:
            store.start()
        return store

    def _delayed_stores(self) -> list[DelayedStore]:
        return [ex.delayed for vhost in self.vhosts.values() for ex in vhost.exchanges.values()
                if ex.delayed is not None]  # fmt: skip

    def _route_due(self, exchange: Exchange, flags: int, exrk: bytes, properties: bytes,
                   body: bytes) -> tuple[Queue, ...]:  # fmt: skip
        """A held message fell due: route it through its exchange's bindings as they are now.

        As at publish, except that nobody can be told of a refusal: a queue
        with `x-overflow: reject-publish` drops it, `reject-publish-dlx`
        dead-letters it.
        """
        vhost = self.vhosts.get(exchange.vhost)
        if vhost is None or exchange.delayed is None or exchange.delayed.deleted:
            return ()
        queues = vhost.route(
            exchange, routing_key_of(exrk), lambda: _headers_of(properties),
            lambda n: _property(properties, n),
        )  # fmt: skip
        if not queues:
            self.counters["unroutable"] += 1
            return ()
        self.counters["routed"] += len(queues)
        headers = record_headers(flags, exrk, properties)
        now = self.now_ms()
        for queue in queues:
            if queue.rejects_overflow and not queue.admits(len(body)):
                if queue.overflow == "reject-publish-dlx":
                    queue.dead_letter(Message(-1, flags, exrk, properties, body), "maxlen")
                continue
            queue.enqueue(now, flags, exrk, properties, body, headers)
        return queues

    def hold_delayed(self, hold: Hold, flags: int, exrk: bytes, properties: bytes, body: bytes) -> None:
        """Give a message to each delayed exchange that held it during routing."""
        headers = record_headers(flags, exrk, negate_x_delay(properties))
        # One ms on top of the delay: `now` is rounded down, and the message
        # must never be routed before publish time + x-delay.
        due = due_time(self.now_ms() + 1, hold.delay)
        for exchange in hold.exchanges:
            store = exchange.delayed
            if store is not None and not store.deleted:
                store.hold(due, headers, body)

    def declare_exchange(self, vhost: VirtualHost, name: str, type_name: str, *, passive: bool,
                         durable: bool, auto_delete: bool, internal: bool,
                         arguments: dict[str, Any]) -> Exchange:  # fmt: skip
        """Exchange.Declare, checked in RabbitMQ 4.x's order (rabbit_channel)."""
        if passive:
            _check_not_default_exchange(name, 40, 10)
            existing = vhost.exchanges.get(name)
            if existing is None:
                raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{vhost.name}'", 40, 10)
            return existing
        router = None
        if type_name != DELAYED_TYPE:  # a delayed exchange's arguments are checked at creation
            router = make_exchange_type(type_name, arguments)
            if isinstance(router, UnknownExchangeType):  # the type is checked first
                raise ChannelError(router.reply_code, router.reply_text, 40, 10)
        _check_not_default_exchange(name, 40, 10)
        existing = vhost.exchanges.get(name)
        if existing is not None:
            _check_settings_equivalence(
                f"exchange '{name}' in vhost '{vhost.name}'",
                (
                    ("type", type_name, existing.type),
                    ("durable", durable, existing.durable),
                    ("auto_delete", auto_delete, existing.auto_delete),
                    ("internal", internal, existing.internal),
                ),
                (40, 10),
            )
            key = "alternate-exchange"  # the only argument RabbitMQ compares
            _check_arg_equivalence(key, arguments.get(key), existing.arguments.get(key),
                                   f"exchange '{name}' in vhost '{vhost.name}'", (40, 10))  # fmt: skip
            return existing
        if name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED, f"exchange name '{name}' contains reserved prefix 'amq.*'", 40, 10
            )
        ae = arguments.get("alternate-exchange")
        if ae is not None and not isinstance(ae, str):
            raise ChannelError(
                PRECONDITION_FAILED,
                f"invalid type '{_arg_type(ae)}' for arg 'alternate-exchange' in exchange '{name}' "
                f"in vhost '{vhost.name}'",
                40,
                10,
            )
        exchange = self._create_exchange(vhost, name, type_name, durable, auto_delete, internal,
                                         arguments, router)  # fmt: skip
        if durable:
            self.metadata.put("exchange", (vhost.name, name), {
                "type": type_name, "auto_delete": auto_delete, "internal": internal,
                "arguments": encode_arguments(arguments),
            })  # fmt: skip
        return exchange

    def delete_exchange(self, vhost: VirtualHost, name: str, *, if_unused: bool) -> None:
        _check_not_default_exchange(name, 40, 20)
        if name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED,
                f"deletion of system exchange '{name}' in vhost '{vhost.name}' not allowed",
                40,
                20,
            )
        exchange = vhost.exchanges.get(name)
        if exchange is None:
            return  # RabbitMQ: deleting a missing exchange is not an error
        # In use means bound as a source; being another exchange's destination does not count.
        if if_unused and len(exchange.router):
            raise ChannelError(
                PRECONDITION_FAILED, f"exchange '{name}' in vhost '{vhost.name}' in use", 40, 20
            )
        self._remove_exchange(vhost, exchange)

    def _remove_exchange(self, vhost: VirtualHost, exchange: Exchange) -> None:
        vhost.exchanges.pop(exchange.name, None)
        store = exchange.delayed
        if store is not None:  # what it holds goes with it
            store.delete()
            vhost.delayed_exchanges -= 1
            self._dirty_stores.pop(store, None)
            self.manager.delete_topic(store.log_topic)
        for binding in exchange.router.bindings():
            dest = binding.destination
            if isinstance(dest, Exchange):
                dest.sources.discard(exchange)
            self._forget_binding(vhost, exchange, dest, binding.binding_key, binding.arguments)
        for source in list(exchange.sources):
            for binding in source.router.unbind_destination(exchange):
                self._forget_binding(vhost, source, exchange, binding.binding_key, binding.arguments)
            self._maybe_auto_delete(vhost, source)
        if exchange.durable:
            self.metadata.delete("exchange", (vhost.name, exchange.name))

    def _maybe_auto_delete(self, vhost: VirtualHost, exchange: Exchange) -> None:
        if exchange.auto_delete and not len(exchange.router) and exchange.name in vhost.exchanges:
            self._remove_exchange(vhost, exchange)

    # =============================================================== queues
    def declare_queue(self, vhost: VirtualHost, name: str, *, owner: BrokerConnection,
                      passive: bool, durable: bool, exclusive: bool, auto_delete: bool,
                      arguments: dict[str, Any], server_named: bool) -> Queue:  # fmt: skip
        """Queue.Declare, checked in RabbitMQ 4.x's order (rabbit_channel, rabbit_amqqueue)."""
        existing = vhost.queues.get(name)
        if passive:
            if existing is None:
                raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{vhost.name}'", 50, 10)
            self.check_exclusive(existing, owner)
            return existing
        if not server_named and name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'", 50, 10
            )
        durable = durable and not exclusive  # RabbitMQ 4.x: an exclusive queue is never durable
        if existing is not None:
            # Strict: the declaring connection must be the owner, or both must have none.
            if existing.exclusive_owner is not (owner if exclusive else None):
                self._locked(existing)
            resource = f"queue '{name}' in vhost '{vhost.name}'"
            _check_settings_equivalence(
                resource,
                (("durable", durable, existing.durable), ("auto_delete", auto_delete, existing.auto_delete)),
                (50, 10),
            )
            for key in (*QUEUE_ARGUMENT_TYPES, *STREAM_ARGUMENTS):
                _check_arg_equivalence(key, arguments.get(key), existing.arguments.get(key),
                                       resource, (50, 10))  # fmt: skip
            self.counters["queues_declared"] += 1
            return existing
        stream = is_stream(arguments)
        if stream:
            check_stream_declare(vhost.name, name, arguments, durable=durable, exclusive=exclusive,
                                 auto_delete=auto_delete, server_named=server_named)  # fmt: skip
        else:
            self._check_queue_arguments(vhost, name, arguments)
        topic_name = self._topic_name(vhost.name, name)
        if self.manager.topic(topic_name) is not None:
            self.manager.delete_topic(topic_name)
        config = self.log_config if durable else self.transient_log_config
        if stream:
            config = stream_log_config(config, arguments)
        topic = self.manager.create_topic(topic_name, partition_count(arguments), config)
        part = topic.partition(0)
        if stream and is_partitioned(arguments):
            queue = open_partitioned_stream(vhost.name, name, topic, arguments=dict(arguments),
                                            on_dirty=self._queue_dirty, offsets=self.stream_offsets)  # fmt: skip
        elif stream:
            queue = StreamQueue(vhost.name, name, part, arguments=dict(arguments),
                                on_dirty=self._queue_dirty, offsets=self.stream_offsets)  # fmt: skip
        elif is_partitioned(arguments):
            queue = open_partitioned(
                vhost.name, name, topic, durable=durable, exclusive_owner=owner if exclusive else None,
                auto_delete=auto_delete, arguments=dict(arguments), on_dirty=self._queue_dirty,
            )  # fmt: skip
        else:
            queue = Queue(
                vhost.name, name, part, durable=durable, exclusive_owner=owner if exclusive else None,
                auto_delete=auto_delete, arguments=dict(arguments), on_dirty=self._queue_dirty,
            )  # fmt: skip
        queue.on_dead_letter = self.dead_letter
        queue.on_unused_expired = self.delete_queue
        queue.touch()  # x-expires counts from now
        vhost.queues[name] = queue
        self.counters["queues_declared"] += 1
        self.counters["queues_created"] += 1
        if exclusive:
            owner.exclusive_queues.append(queue)
        if durable:
            self.metadata.put("queue", (vhost.name, name), {
                "auto_delete": auto_delete, "arguments": encode_arguments(arguments),
            })  # fmt: skip
        return queue

    def _check_queue_arguments(self, vhost: VirtualHost, name: str, arguments: dict[str, Any]) -> None:
        """The declare-time checks of rabbit_channel and rabbit_amqqueue, with their texts."""
        dlx = arguments.get("x-dead-letter-exchange")
        if dlx is not None and not isinstance(dlx, str):
            raise ChannelError(
                PRECONDITION_FAILED,
                f"invalid type '{_arg_type(dlx)}' for arg 'x-dead-letter-exchange' in queue "
                f"'{name}' in vhost '{vhost.name}'",
                50,
                10,
            )
        for key, value in arguments.items():
            types = QUEUE_ARGUMENT_TYPES.get(key)
            if types is None:
                continue
            error = None
            if types == (int,):
                if isinstance(value, bool) or not isinstance(value, int):
                    error = f'"expected integer, got {_arg_type(value)}"'
                elif key == "x-expires" and value == 0:
                    error = "{value_zero,0}"
                elif value < 0:
                    error = f"{{value_negative,{value}}}"
                elif key in ("x-message-ttl", "x-expires", "x-retain-settled") and value > MAX_EXPIRY:
                    error = f"{{value_too_large,{value}}}"
                elif key == "x-max-priority" and value > 255:
                    error = f"{{max_value_exceeded,{value}}}"
            elif not isinstance(value, types) or isinstance(value, bool) and bool not in types:
                error = f"{{unacceptable_type,{_arg_type(value)}}}"
            elif key == "x-overflow" and value not in OVERFLOW_MODES:
                error = "invalid_overflow"
            elif key == "x-delayed-retry-type" and value not in RETRY_TYPES:
                error = f"{{invalid_delayed_retry_type,{value}}}"
            elif key == "x-dead-letter-routing-key" and "x-dead-letter-exchange" not in arguments:
                error = "routing_key_but_no_dlx_defined"
            if error is None:
                error = partition_argument_error(key, value, arguments)
            if error is not None:
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"invalid arg '{key}' for queue '{name}' in vhost '{vhost.name}': {error}",
                    50,
                    10,
                )

    def _locked(self, queue: Queue) -> None:
        raise ChannelError(
            RESOURCE_LOCKED,
            f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost "
            f"'{queue.vhost}'. It could be originally declared on another connection or the "
            "exclusive property value does not match that of the original declaration.",
        )

    def check_exclusive(self, queue: Queue, owner: BrokerConnection) -> None:
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            self._locked(queue)

    def find_queue(self, vhost: VirtualHost, name: str, owner: BrokerConnection) -> Queue:
        queue = vhost.queues.get(name)
        if queue is None:
            raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{vhost.name}'")
        self.check_exclusive(queue, owner)
        return queue

    def delete_queue(self, queue: Queue) -> None:
        vhost = self.vhosts.get(queue.vhost)
        if queue.deleted or vhost is None:
            return
        queue.deleted = True
        self.counters["queues_deleted"] += 1
        vhost.queues.pop(queue.name, None)
        for conn in list(self.connections):
            conn.cancel_consumers_of(queue)
        queue.consumers.clear()
        for exchange in list(vhost.exchanges.values()):
            removed = exchange.router.unbind_destination(queue)
            for binding in removed:
                self._forget_binding(vhost, exchange, queue, binding.binding_key, binding.arguments)
            if removed:  # only an exchange that just lost a binding may auto-delete
                self._maybe_auto_delete(vhost, exchange)
        if queue.exclusive_owner is not None and queue in queue.exclusive_owner.exclusive_queues:
            queue.exclusive_owner.exclusive_queues.remove(queue)
        if queue.durable:
            self.metadata.delete("queue", (queue.vhost, queue.name))
            self.states.delete(queue.state_key)
            if isinstance(queue, PartitionedQueue):
                queue.forget_states(self.states)
        if isinstance(queue, StreamQueue | PartitionedStream):
            queue.forget_consumer_offsets()
        self._dirty_queues.pop(queue, None)
        self.manager.delete_topic(self._topic_name(queue.vhost, queue.name))

    # ============================================================= bindings
    def bind(self, vhost: VirtualHost, source: str, destination: str, key: str,
             arguments: dict[str, Any], *, to_exchange: bool,
             owner: BrokerConnection | None = None) -> None:  # fmt: skip
        if owner is not None and not to_exchange:
            queue = vhost.queues.get(destination)
            if queue is not None:
                self.check_exclusive(queue, owner)
        self._bind(vhost, source, destination, key, arguments, to_exchange)

    def _bind(self, vhost: VirtualHost, source: str, destination: str, key: str,
              arguments: dict[str, Any], to_exchange: bool) -> None:  # fmt: skip
        method = (40, 30) if to_exchange else (50, 20)
        if to_exchange:
            _check_not_default_exchange(destination, *method)
        _check_not_default_exchange(source, *method)
        exchange = vhost.exchanges.get(source)
        if exchange is None:  # RabbitMQ names a missing source before a missing destination
            raise ChannelError(NOT_FOUND, f"no exchange '{source}' in vhost '{vhost.name}'", *method)
        dest = vhost.exchanges.get(destination) if to_exchange else vhost.queues.get(destination)
        if dest is None:
            kind = "exchange" if to_exchange else "queue"
            raise ChannelError(NOT_FOUND, f"no {kind} '{destination}' in vhost '{vhost.name}'", *method)
        try:
            added = exchange.router.bind(dest, key, arguments)
        except BindingRejected as exc:
            raise ChannelError(exc.error.reply_code, exc.error.reply_text, *method) from None
        if isinstance(dest, Exchange):
            dest.sources.add(exchange)
        if added and exchange.durable and dest.durable:
            self.metadata.put("binding", _binding_key(vhost.name, source, dest, key, arguments), {})

    def unbind(self, vhost: VirtualHost, source: str, destination: str, key: str,
               arguments: dict[str, Any], *, to_exchange: bool,
               owner: BrokerConnection | None = None) -> None:  # fmt: skip
        method = (40, 40) if to_exchange else (50, 50)
        if to_exchange:
            _check_not_default_exchange(destination, *method)
        _check_not_default_exchange(source, *method)
        dest = vhost.exchanges.get(destination) if to_exchange else vhost.queues.get(destination)
        exchange = vhost.exchanges.get(source)
        if dest is None or exchange is None:
            return  # RabbitMQ: unbinding something missing is not an error
        if not to_exchange and owner is not None:
            self.check_exclusive(dest, owner)
        if exchange.router.unbind(dest, key, arguments):
            self._forget_binding(vhost, exchange, dest, key, arguments)
            if isinstance(dest, Exchange) and not any(
                b.destination is dest for b in exchange.router.bindings()
            ):
                dest.sources.discard(exchange)
            self._maybe_auto_delete(vhost, exchange)

    def _forget_binding(self, vhost: VirtualHost, exchange: Exchange, dest: Any, key: str,
                        arguments: Any) -> None:  # fmt: skip
        if exchange.durable and dest.durable:
            self.metadata.delete("binding", _binding_key(vhost.name, exchange.name, dest, key, arguments))

    # ========================================================= dead letters
    def dead_letter(self, queue: Queue, msg: Message, reason: str) -> None:
        """Republish a message that left queue unconsumed to its dead-letter exchange.

        The copy is enqueued (and so appended at this turn's flush) before the
        source's settled state is written in the same flush: a crash in
        between duplicates rather than loses. Without a dead-letter exchange,
        or when it is gone, the message is dropped, as RabbitMQ does. Counted
        as RabbitMQ counts: `dead_lettered_<reason>` when there is an exchange
        to republish to, `discarded_<reason>` when not.
        """
        dlx = queue.arguments.get("x-dead-letter-exchange")
        if not isinstance(dlx, str):
            self.counters[f"discarded_{reason}"] += 1
            return
        vhost = self.vhosts.get(queue.vhost)
        exchange = vhost.exchanges.get(dlx) if vhost is not None else None
        if exchange is None:
            self.counters[f"discarded_{reason}"] += 1
            log.debug("dead-letter exchange '%s' of queue '%s' is missing: dropped", dlx, queue.name)
            return
        self.counters[f"dead_lettered_{reason}"] += 1
        original_rk = routing_key_of(msg.exchange_rk)
        explicit = bool(msg.flags & FLAG_EXPLICIT_KEY)
        properties = dead_letter_properties(
            msg.properties, ours=bool(msg.flags & FLAG_DEATHS_OURS), queue=queue.name,
            reason=reason, exchange=exchange_of(msg.exchange_rk),
            routing_keys=death_routing_keys(original_rk, msg.properties, explicit_key=explicit),
            now_s=self.now_ms() // 1000,
        )  # fmt: skip
        dlrk = queue.arguments.get("x-dead-letter-routing-key")
        dlrk = dlrk if isinstance(dlrk, str) else None
        keys = dead_letter_routing_keys(original_rk, msg.properties, dlrk, explicit_key=explicit)
        targets: dict[Queue, None] = {}
        hold = Hold(properties) if vhost.delayed_exchanges else None
        for key in keys:
            for target in vhost.route(
                exchange, key, lambda: _headers_of(properties), lambda n: _property(properties, n),
                hold=hold,
            ):
                targets[target] = None
        held = hold is not None and bool(hold.exchanges)
        if not targets and not held:
            return
        flags = msg.flags | FLAG_DEATHS_OURS
        flags = flags | FLAG_EXPLICIT_KEY if dlrk is not None else flags & ~FLAG_EXPLICIT_KEY
        exrk = encode_short(dlx) + encode_short(dlrk if dlrk is not None else original_rk)
        if held:  # a delayed dead-letter exchange (or one on the way): held, routed when due
            self.hold_delayed(hold, flags, exrk, properties, msg.body)
        headers = record_headers(flags, exrk, properties)
        now = self.now_ms()
        for target in targets:
            # A queue absent from the raw bytes cannot be in the death history.
            if target.name.encode("utf-8", "surrogateescape") in properties and is_automatic_cycle(
                properties, target.name
            ):
                log.debug("dropping a dead-letter cycle through queue '%s'", target.name)
                continue
            target.enqueue(now, flags, exrk, properties, msg.body, headers)

    # ================================================================ turns
    def _queue_dirty(self, queue: Queue) -> None:
        self._dirty_queues[queue] = None
        if not self._flush_scheduled and not self._in_flush:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def _store_dirty(self, store: DelayedStore) -> None:
        self._dirty_stores[store] = None
        if not self._flush_scheduled and not self._in_flush:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def session_dirty(self, session: ChannelSession) -> None:
        self._dirty_sessions[session] = None
        if not self._flush_scheduled and not self._in_flush:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush_if_dirty(self) -> None:
        if (self._dirty_queues or self._dirty_sessions or self._dirty_stores) and not self._in_flush:
            self.flush()

    def flush(self) -> None:
        """End of turn: append each queue's batch, dispatch, confirm, persist queue states."""
        self._flush_scheduled = False
        if self._stopped:
            return
        self._in_flush = True
        try:
            touched: dict[Queue, None] = {}
            while self._dirty_queues or self._dirty_stores:
                while self._dirty_queues:
                    batch = self._dirty_queues
                    self._dirty_queues = {}
                    for queue in batch:
                        touched[queue] = None
                        if not queue.deleted:
                            queue.flush_appends()
                # After the queues: a delayed store settles what it routed only
                # once the queue appends that carry it are written.
                stores = self._dirty_stores
                self._dirty_stores = {}
                for store in stores:
                    store.flush_appends()
            sessions = self._dirty_sessions
            self._dirty_sessions = {}
            for session in sessions:
                session.finish_turn()
            states = []
            for queue in touched:
                if queue.state_dirty and not queue.deleted:
                    queue.state_dirty = False
                    if queue.durable:
                        states.append((queue.state_key, queue.state_bytes()))
                    queue.release_settled_segments()
            if states:
                self.states.put_many(states)
        finally:
            self._in_flush = False
            if (self._dirty_queues or self._dirty_sessions or self._dirty_stores) and not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self.flush)

    async def _upkeep_loop(self) -> None:
        """Now and then: write recovery points (so a crash re-checks little), drop old segments."""
        while True:
            await asyncio.sleep(30)
            try:
                self.manager.checkpoint()
            except Exception:
                log.exception("checkpoint failed")
            retention.sweep(q for vhost in self.vhosts.values() for q in vhost.iter_queues())
            apply_stream_retention(q for vhost in self.vhosts.values() for q in vhost.iter_queues())

    # ================================================================ stop
    async def stop(self) -> None:
        """Stop accepting, close connections with 320, flush, fsync, mark a clean shutdown."""
        for server in self.servers:
            server.close()
        for runner in self.http_runners:
            await runner.cleanup()
        for store in self._delayed_stores():  # nothing more falls due from here on
            store.stop_timers()
        for conn in list(self.connections):
            conn.conn.close(
                ConnectionError(CONNECTION_FORCED, "broker forced connection closure with reason 'shutdown'")
            )
            proto = conn.conn.transport_protocol
            if proto is not None:
                proto._flush()
        self.flush()
        if self._upkeep is not None:
            self._upkeep.cancel()
        await asyncio.sleep(0.05)
        for conn in list(self.connections):
            proto = conn.conn.transport_protocol
            if proto is not None and proto.transport is not None:
                proto.transport.close()
        # Closed transports report connection_lost on a later turn; the channels they
        # close requeue their unacked deliveries. Write that, then nothing more.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.flush()
        # Delayed messages routed lately are settled once their queue appends are
        # durable: wait for that (a commit round), so a restart does not route them again.
        deadline = time.monotonic() + 5.0
        while any(store.settling for store in self._delayed_stores()) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            self.flush()
        self._stopped = True
        if self.manager is not None:
            await self.manager.aclose()
        log.info("broker stopped cleanly")


def _delayed_router(arguments: dict[str, Any]) -> Any:
    """The router of an x-delayed-message exchange (its x-delayed-type's), or the error value.

    The texts are the RabbitMQ delayed-message plugin's; an unknown type is
    refused as RabbitMQ 4.x refuses one in Exchange.Declare.
    """
    underlying = arguments.get(DELAYED_TYPE_ARG)
    if isinstance(underlying, bytes | bytearray):
        underlying = bytes(underlying).decode("utf-8", "replace")
    if not isinstance(underlying, str):
        return InvalidArguments(
            f"Invalid argument, '{DELAYED_TYPE_ARG}' must be an existing exchange type"
        )
    if underlying == DELAYED_TYPE:
        return InvalidArguments(
            f"Invalid argument, '{DELAYED_TYPE}' can't be used for '{DELAYED_TYPE_ARG}'"
        )
    return make_exchange_type(underlying, arguments)


def _state_key(vhost: str, name: str) -> bytes:
    return f"queue\x00{vhost}\x00{name}".encode("utf-8", "surrogateescape")


def _binding_key(vhost: str, source: str, dest: Any, key: str, arguments: Any) -> tuple[str, ...]:
    kind = "e" if isinstance(dest, Exchange) else "q"
    return (vhost, source, kind, dest.name, key, encode_arguments(dict(arguments)))


def _check_not_default_exchange(name: str, class_id: int, method_id: int) -> None:
    if name == "":
        raise ChannelError(
            ACCESS_REFUSED, "operation not permitted on the default exchange", class_id, method_id
        )


def _arg_type(value: Any) -> str:
    """The field-table type RabbitMQ would name for value, as pika and py-amqp encode it.

    The wire layer hands the broker decoded values, so an integer's exact
    field type (pamqp-based clients pick the smallest) is not known here.
    """
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, bytes | bytearray):
        return "binary"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    if value is None:
        return "void"
    if isinstance(value, str):
        return "longstr"
    return type(value).__name__


def _same_arg(new: Any, old: Any) -> bool:
    """rabbit_misc:assert_args_equivalence: same type class (every integer type is one) and value."""
    return type(new) is type(old) and new == old


def _erl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


def _check_arg_equivalence(key: str, new: Any, old: Any, resource: str,
                           method: tuple[int, int]) -> None:  # fmt: skip
    """406 when an argument RabbitMQ compares differs, with RabbitMQ's text."""
    if new is None and old is None or new is not None and old is not None and _same_arg(new, old):
        return
    if new is not None and old is not None:
        received, current = f"'{_erl_value(new)}'", f"'{_erl_value(old)}'"
    else:
        received, current = _fmt_typed(new), _fmt_typed(old)
    raise ChannelError(
        PRECONDITION_FAILED,
        f"inequivalent arg '{key}' for {resource}: received {received} but current is {current}",
        *method,
    )


def _fmt_typed(value: Any) -> str:
    if value is None:
        return "none"
    return f"the value '{_erl_value(value)}' of type '{_arg_type(value)}'"


def _check_settings_equivalence(
    resource: str, settings: tuple[tuple[str, Any, Any], ...], method: tuple[int, int]
) -> None:
    """406 'inequivalent arg' when a redeclare asks for other settings than the entity has."""
    for field, new, old in settings:
        if new != old:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"inequivalent arg '{field}' for {resource}: "
                f"received '{_fmt(new)}' but current is '{_fmt(old)}'",
                *method,
            )


def _fmt(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "")
