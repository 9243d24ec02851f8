"""What the API changes: declare, delete, bind, publish, get, purge, close.

Each goes through the broker's own methods, so it gets the same checks
and RabbitMQ texts as the AMQP operation, and is checked against the
caller's configure/write/read patterns in that vhost as the AMQP operation
would be. Publish and get run on a short-lived internal channel (a
BrokerConnection without a socket), as RabbitMQ runs them on a channel of
its own; that channel's counts are added to the vhost's and the broker's
totals when it is done, as a closed channel's are.
"""

from __future__ import annotations

from typing import Any

from warrenmq.amqp import AMQPError, ChannelError, Connection
from warrenmq.amqp.constants import ACCESS_REFUSED, RESOURCE_LOCKED

from ..handler import BrokerConnection
from ..session import ChannelSession
from . import errors
from .auth import Caller
from .convert import encode_payload, properties_from_json, properties_to_json
from .errors import ApiError, bad_request

ACKMODES = {
    "ack_requeue_true": ("reject", True),
    "reject_requeue_true": ("reject", True),
    "ack_requeue_false": ("ack", False),
    "reject_requeue_false": ("reject", False),
}


def _require(caller: Caller, vhost: str, kind: str, resource: str) -> None:
    if not caller.permitted(vhost, kind, resource):
        raise errors.access_refused()


# ------------------------------------------------------------ declarations
def declare_queue(caller: Caller, vhost: Any, name: str, durable: bool, auto_delete: bool,
                  arguments: dict[str, Any]) -> bool:  # fmt: skip
    """Declare (or check) a queue; True when it was created."""
    _require(caller, vhost.name, "configure", name)
    created = name not in vhost.queues
    try:
        caller.broker.declare_queue(
            vhost, name, owner=None, passive=False, durable=durable, exclusive=False,
            auto_delete=auto_delete, arguments=arguments, server_named=False,
        )  # fmt: skip
    except AMQPError as exc:
        raise errors.from_declare(exc) from None
    return created


def delete_queue(caller: Caller, vhost: Any, queue: Any, if_empty: bool, if_unused: bool) -> None:
    _require(caller, vhost.name, "configure", queue.name)
    if queue.exclusive_owner is not None:
        raise errors.from_declare(_locked(queue))
    queue.flush_appends()
    if if_unused and queue.consumers:
        raise bad_request(f"queue '{queue.name}' in vhost '{vhost.name}' in use")
    if if_empty and queue.message_count:
        raise bad_request(f"queue '{queue.name}' in vhost '{vhost.name}' not empty")
    caller.broker.delete_queue(queue)


def purge_queue(caller: Caller, vhost: Any, queue: Any) -> int:
    _require(caller, vhost.name, "read", queue.name)
    if queue.exclusive_owner is not None:
        raise errors.from_declare(_locked(queue))
    try:
        return queue.purge()
    except AMQPError as exc:  # a stream refuses it: 400 with the text, as RabbitMQ's API
        raise errors.from_declare(exc) from None


def declare_exchange(caller: Caller, vhost: Any, name: str, type_name: str, durable: bool,
                     auto_delete: bool, internal: bool, arguments: dict[str, Any]) -> bool:  # fmt: skip
    """Declare (or check) an exchange; True when it was created."""
    _require(caller, vhost.name, "configure", name)
    created = name not in vhost.exchanges
    try:
        exchange = caller.broker.declare_exchange(
            vhost, name, type_name, passive=False, durable=durable, auto_delete=auto_delete,
            internal=internal, arguments=arguments,
        )  # fmt: skip
    except AMQPError as exc:
        raise errors.from_declare(exc) from None
    if created:
        exchange.declared_by = caller.name
    return created


def delete_exchange(caller: Caller, vhost: Any, name: str, if_unused: bool) -> None:
    _require(caller, vhost.name, "configure", name)
    try:
        caller.broker.delete_exchange(vhost, name, if_unused=if_unused)
    except AMQPError as exc:
        raise errors.from_declare(exc) from None


def bind(caller: Caller, vhost: Any, source: str, destination: str, to_exchange: bool,
         routing_key: str, arguments: dict[str, Any]) -> None:  # fmt: skip
    _require(caller, vhost.name, "write", destination)
    _require(caller, vhost.name, "read", source)
    try:
        caller.broker.bind(vhost, source, destination, routing_key, arguments, to_exchange=to_exchange)
    except AMQPError as exc:
        raise errors.from_declare(exc) from None


def unbind(caller: Caller, vhost: Any, source: str, destination: str, to_exchange: bool,
           routing_key: str, arguments: Any) -> None:  # fmt: skip
    _require(caller, vhost.name, "write", destination)
    _require(caller, vhost.name, "read", source)
    try:
        caller.broker.unbind(vhost, source, destination, routing_key, dict(arguments),
                             to_exchange=to_exchange)  # fmt: skip
    except AMQPError as exc:
        raise errors.from_declare(exc) from None


def _locked(queue: Any) -> ChannelError:
    return ChannelError(
        RESOURCE_LOCKED,
        f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost '{queue.vhost}'. "
        "It could be originally declared on another connection or the exclusive property value "
        "does not match that of the original declaration.",
    )


# ------------------------------------------------------- internal channel
class InternalChannel:
    """A channel with no socket, for one API publish or get; its counts outlive it."""

    def __init__(self, caller: Caller, vhost: Any) -> None:
        self.broker = caller.broker
        self.vhost = vhost
        conn = Connection()
        conn.username = caller.name
        self.connection = BrokerConnection(self.broker, conn)
        self.connection.vhost = vhost
        self.session = ChannelSession(conn, 1, self.connection)

    def close(self) -> None:
        session = self.session
        fold = getattr(session, "fold_counters_into", None)
        if fold is not None:
            fold(self.broker.counters)
            fold(self.vhost.counters)


def publish(caller: Caller, vhost: Any, exchange: str, routing_key: str, properties: bytes,
            body: bytes) -> bool:  # fmt: skip
    """Publish one message; True when it reached a queue (or a delayed exchange held it)."""
    shown = exchange or "amq.default"  # permissions name the default exchange so
    if not caller.permitted(vhost.name, "write", shown):
        raise errors.from_publish(ChannelError(
            ACCESS_REFUSED,
            f"access to exchange '{shown}' in vhost '{vhost.name}' refused for user '{caller.name}'",
        ))  # fmt: skip
    channel = InternalChannel(caller, vhost)
    try:
        channel.session.counters["publish"] += 1
        routed = channel.connection._route(exchange, routing_key, properties)
        queues, hold = routed
        channel.connection.publish(channel.session, exchange, routing_key, False, properties, body,
                                   routed)  # fmt: skip
    except AMQPError as exc:
        raise errors.from_publish(exc) from None
    finally:
        channel.close()
    return bool(queues) or hold is not None


def get(caller: Caller, vhost: Any, queue_name: str, count: int, ackmode: str, encoding: str,
        truncate: int | None) -> list[dict[str, Any]]:  # fmt: skip
    """basic.get up to count messages, then settle them all as ackmode says."""
    if ackmode not in ACKMODES:
        raise bad_request(f"Unsupported ackmode '{ackmode}'. Please use one of "
                          f"{', '.join(ACKMODES)}.")  # fmt: skip
    if encoding not in ("auto", "base64"):
        raise bad_request("Unsupported encoding. Please use auto or base64.")
    channel = InternalChannel(caller, vhost)
    try:
        if not caller.permitted(vhost.name, "read", queue_name):
            raise ChannelError(ACCESS_REFUSED, f"access to queue '{queue_name}' in vhost "
                                               f"'{vhost.name}' refused for user '{caller.name}'")  # fmt: skip
        queue = caller.broker.find_queue(vhost, queue_name, channel.connection)
        messages, last_tag = _take(channel.session, queue, count, encoding, truncate)
        if last_tag:
            verb, requeue = ACKMODES[ackmode]
            if verb == "ack":
                channel.session.ack(last_tag, True)
            else:
                channel.session.reject(last_tag, True, requeue)
        return messages
    except AMQPError as exc:
        raise errors.from_get(exc) from None
    finally:
        channel.close()


def _take(session: ChannelSession, queue: Any, count: int, encoding: str,
          truncate: int | None) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """As basic.get, count times: each stays unacked on the session; also the last tag (0: none)."""
    counters = session.counters
    queue.touch()
    queue.flush_appends()
    out = []
    tag = 0
    for _ in range(count):
        item = queue.take()
        if item is None:
            counters["get_empty"] += 1
            queue.counters["get_empty"] += 1
            break
        msg, redelivered = item
        tag = session.next_delivery_tag()
        counters["get"] += 1
        queue.counters["get"] += 1
        if redelivered:
            counters["redeliver"] += 1
        session.track(tag, queue, msg, None)
        queue.delivered(msg.offset)
        exrk = msg.exchange_rk
        exchange = exrk[1 : 1 + exrk[0]].decode("utf-8", "surrogateescape")
        routing_key = exrk[2 + exrk[0] :].decode("utf-8", "surrogateescape")
        payload, payload_encoding = encode_payload(msg.body, encoding, truncate)
        out.append({
            "payload_bytes": len(msg.body),
            "redelivered": redelivered,
            "exchange": exchange,
            "routing_key": routing_key,
            "message_count": queue.message_count,
            "properties": properties_to_json(msg.properties),
            "payload": payload,
            "payload_encoding": payload_encoding,
        })  # fmt: skip
    return out, tag


# -------------------------------------------------------------- connections
def close_connection(bc: Any, reason: str) -> None:
    bc.force_close(reason)


def aliveness(caller: Caller, vhost: Any) -> None:
    """RabbitMQ's aliveness test: declare `aliveness-test`, publish to it and get the message back."""
    name = "aliveness-test"
    for kind in ("configure", "write", "read"):
        _require(caller, vhost.name, kind, name)
    declare_queue(caller, vhost, name, durable=False, auto_delete=False, arguments={})
    publish(caller, vhost, "", name, properties_from_json({}), b"test_message")
    messages = get(caller, vhost, name, 1, "ack_requeue_false", "auto", None)
    if not messages or messages[0]["payload"] != "test_message":
        raise ApiError(503, "failed", "aliveness test message did not come back")
