"""The broker's side of one AMQP connection: every method, with RabbitMQ's answers.

The wire layer (`warrenmq.amqp`) calls this handler in frame order. Errors
are raised as ChannelError / ConnectionError with RabbitMQ's reply codes and
texts; the wire layer closes the channel or connection and fills in the
class and method ids.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from pamqp import commands

from warrenmq.amqp import ChannelError, Connection, ConnectionError, ConnectionHandler, replies
from warrenmq.amqp.codec import decode_properties, encode_short
from warrenmq.amqp.constants import (
    ACCESS_REFUSED,
    CONNECTION_FORCED,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
)

from .consumer import Consumer
from .delayed import Hold
from .message import (
    FLAG_PERSISTENT,
    Message,
    delivery_mode,
    expiration,
    has_expiration,
    record_headers,
)
from .partitioned_stream import PartitionedStream
from .partitioned_stream_consumer import consume_partitioned_stream
from .session import ChannelSession
from .stream import StreamQueue
from .stream_consumer import consume_stream

if TYPE_CHECKING:
    from .queue import Queue
    from .server import Broker
    from .vhost import VirtualHost

log = logging.getLogger("warrenmq.broker")


def _server_name(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


class BrokerConnection(ConnectionHandler):
    """Handler for one client connection."""

    def __init__(self, broker: Broker, conn: Connection) -> None:
        self.broker = broker
        self.conn = conn
        self.sessions: dict[int, ChannelSession] = {}
        self.vhost: VirtualHost | None = None
        self.writable = True
        self.exclusive_queues: list[Queue] = []
        # Delivery tags acked, nacked or rejected in each channel's open transaction.
        self._tx_claimed: dict[int, set[int]] = {}
        self.name = "?"
        self.connected_at = time.time()

    # ------------------------------------------------------------ handshake
    def authenticate(self, mechanism: str, username: str, password: str) -> bool:
        return self.broker.authenticate(username, password, self.peer_host())

    def peer_host(self) -> str:
        proto = self.conn.transport_protocol
        peer = proto.transport.get_extra_info("peername") if proto and proto.transport else None
        return peer[0] if isinstance(peer, tuple) else ""

    def open_vhost(self, vhost: str) -> None:
        found = self.broker.vhosts.get(vhost)
        if found is None:
            raise ConnectionError(
                NOT_ALLOWED, f"vhost {vhost} not found", 10, 40
            )
        user = self.conn.username
        if not self.broker.users.can_access_vhost(user, vhost):
            raise ConnectionError(
                NOT_ALLOWED, f"access to vhost '{vhost}' refused for user '{user}'", 10, 40
            )
        self.vhost = found

    def connection_opened(self) -> None:
        proto = self.conn.transport_protocol
        self.name = proto.peer if proto is not None else "?"
        self.broker.connection_opened(self)
        log.info("connection %s opened (user '%s', vhost '%s')", self.name, self.conn.username, self.vhost.name)

    def connection_lost(self, exc: BaseException | None) -> None:
        for number in list(self.sessions):
            self.channel_closed(number)
        for queue in list(self.exclusive_queues):
            if not queue.deleted:
                self.broker.delete_queue(queue)
        self.exclusive_queues.clear()
        self.broker.connection_closed(self)
        if self.vhost is not None:
            log.info("connection %s closed (user '%s')", self.name, self.conn.username)

    def force_close(self, reason: str) -> None:
        """Close this connection from the broker's side (320 CONNECTION_FORCED), as an operator would."""
        log.info("closing connection %s: %s", self.name, reason)
        self.conn.close(ConnectionError(CONNECTION_FORCED, reason))
        proto = self.conn.transport_protocol
        if proto is not None:
            proto._flush()

    def before_write(self) -> None:
        # Appends and queue states are written before anything reaches this
        # client, so a delivery or ack it sees is never lost to a crash.
        self.broker.flush_if_dirty()

    def on_writable(self, writable: bool) -> None:
        self.writable = writable
        if writable:
            for session in self.sessions.values():
                for consumer in list(session.consumers.values()):
                    consumer.queue.dispatch()

    # ---------------------------------------------------------------- channels
    def channel_opened(self, channel: int) -> None:
        self.sessions[channel] = ChannelSession(self.conn, channel, self)
        self.broker.counters["channels_opened"] += 1

    def channel_closed(self, channel: int) -> None:
        session = self.sessions.pop(channel, None)
        self._tx_claimed.pop(channel, None)
        if session is None:
            return
        for consumer in list(session.consumers.values()):
            self._remove_consumer(consumer, notify=False)
        session.requeue_all()
        session.fold_counters_into(self.broker.counters)
        if self.vhost is not None:
            session.fold_counters_into(self.vhost.counters)
        self.broker.counters["channels_closed"] += 1

    def _session(self, channel: int) -> ChannelSession:
        return self.sessions[channel]

    # ------------------------------------------------------------- publishing
    def on_publish(self, channel: int, exchange: str, routing_key: str, mandatory: bool,
                   immediate: bool, properties: bytes, body: bytes) -> None:  # fmt: skip
        if immediate:
            raise ConnectionError(NOT_IMPLEMENTED, "immediate=true", 60, 40)
        session = self.sessions[channel]
        session.counters["publish"] += 1
        if session.transactional:
            # As RabbitMQ: routed now (a missing exchange fails now), delivered at the commit
            # to the queues routed to now.
            routed = self._route(exchange, routing_key, properties)
            session.tx_publishes.append((exchange, routing_key, mandatory, properties, body, routed))
            return
        self.publish(session, exchange, routing_key, mandatory, properties, body)

    def _publishable(self, exchange_name: str) -> Any:
        vhost = self.vhost
        exchange = vhost.exchanges.get(exchange_name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no exchange '{exchange_name}' in vhost '{vhost.name}'", 60, 40)
        if exchange.internal:
            raise ChannelError(
                ACCESS_REFUSED,
                f"cannot publish to internal exchange '{exchange_name}' in vhost '{vhost.name}'",
                60,
                40,
            )
        return exchange

    def _route(self, exchange_name: str, routing_key: str,
               properties: bytes) -> tuple[tuple[Queue, ...], Hold | None]:  # fmt: skip
        """The queues a publish reaches now, and the delayed exchanges that hold it."""
        exchange = self._publishable(exchange_name)
        vhost = self.vhost
        hold = Hold(properties) if vhost.delayed_exchanges else None
        queues = vhost.route(
            exchange, routing_key, lambda: _headers_of(properties),
            lambda name: _property(properties, name), hold=hold,
        )  # fmt: skip
        exchange.publish_in += 1
        exchange.publish_out += len(queues)
        return queues, hold if hold is not None and hold.exchanges else None

    def publish(self, session: ChannelSession, exchange_name: str, routing_key: str,
                mandatory: bool, properties: bytes, body: bytes,
                routed: tuple[tuple[Queue, ...], Hold | None] | None = None) -> None:  # fmt: skip
        if routed is None:
            queues, hold = self._route(exchange_name, routing_key, properties)
        else:  # routed earlier (a transaction): a queue deleted since then drops its copy
            queues, hold = routed
            was_routed = bool(queues) or hold is not None
            queues = tuple(q for q in queues if not q.deleted)
            if hold is not None:
                for ex in [ex for ex in hold.exchanges if ex.delayed is None or ex.delayed.deleted]:
                    del hold.exchanges[ex]
                if not hold.exchanges:
                    hold = None
            if was_routed and not queues and hold is None:
                mandatory = False  # RabbitMQ returns only what routed nowhere
        broker = self.broker
        if hold is not None:
            # Held by a delayed exchange: routed when due, so never returned now
            # (the plugin has no mandatory), and confirmed once durably held.
            if has_expiration(properties):
                _check_expiration(properties)
            persistent = delivery_mode(properties) == 2
            exrk = encode_short(exchange_name) + encode_short(routing_key)
            broker.hold_delayed(hold, FLAG_PERSISTENT if persistent else 0, exrk, properties, body)
            stores = tuple(ex.delayed for ex in hold.exchanges)
            if not queues:
                if session.confirming and session.note_publish(stores, True):
                    broker.session_dirty(session)
                return
            self._enqueue(session, queues, properties, body, exrk, persistent, stores)
            return
        if not queues:
            broker.counters["unroutable"] += 1
            session.counters["return_unroutable" if mandatory else "drop_unroutable"] += 1
            if mandatory:
                self.conn.send_content_method(
                    session.number,
                    replies.Return(312, "NO_ROUTE", exchange_name, routing_key),
                    properties,
                    body,
                )
            if session.confirming and session.note_publish((), False):
                broker.session_dirty(session)
            return
        if has_expiration(properties):
            _check_expiration(properties)
        persistent = delivery_mode(properties) == 2
        exrk = encode_short(exchange_name) + encode_short(routing_key)
        self._enqueue(session, queues, properties, body, exrk, persistent, ())

    def _enqueue(self, session: ChannelSession, queues: tuple[Queue, ...], properties: bytes,
                 body: bytes, exrk: bytes, persistent: bool, stores: tuple[Any, ...]) -> None:  # fmt: skip
        """Add a routed publish to its queues' batches and to the channel's confirm group."""
        broker = self.broker
        flags = FLAG_PERSISTENT if persistent else 0
        headers = record_headers(flags, exrk, properties)
        now = broker.now_ms()
        refused = False
        broker.counters["routed"] += len(queues)
        for queue in queues:
            if queue.rejects_overflow and not queue.admits(len(body)):
                refused = True  # x-overflow reject-publish(-dlx): the publisher gets a nack
                if queue.overflow == "reject-publish-dlx":
                    queue.dead_letter(Message(-1, flags, exrk, properties, body), "maxlen")
                continue
            queue.enqueue(now, flags, exrk, properties, body, headers)
        if session.confirming:
            # A held copy (stores) waits for its store's log like a persistent message.
            targets = queues + stores if stores else queues
            if session.note_publish(targets, persistent or bool(stores), refused):
                broker.session_dirty(session)

    # ---------------------------------------------------------------- acks
    def on_ack(self, channel: int, delivery_tag: int, multiple: bool) -> None:
        session = self.sessions[channel]
        if session.transactional:
            for tag in self._tx_claim(session, delivery_tag, multiple, 80):
                session.tx_acks.append(("ack", (tag, False)))
            return
        session.ack(delivery_tag, multiple)

    def on_nack(self, channel: int, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        self._nack(channel, delivery_tag, multiple, requeue, 120)

    def on_reject(self, channel: int, delivery_tag: int, requeue: bool) -> None:
        self._nack(channel, delivery_tag, False, requeue, 90)

    def _nack(self, channel: int, delivery_tag: int, multiple: bool, requeue: bool, method_id: int) -> None:
        session = self.sessions[channel]
        if session.transactional:
            for tag in self._tx_claim(session, delivery_tag, multiple, method_id):
                session.tx_acks.append(("reject", (tag, False, requeue)))
            return
        session.reject(delivery_tag, multiple, requeue)

    def _tx_claim(self, session: ChannelSession, tag: int, multiple: bool, method_id: int) -> list[int]:
        """The deliveries an ack/nack/reject inside a transaction settles at the commit.

        As in RabbitMQ, they are taken at once: an unknown or already taken
        tag is a 406 now, not at the commit, and `multiple` covers what is
        outstanding now, not what arrives before the commit.
        """
        claimed = self._tx_claimed.setdefault(session.number, set())
        if (tag != 0 or not multiple) and (tag not in session.unacked or tag in claimed):
            raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}", 60, method_id)
        if multiple:
            tags = [t for t in session.unacked if (tag == 0 or t <= tag) and t not in claimed]
        else:
            tags = [tag]
        claimed.update(tags)
        return tags

    # ---------------------------------------------------------------- methods
    def on_method(self, channel: int, method: Any) -> None:
        handler = getattr(self, "_" + method.name.replace(".", "_"), None)
        if handler is None:
            raise ConnectionError(NOT_IMPLEMENTED, f"{method.name} is not implemented")
        handler(self.sessions[channel], method)

    # channel
    def _Channel_Flow(self, session: ChannelSession, method: Any) -> None:
        if not method.active:
            raise ConnectionError(NOT_IMPLEMENTED, "active=false", 20, 20)
        self.conn.send_method(session.number, commands.Channel.FlowOk(True))

    def _Channel_FlowOk(self, session: ChannelSession, method: Any) -> None:
        pass

    # exchanges
    def _Exchange_Declare(self, session: ChannelSession, m: Any) -> None:
        self.broker.declare_exchange(
            self.vhost, m.exchange, m.exchange_type, passive=m.passive, durable=m.durable,
            auto_delete=m.auto_delete, internal=m.internal, arguments=m.arguments or {},
        )  # fmt: skip
        if not m.nowait:
            self.conn.send_method(session.number, commands.Exchange.DeclareOk())

    def _Exchange_Delete(self, session: ChannelSession, m: Any) -> None:
        self.broker.delete_exchange(self.vhost, m.exchange, if_unused=m.if_unused)
        if not m.nowait:
            self.conn.send_method(session.number, commands.Exchange.DeleteOk())

    def _Exchange_Bind(self, session: ChannelSession, m: Any) -> None:
        self.broker.bind(self.vhost, m.source, m.destination, m.routing_key, m.arguments or {},
                         to_exchange=True)  # fmt: skip
        if not m.nowait:
            self.conn.send_method(session.number, commands.Exchange.BindOk())

    def _Exchange_Unbind(self, session: ChannelSession, m: Any) -> None:
        self.broker.unbind(self.vhost, m.source, m.destination, m.routing_key, m.arguments or {},
                           to_exchange=True)  # fmt: skip
        if not m.nowait:
            self.conn.send_method(session.number, commands.Exchange.UnbindOk())

    # queues
    def _Queue_Declare(self, session: ChannelSession, m: Any) -> None:
        # A passive declare names no queue of its own: '' is looked up as ''.
        name = m.queue or ("" if m.passive else _server_name("amq.gen-"))
        queue = self.broker.declare_queue(
            self.vhost, name, owner=self, passive=m.passive, durable=m.durable,
            exclusive=m.exclusive, auto_delete=m.auto_delete, arguments=m.arguments or {},
            server_named=not m.queue,
        )  # fmt: skip
        session.last_queue = queue.name
        queue.touch()
        if not m.nowait:
            queue.flush_appends()
            # RabbitMQ counts no consumers on a stream here (its consumers are its channels' readers).
            consumers = 0 if isinstance(queue, StreamQueue | PartitionedStream) else len(queue.consumers)
            self.conn.send_method(
                session.number, replies.DeclareOk(queue.name, queue.message_count, consumers)
            )

    def _Queue_Bind(self, session: ChannelSession, m: Any) -> None:
        name = self._queue_name(session, m.queue)
        self.broker.bind(self.vhost, m.exchange, name, _binding_key_for(m.queue, m.routing_key, name),
                         m.arguments or {}, to_exchange=False, owner=self)  # fmt: skip
        if not m.nowait:
            self.conn.send_method(session.number, commands.Queue.BindOk())

    def _Queue_Unbind(self, session: ChannelSession, m: Any) -> None:
        name = self._queue_name(session, m.queue)
        self.broker.unbind(self.vhost, m.exchange, name, _binding_key_for(m.queue, m.routing_key, name),
                           m.arguments or {}, to_exchange=False, owner=self)  # fmt: skip
        self.conn.send_method(session.number, commands.Queue.UnbindOk())

    def _Queue_Purge(self, session: ChannelSession, m: Any) -> None:
        queue = self.broker.find_queue(self.vhost, self._queue_name(session, m.queue), self)
        count = queue.purge()
        if not m.nowait:
            self.conn.send_method(session.number, commands.Queue.PurgeOk(count))

    def _Queue_Delete(self, session: ChannelSession, m: Any) -> None:
        name = self._queue_name(session, m.queue)
        queue = self.vhost.queues.get(name)
        count = 0
        if queue is not None:
            self.broker.check_exclusive(queue, self)
            queue.flush_appends()
            if m.if_unused and queue.consumers:
                raise ChannelError(
                    PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.vhost.name}' in use"
                )
            if m.if_empty and queue.message_count:
                raise ChannelError(
                    PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.vhost.name}' not empty"
                )
            count = queue.message_count
            self.broker.delete_queue(queue)
        if not m.nowait:
            self.conn.send_method(session.number, commands.Queue.DeleteOk(count))

    def _queue_name(self, session: ChannelSession, name: str) -> str:
        """An empty queue name means the channel's last declared queue (RabbitMQ)."""
        if name:
            return name
        last = getattr(session, "last_queue", None)
        if last is None:
            raise ChannelError(NOT_FOUND, "no previously declared queue")
        return last

    # basic
    def _Basic_Qos(self, session: ChannelSession, m: Any) -> None:
        if m.prefetch_size != 0:
            raise ConnectionError(NOT_IMPLEMENTED, "prefetch_size!=0 (" + str(m.prefetch_size) + ")", 60, 10)
        if m.global_:
            session.global_prefetch = m.prefetch_count
        else:
            session.prefetch_count = m.prefetch_count
        # RabbitMQ's channel limiter: on with a global limit, off after any other basic.qos.
        session.limiter_active = bool(m.global_ and m.prefetch_count)
        self.conn.send_method(session.number, commands.Basic.QosOk())
        for consumer in list(session.consumers.values()):
            consumer.queue.dispatch()

    def _Basic_Consume(self, session: ChannelSession, m: Any) -> None:
        queue = self.broker.find_queue(self.vhost, self._queue_name(session, m.queue), self)
        tag = m.consumer_tag or _server_name("amq.ctag-")
        if tag in session.consumers:
            raise ConnectionError(
                NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", 60, 20
            )
        if isinstance(queue, StreamQueue):
            consume_stream(self.conn, session, queue, tag, m)
            return
        if isinstance(queue, PartitionedStream):
            consume_partitioned_stream(self.conn, session, queue, tag, m)
            return
        if m.exclusive and queue.consumers:
            raise ChannelError(
                ACCESS_REFUSED,
                f"queue '{queue.name}' in vhost '{self.vhost.name}' in exclusive use",
                60,
                20,
            )
        if any(c.exclusive for c in queue.consumers):
            raise ChannelError(
                ACCESS_REFUSED,
                f"queue '{queue.name}' in vhost '{self.vhost.name}' in exclusive use",
                60,
                20,
            )
        consumer = Consumer(
            tag, encode_short(tag), session, queue, m.no_ack, m.exclusive,
            session.prefetch_count, dict(m.arguments or {}),
        )  # fmt: skip
        session.consumers[tag] = consumer
        queue.add_consumer(consumer)
        if not m.nowait:
            self.conn.send_method(session.number, commands.Basic.ConsumeOk(tag))
        queue.flush_appends()
        queue.dispatch()

    def _Basic_Cancel(self, session: ChannelSession, m: Any) -> None:
        consumer = session.consumers.get(m.consumer_tag)
        if consumer is not None:
            self._remove_consumer(consumer, notify=False)
        if not m.nowait:
            self.conn.send_method(session.number, commands.Basic.CancelOk(m.consumer_tag))

    def _Basic_CancelOk(self, session: ChannelSession, m: Any) -> None:
        pass

    def _remove_consumer(self, consumer: Consumer, notify: bool) -> None:
        session = consumer.channel
        session.consumers.pop(consumer.tag, None)
        queue = consumer.queue
        queue.remove_consumer(consumer)
        if notify and self.conn.client_capabilities.get("consumer_cancel_notify"):
            self.conn.send_method(session.number, commands.Basic.Cancel(consumer.tag, nowait=True))
        if queue.auto_delete and queue.had_consumers and not queue.consumers and not queue.deleted:
            self.broker.delete_queue(queue)

    def _Basic_Get(self, session: ChannelSession, m: Any) -> None:
        queue = self.broker.find_queue(self.vhost, self._queue_name(session, m.queue), self)
        queue.touch()
        queue.flush_appends()
        item = queue.take()
        counters = session.counters
        if item is None:
            counters["get_empty"] += 1
            queue.counters["get_empty"] += 1
            self.conn.send_method(session.number, commands.Basic.GetEmpty())
            return
        msg, redelivered = item
        tag = session.next_delivery_tag()
        if redelivered:
            counters["redeliver"] += 1
        if m.no_ack:
            counters["get_no_ack"] += 1
            queue.counters["get_no_ack"] += 1
            queue.counters["delivered"] += 1
        else:
            counters["get"] += 1
            queue.counters["get"] += 1
            session.track(tag, queue, msg, None)
            queue.delivered(msg.offset)
        exchange = msg.exchange_rk[1 : 1 + msg.exchange_rk[0]].decode("utf-8", "surrogateescape")
        rk_start = 2 + msg.exchange_rk[0]
        routing_key = msg.exchange_rk[rk_start:].decode("utf-8", "surrogateescape")
        self.conn.send_content_method(
            session.number,
            replies.GetOk(tag, redelivered, exchange, routing_key, queue.message_count),
            msg.properties,
            msg.body,
        )

    def _Basic_Recover(self, session: ChannelSession, m: Any) -> None:
        if not m.requeue:
            raise ConnectionError(NOT_IMPLEMENTED, "requeue=false", 60, 110)
        session.requeue_all()
        self.conn.send_method(session.number, commands.Basic.RecoverOk())

    def _Basic_RecoverAsync(self, session: ChannelSession, m: Any) -> None:
        if not m.requeue:
            raise ConnectionError(NOT_IMPLEMENTED, "requeue=false", 60, 100)
        session.requeue_all()

    # confirms and transactions
    def _Confirm_Select(self, session: ChannelSession, m: Any) -> None:
        if session.transactional:
            raise ChannelError(
                PRECONDITION_FAILED, "cannot switch from tx to confirm mode", 85, 10
            )
        session.confirming = True
        if not m.nowait:
            self.conn.send_method(session.number, commands.Confirm.SelectOk())

    def _Tx_Select(self, session: ChannelSession, m: Any) -> None:
        if session.confirming:
            raise ChannelError(
                PRECONDITION_FAILED, "cannot switch from confirm to tx mode", 90, 10
            )
        session.transactional = True
        self.conn.send_method(session.number, commands.Tx.SelectOk())

    def _Tx_Commit(self, session: ChannelSession, m: Any) -> None:
        if not session.transactional:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional", 90, 20)
        publishes, acks = session.tx_publishes, session.tx_acks
        session.tx_publishes, session.tx_acks = [], []
        self._tx_claimed.pop(session.number, None)
        for exchange, rk, mandatory, props, body, routed in publishes:
            self.publish(session, exchange, rk, mandatory, props, body, routed)
        for kind, args in acks:
            if kind == "ack":
                session.ack(*args)
            else:
                session.reject(*args)
        self.conn.send_method(session.number, commands.Tx.CommitOk())

    def _Tx_Rollback(self, session: ChannelSession, m: Any) -> None:
        if not session.transactional:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional", 90, 30)
        session.tx_publishes.clear()
        session.tx_acks.clear()
        self._tx_claimed.pop(session.number, None)
        self.conn.send_method(session.number, commands.Tx.RollbackOk())

    # --------------------------------------------------------- used by broker
    def cancel_consumers_of(self, queue: Queue) -> None:
        """The queue is gone: its consumers on this connection get Basic.Cancel."""
        for session in self.sessions.values():
            for consumer in list(session.consumers.values()):
                if consumer.queue is queue:
                    session.consumers.pop(consumer.tag, None)
                    if self.conn.client_capabilities.get("consumer_cancel_notify"):
                        self.conn.send_method(
                            session.number, commands.Basic.Cancel(consumer.tag, nowait=True)
                        )


def _binding_key_for(queue_field: str, routing_key: str, queue_name: str) -> str:
    """RabbitMQ: with both the queue and the routing key empty, the key is the last queue's name."""
    return queue_name if queue_field == "" and routing_key == "" else routing_key


def _check_expiration(properties: bytes) -> None:
    """RabbitMQ refuses an expiration that is not a non-negative integer string."""
    value = expiration(properties)
    if value is None or not value.isdigit():
        raise ChannelError(PRECONDITION_FAILED, f"invalid expiration '{value}' for message", 60, 40)


def _headers_of(properties: bytes) -> dict[str, Any] | None:
    try:
        return decode_properties(properties).headers
    except Exception:
        return None


def _property(properties: bytes, name: str) -> Any:
    try:
        props = decode_properties(properties)
    except Exception:
        return None
    if name == "timestamp":
        ts = props.timestamp
        return int(ts.timestamp()) if ts is not None else None
    return getattr(props, name, None)


__all__ = ["BrokerConnection"]
