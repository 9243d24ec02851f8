"""Queues end to end with pika: declare, passive, server names, delete, purge, bind, exclusivity.

Each refusal is checked with its reply code and RabbitMQ's text. Exclusive
and auto-delete queues are watched from a second connection, as a user
would see them go.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

import pika
import pika.exceptions
import pytest
from pamqp import commands
from support.amqp_server import RawClient

DEADLINE = 10.0


def confirming(conn: pika.BlockingConnection):
    """A channel in confirm mode: each publish returns once the broker has taken it."""
    ch = conn.channel()
    ch.confirm_delivery()
    return ch


@contextmanager
def channel_error(code: int, text: str | None = None):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        yield info
    assert (info.value.reply_code, info.value.reply_text if text else None) == (code, text)


def locked(q: str) -> str:
    text = (f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. "
            "It could be originally declared on another connection or the exclusive property value "
            "does not match that of the original declaration.")  # fmt: skip
    # A reply text is a short string: RabbitMQ cuts a longer one to 252 bytes and "...".
    return text if len(text) <= 255 else text[:252] + "..."


def exists(conn: pika.BlockingConnection, queue: str) -> bool:
    ch = confirming(conn)
    try:
        ch.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 405:  # another connection's exclusive queue
            return True
        assert exc.reply_code == 404
        return False
    ch.close()
    return True


def wait_gone(conn: pika.BlockingConnection, queue: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while exists(conn, queue):
        assert time.monotonic() < deadline, f"queue {queue} is still there"
        conn.sleep(0.01)


def counts(ch, queue: str) -> tuple[int, int]:
    ok = ch.queue_declare(queue, passive=True).method
    return ok.message_count, ok.consumer_count


# ================================================================ declare
def test_server_named_queue(connect):
    ch = confirming(connect())
    ok = ch.queue_declare("", exclusive=True).method
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", ok.queue)
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    other = ch.queue_declare("", exclusive=True).method.queue
    assert other != ok.queue
    ch.basic_publish("", ok.queue, b"hi")
    assert ch.basic_get(ok.queue, auto_ack=True)[2] == b"hi"
    ch.queue_declare(ok.queue, passive=True)  # a passive declare by name is fine


def test_server_named_queue_redeclared_by_name_is_403(connect):
    ch = confirming(connect())
    name = ch.queue_declare("", exclusive=True).method.queue
    with channel_error(
        403, f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"
    ):
        ch.queue_declare(name, exclusive=True)


def test_reserved_amq_prefix_is_403(connect, names):
    name = "amq." + names("q")
    with channel_error(
        403, f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"
    ):
        connect().channel().queue_declare(name)


def test_declare_reports_counts_and_is_idempotent(connect, names, pump):
    conn = connect()
    ch = confirming(conn)
    q = names("q")
    ok = ch.queue_declare(
        q, durable=True, arguments={"x-message-ttl": 60000, "x-custom": "v"}
    ).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    ok = ch.queue_declare(q, durable=True, arguments={"x-message-ttl": 60000}).method
    assert (ok.message_count, ok.consumer_count) == (3, 0)
    got = []
    ch2 = conn.channel()
    ch2.basic_qos(prefetch_count=1)
    ch2.basic_consume(q, lambda _ch, m, _p, body: got.append(body))
    pump(conn, lambda: got)
    ok = ch.queue_declare(q, durable=True, arguments={"x-message-ttl": 60000}).method
    assert (ok.message_count, ok.consumer_count) == (2, 1)
    assert got == [b"0"]
    ch.queue_delete(q)


def test_passive_declare(connect, names):
    ch = confirming(connect())
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    ok = ch.queue_declare(q, passive=True, durable=True).method  # passive ignores the settings
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 2, 0)
    missing = names("missing")
    with channel_error(404, f"NOT_FOUND - no queue '{missing}' in vhost '/'"):
        ch.queue_declare(missing, passive=True)


@pytest.mark.parametrize(
    ("field", "first", "second"),
    [("durable", {"durable": False}, {"durable": True}),
     ("auto_delete", {"auto_delete": False}, {"auto_delete": True})],
)  # fmt: skip
def test_redeclare_with_other_settings_is_406(connect, names, field, first, second):
    conn = connect()
    ch = confirming(conn)
    q = names("q")
    ch.queue_declare(q, **first)
    text = (f"PRECONDITION_FAILED - inequivalent arg '{field}' for queue '{q}' in vhost '/': "
            "received 'true' but current is 'false'")  # fmt: skip
    with channel_error(406, text):
        ch.queue_declare(q, **second)
    conn.channel().queue_delete(q)


def test_redeclare_with_other_arguments_is_406(connect, names):
    conn = connect()
    ch = confirming(conn)
    q = names("q")
    ch.queue_declare(q, exclusive=True, arguments={"x-message-ttl": 1000, "x-max-length": 5})
    ch.queue_declare(q, exclusive=True, arguments={"x-message-ttl": 1000, "x-max-length": 5,
                                                   "x-not-compared": "anything"})  # fmt: skip
    text = (f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': "
            "received '2000' but current is '1000'")  # fmt: skip
    with channel_error(406, text):
        ch.queue_declare(q, exclusive=True, arguments={"x-message-ttl": 2000, "x-max-length": 5})
    ch = confirming(conn)
    text = (f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': "
            "received none but current is the value '5' of type 'signedint'")  # fmt: skip
    with channel_error(406, text):
        ch.queue_declare(q, exclusive=True, arguments={"x-message-ttl": 1000})


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        (
            {"x-message-ttl": "soon"},
            "x-message-ttl' for queue '{q}' in vhost '/': \"expected integer, got longstr\"",
        ),
        (
            {"x-message-ttl": -5},
            "x-message-ttl' for queue '{q}' in vhost '/': {{value_negative,-5}}",
        ),
        (
            {"x-max-length": True},
            "x-max-length' for queue '{q}' in vhost '/': \"expected integer, got bool\"",
        ),
        ({"x-expires": 0}, "x-expires' for queue '{q}' in vhost '/': {{value_zero,0}}"),
        (
            {"x-max-priority": 300},
            "x-max-priority' for queue '{q}' in vhost '/': {{max_value_exceeded,300}}",
        ),
        ({"x-overflow": "explode"}, "x-overflow' for queue '{q}' in vhost '/': invalid_overflow"),
        (
            {"x-message-ttl": 315_360_000_001},
            "x-message-ttl' for queue '{q}' in vhost '/': {{value_too_large,315360000001}}",
        ),
        (
            {"x-max-length-bytes": -1},
            "x-max-length-bytes' for queue '{q}' in vhost '/': {{value_negative,-1}}",
        ),
        (
            {"x-single-active-consumer": "yes"},
            "x-single-active-consumer' for queue '{q}' in vhost '/': {{unacceptable_type,longstr}}",
        ),
        (
            {"x-dead-letter-routing-key": "k"},
            "x-dead-letter-routing-key' for queue '{q}' in vhost '/': routing_key_but_no_dlx_defined",
        ),
    ],
)
def test_invalid_queue_argument_is_406(connect, names, arguments, detail):
    q = names("q")
    with channel_error(406, "PRECONDITION_FAILED - invalid arg '" + detail.format(q=q)):
        connect().channel().queue_declare(q, arguments=arguments)


def test_dead_letter_exchange_of_the_wrong_type_is_406(connect, names):
    q = names("q")
    text = (f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' "
            f"in queue '{q}' in vhost '/'")  # fmt: skip
    with channel_error(406, text):
        connect().channel().queue_declare(q, arguments={"x-dead-letter-exchange": 5})


# ================================================================ delete
def test_delete_returns_the_message_count(connect, names):
    ch = confirming(connect())
    q = names("q")
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    assert ch.queue_delete(q).method.message_count == 3
    assert ch.queue_delete(q).method.message_count == 0  # a missing queue is not an error
    with channel_error(404):
        ch.queue_declare(q, passive=True)


def test_delete_if_unused(connect, names):
    conn = connect()
    ch = confirming(conn)
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    tag = ch.basic_consume(q, lambda *a: None)
    with channel_error(406, f"PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"):
        conn.channel().queue_delete(q, if_unused=True)
    ch.basic_cancel(tag)
    ch.queue_delete(q, if_unused=True)
    assert not exists(conn, q)


def test_delete_if_empty(connect, names):
    conn = connect()
    ch = confirming(conn)
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"x")
    with channel_error(406, f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"):
        conn.channel().queue_delete(q, if_empty=True)
    ch.basic_get(q, auto_ack=True)
    ch.queue_delete(q, if_empty=True)
    assert not exists(conn, q)


def test_delete_drops_the_queue_bindings(connect, names):
    ch = confirming(connect())
    x, q = names("x"), names("q")
    ch.exchange_declare(x, "fanout")
    ch.queue_declare(q)
    ch.queue_bind(q, x)
    ch.queue_delete(q)
    ch.queue_declare(q, exclusive=True)  # same name, new queue: no binding
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "", b"x", mandatory=True)


# ================================================================ purge
def test_purge_drops_ready_messages_and_keeps_unacked_ones(connect, names):
    conn = connect()
    ch = confirming(conn)
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    method, _, body = ch.basic_get(q)  # unacked
    assert body == b"0"
    assert ch.queue_purge(q).method.message_count == 4
    assert counts(ch, q) == (0, 0)
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.redelivered) == (b"0", True)
    assert ch.queue_purge(q).method.message_count == 0
    missing = names("missing")
    with channel_error(404, f"NOT_FOUND - no queue '{missing}' in vhost '/'"):
        ch.queue_purge(missing)


# ================================================================ bindings
def test_bind_and_unbind(connect, names):
    ch = confirming(connect())
    x, q = names("x"), names("q")
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, x, "k1")
    ch.queue_bind(q, x, "k1")  # binding twice is one binding
    ch.queue_bind(q, x, "k2")
    for key in ("k1", "k2", "k3"):
        ch.basic_publish(x, key, key.encode())
    assert counts(ch, q) == (2, 0)
    ch.queue_purge(q)
    ch.queue_unbind(q, x, "k1")
    ch.queue_unbind(q, x, "k1")  # unbinding a missing binding is not an error
    ch.queue_unbind(names("missing"), x, "k1")  # nor is a missing queue
    ch.basic_publish(x, "k1", b"k1")
    ch.basic_publish(x, "k2", b"k2")
    assert ch.basic_get(q, auto_ack=True)[2] == b"k2"
    assert ch.basic_get(q, auto_ack=True) == (None, None, None)


def test_bind_to_missing_ends_is_404(connect, names):
    conn = connect()
    ch = confirming(conn)
    x, q = names("x"), names("q")
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q, exclusive=True)
    missing_q, missing_x = names("missing-q"), names("missing-x")
    with channel_error(404, f"NOT_FOUND - no queue '{missing_q}' in vhost '/'"):
        ch.queue_bind(missing_q, x, "k")
    with channel_error(404, f"NOT_FOUND - no exchange '{missing_x}' in vhost '/'"):
        conn.channel().queue_bind(q, missing_x, "k")
    with channel_error(404, f"NOT_FOUND - no exchange '{missing_x}' in vhost '/'"):
        conn.channel().queue_bind(missing_q, missing_x, "k")  # the exchange is named first


def test_consume_and_get_from_missing_queue_is_404(connect, names):
    conn = connect()
    missing = names("missing")
    with channel_error(404, f"NOT_FOUND - no queue '{missing}' in vhost '/'"):
        conn.channel().basic_consume(missing, lambda *a: None)
    with channel_error(404, f"NOT_FOUND - no queue '{missing}' in vhost '/'"):
        conn.channel().basic_get(missing)


# ============================================================= exclusive
def test_exclusive_queue_is_locked_to_its_connection(connect, names):
    owner = connect().channel()
    q = names("q")
    owner.queue_declare(q, exclusive=True)
    owner.exchange_declare(x := names("x"), "fanout")
    other = connect()
    attempts = {
        "declare": lambda ch: ch.queue_declare(q, exclusive=True),
        "declare non-exclusive": lambda ch: ch.queue_declare(q),
        "passive": lambda ch: ch.queue_declare(q, passive=True),
        "consume": lambda ch: ch.basic_consume(q, lambda *a: None),
        "get": lambda ch: ch.basic_get(q),
        "purge": lambda ch: ch.queue_purge(q),
        "delete": lambda ch: ch.queue_delete(q),
        "bind": lambda ch: ch.queue_bind(q, x),
    }
    for what, attempt in attempts.items():
        with channel_error(405, locked(q)):
            attempt(other.channel())
        assert other.is_open, what
    owner.basic_publish("", q, b"still mine")
    assert owner.basic_get(q, auto_ack=True)[2] == b"still mine"


def test_exclusive_flag_must_match_on_redeclare(connect, names):
    conn = connect()
    q, shared = names("q"), names("shared")
    conn.channel().queue_declare(q, exclusive=True)
    with channel_error(405, locked(q)):
        conn.channel().queue_declare(q)  # the owner, but not exclusive this time
    conn.channel().queue_declare(shared)
    with channel_error(405, locked(shared)):
        conn.channel().queue_declare(shared, exclusive=True)
    conn.channel().queue_delete(shared)


def test_exclusive_queue_goes_with_its_connection(connect, names):
    owner = connect()
    q = names("q")
    owner.channel().queue_declare(q, exclusive=True)
    watcher = connect()
    assert exists(watcher, q)
    owner.close()
    wait_gone(watcher, q)
    ch = watcher.channel()
    ch.queue_declare(q, exclusive=True)  # the name is free again


def test_exclusive_queue_goes_when_its_connection_drops(connect, names, broker):
    q = names("q")
    with RawClient(broker.port) as raw:
        raw.open()
        raw.send_method(1, commands.Channel.Open())
        raw.expect("Channel.OpenOk", 1)
        raw.send_method(1, commands.Queue.Declare(queue=q, exclusive=True))
        raw.expect("Queue.DeclareOk", 1)
        watcher = connect()
        assert exists(watcher, q)
    # The socket closed without Connection.Close.
    wait_gone(watcher, q)


# ============================================================= auto-delete
def test_auto_delete_queue_goes_after_its_last_consumer(connect, names):
    conn = connect()
    ch = confirming(conn)
    q = names("q")
    ch.queue_declare(q, auto_delete=True)
    assert exists(conn, q), "no consumer yet: it stays"
    t1 = ch.basic_consume(q, lambda *a: None)
    t2 = conn.channel().basic_consume(q, lambda *a: None)
    ch.basic_cancel(t1)
    assert counts(ch, q) == (0, 1)
    del t2
    conn2 = connect()
    conn.close()  # closing the channel of the last consumer counts as its cancel
    wait_gone(conn2, q)


def test_auto_delete_queue_goes_on_basic_cancel(connect, names):
    conn = connect()
    ch = confirming(conn)
    q = names("q")
    ch.queue_declare(q, auto_delete=True)
    tag = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(tag)
    wait_gone(conn, q)


def test_names_outside_the_old_amqp_domain_are_accepted(connect, names) -> None:
    """RabbitMQ takes any UTF-8 name: quotes, spaces and non-ASCII come back in every reply."""
    conn = connect()
    ch = conn.channel()
    queue = names('q"uoted ä')
    exchange = names("ex ä\\")
    assert ch.queue_declare(queue).method.queue == queue
    ch.exchange_declare(exchange, "direct")
    ch.queue_bind(queue, exchange, "k é")
    returned = []
    ch.add_on_return_callback(lambda _ch, method, _props, body: returned.append((method, body)))
    ch.basic_publish(exchange, "k é", b"routed")
    ch.basic_publish(exchange, "nowhere ü", b"back", mandatory=True)
    deadline = time.monotonic() + DEADLINE
    while not returned and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    method, body = returned[0]
    assert (method.reply_code, method.exchange, method.routing_key, body) == (
        312, exchange, "nowhere ü", b"back",
    )  # fmt: skip
    got, _props, body = ch.basic_get(queue, auto_ack=True)
    assert (got.exchange, got.routing_key, body) == (exchange, "k é", b"routed")
    ch.queue_delete(queue)
    ch.exchange_delete(exchange)
    conn.close()
