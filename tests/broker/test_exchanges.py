"""Exchanges end to end with pika: declare, delete, exchange-to-exchange bindings, alternates.

Every exchange type routes a real message; each refusal is checked with its
reply code and RabbitMQ's text, and the channel (not the connection) is what
a soft error closes.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import pika
import pika.exceptions
import pytest

PERSISTENT = pika.BasicProperties(delivery_mode=2)


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


def drain(ch, queue: str) -> list[bytes]:
    """Every message in queue, taken with basic.get (no ack)."""
    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def queues(ch, names, n: int) -> list[str]:
    out = []
    for i in range(n):
        q = names(f"q{i}")
        ch.queue_declare(q, exclusive=True)
        out.append(q)
    return out


# ================================================================ types
def test_direct_routes_on_equal_key(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "direct")
    qa, qb = queues(ch, names, 2)
    ch.queue_bind(qa, x, "a")
    ch.queue_bind(qb, x, "b")
    ch.queue_bind(qb, x, "a")
    for key in ("a", "b", "A", "c"):
        ch.basic_publish(x, key, key.encode())
    assert drain(ch, qa) == [b"a"]
    assert drain(ch, qb) == [b"a", b"b"]


def test_fanout_ignores_keys(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "fanout")
    qa, qb = queues(ch, names, 2)
    ch.queue_bind(qa, x, "whatever")
    ch.queue_bind(qb, x)
    ch.basic_publish(x, "k1", b"1")
    ch.basic_publish(x, "", b"2")
    assert drain(ch, qa) == [b"1", b"2"]
    assert drain(ch, qb) == [b"1", b"2"]


def test_topic_wildcards(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "topic")
    star, hash_, exact = queues(ch, names, 3)
    ch.queue_bind(star, x, "a.*")
    ch.queue_bind(hash_, x, "#.z")
    ch.queue_bind(exact, x, "a.b")
    for key in ("a.b", "a.b.z", "z", "a", "a.z"):
        ch.basic_publish(x, key, key.encode())
    assert drain(ch, star) == [b"a.b", b"a.z"]
    assert drain(ch, hash_) == [b"a.b.z", b"z", b"a.z"]
    assert drain(ch, exact) == [b"a.b"]


def test_headers_all_and_any(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "headers")
    q_all, q_any = queues(ch, names, 2)
    ch.queue_bind(q_all, x, arguments={"x-match": "all", "kind": "pdf", "size": 3})
    ch.queue_bind(q_any, x, arguments={"x-match": "any", "kind": "pdf", "size": 3})
    for body, headers in ((b"both", {"kind": "pdf", "size": 3}), (b"kind", {"kind": "pdf"}),
                          (b"none", {"kind": "png"}), (b"no-headers", None)):  # fmt: skip
        ch.basic_publish(x, "ignored", body, pika.BasicProperties(headers=headers))
    assert drain(ch, q_all) == [b"both"]
    assert drain(ch, q_any) == [b"both", b"kind"]


def test_consistent_hash_spreads_by_routing_key_and_keeps_keys_together(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "x-consistent-hash", durable=False)
    qa, qb = queues(ch, names, 2)
    ch.queue_bind(qa, x, "1")
    ch.queue_bind(qb, x, "1")
    keys = [f"key-{i}" for i in range(100)]
    for key in keys * 2:  # every key twice
        ch.basic_publish(x, key, key.encode())
    got_a, got_b = Counter(drain(ch, qa)), Counter(drain(ch, qb))
    assert got_a and got_b, "both destinations get a share"
    assert not set(got_a) & set(got_b), "one key always goes to the same queue"
    assert got_a + got_b == Counter(k.encode() for k in keys * 2), "each message exactly once"


def test_consistent_hash_on_a_header(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "x-consistent-hash", arguments={"hash-header": "user"})
    qa, qb = queues(ch, names, 2)
    ch.queue_bind(qa, x, "10")
    ch.queue_bind(qb, x, "10")
    for i in range(60):
        props = pika.BasicProperties(headers={"user": f"u{i % 20}"})
        ch.basic_publish(x, f"rk-{i}", f"u{i % 20}".encode(), props)
    got_a, got_b = set(drain(ch, qa)), set(drain(ch, qb))
    assert got_a and got_b and not got_a & got_b
    assert len(got_a | got_b) == 20


def test_consistent_hash_binding_key_must_be_a_weight(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "x-consistent-hash")
    (q,) = queues(ch, names, 1)
    with channel_error(
        406, 'PRECONDITION_FAILED - The binding key must be an integer: <<"heavy">>'
    ):
        ch.queue_bind(q, x, "heavy")


def test_headers_binding_with_a_bad_x_match_is_406(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "headers")
    (q,) = queues(ch, names, 1)
    text = ('PRECONDITION_FAILED - Invalid x-match field value <<"some">>; '
            "expected all, any, all-with-x, or any-with-x")  # fmt: skip
    with channel_error(406, text):
        ch.queue_bind(q, x, arguments={"x-match": "some"})


# ========================================================= declare rules
def test_declare_is_idempotent_and_passive_checks_existence(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "topic", durable=True, arguments={"x-custom": "v"})
    ch.exchange_declare(x, "topic", durable=True, arguments={"x-custom": "v"})
    ch.exchange_declare(x, passive=True)
    ch.exchange_declare(x, "fanout", passive=True)  # passive ignores the settings
    missing = names("missing")
    with channel_error(404, f"NOT_FOUND - no exchange '{missing}' in vhost '/'"):
        ch.exchange_declare(missing, passive=True)


@pytest.mark.parametrize(
    ("field", "first", "second", "received", "current"),
    [
        ("type", {"exchange_type": "direct"}, {"exchange_type": "fanout"}, "fanout", "direct"),
        ("durable", {"durable": False}, {"durable": True}, "true", "false"),
        ("auto_delete", {"auto_delete": False}, {"auto_delete": True}, "true", "false"),
        ("internal", {"internal": True}, {"internal": False}, "false", "true"),
    ],
)
def test_redeclare_with_other_settings_is_406(
    connect, names, field, first, second, received, current
):
    conn = connect()
    ch = confirming(conn)
    x = names("x")
    ch.exchange_declare(x, **{"exchange_type": "direct", **first})
    text = (f"PRECONDITION_FAILED - inequivalent arg '{field}' for exchange '{x}' in vhost '/': "
            f"received '{received}' but current is '{current}'")  # fmt: skip
    with channel_error(406, text):
        ch.exchange_declare(x, **{"exchange_type": "direct", **first, **second})
    assert conn.is_open, "a soft error closes the channel only"
    conn.channel().exchange_declare(x, passive=True)  # still there, unchanged


def test_redeclare_with_another_alternate_exchange_is_406(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": "ae1"})
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": "ae1", "other": 1})
    with channel_error(406) as info:
        ch.exchange_declare(x, "direct", arguments={"alternate-exchange": "ae2"})
    assert info.value.reply_text.startswith(
        f"PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/'"
    )


def test_alternate_exchange_of_the_wrong_type_is_406(connect, names):
    x = names("x")
    text = (f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange '{x}' "
            "in vhost '/'")  # fmt: skip
    with channel_error(406, text):
        connect().channel().exchange_declare(x, "direct", arguments={"alternate-exchange": 5})


@pytest.mark.rabbitmq4
def test_unknown_exchange_type_is_406_on_the_channel(connect, names):
    conn = connect()
    ch = confirming(conn)
    with channel_error(406, "PRECONDITION_FAILED - unknown exchange type 'x-no-such-type'"):
        ch.exchange_declare(names("x"), "x-no-such-type")
    assert conn.is_open
    conn.channel().exchange_declare(names("x2"), "direct")


def test_reserved_amq_prefix_is_403(connect, names):
    conn = connect()
    name = "amq." + names("x")
    with channel_error(
        403, f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'"
    ):
        conn.channel().exchange_declare(name, "direct")
    # The predeclared ones may be declared again with their own settings, or passively.
    ch = confirming(conn)
    ch.exchange_declare("amq.direct", "direct", durable=True)
    ch.exchange_declare("amq.topic", passive=True)
    for name, kind in (
        ("amq.fanout", "fanout"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ):
        ch.exchange_declare(name, kind, durable=True)


def test_predeclared_exchange_redeclared_with_other_settings_is_406(connect):
    ch = confirming(connect())
    text = ("PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '/': "
            "received 'false' but current is 'true'")  # fmt: skip
    with channel_error(406, text):
        ch.exchange_declare("amq.direct", "direct", durable=False)


def test_default_exchange_is_off_limits(connect, names):
    conn = connect()
    text = "ACCESS_REFUSED - operation not permitted on the default exchange"
    with channel_error(403, text):
        conn.channel().exchange_declare("", "direct", durable=True)
    with channel_error(403, text):
        conn.channel().exchange_declare("", passive=True)
    with channel_error(403, text):
        conn.channel().exchange_delete("")
    ch = confirming(conn)
    q = names("q")
    ch.queue_declare(q, exclusive=True)
    with channel_error(403, text):
        ch.queue_bind(q, "", q)
    ch = confirming(conn)
    with channel_error(403, text):
        ch.queue_unbind(q, "", q)
    ch = confirming(conn)
    x = names("x")
    ch.exchange_declare(x, "fanout")
    with channel_error(403, text):
        ch.exchange_bind(x, "", "k")
    with channel_error(403, text):
        conn.channel().exchange_bind("", x, "k")


def test_predeclared_exchanges_cannot_be_deleted(connect):
    with channel_error(
        403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    ):
        connect().channel().exchange_delete("amq.direct")


# ================================================================ delete
def test_delete_and_delete_missing(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "fanout")
    ch.exchange_delete(x)
    ch.exchange_delete(x)  # deleting a missing exchange is not an error
    with channel_error(404, f"NOT_FOUND - no exchange '{x}' in vhost '/'"):
        ch.exchange_declare(x, passive=True)


def test_delete_drops_bindings_to_queues(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "fanout")
    (q,) = queues(ch, names, 1)
    ch.queue_bind(q, x)
    ch.exchange_delete(x)
    ch.exchange_declare(x, "fanout")  # same name again: no bindings left
    ch.basic_publish(x, "", b"lost")
    assert drain(ch, q) == []


def test_delete_if_unused(connect, names):
    conn = connect()
    ch = confirming(conn)
    x = names("x")
    ch.exchange_declare(x, "fanout")
    (q,) = queues(ch, names, 1)
    ch.queue_bind(q, x)
    with channel_error(406, f"PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"):
        ch.exchange_delete(x, if_unused=True)
    ch = confirming(conn)
    ch.queue_unbind(q, x)
    ch.exchange_delete(x, if_unused=True)
    with channel_error(404):
        ch.exchange_declare(x, passive=True)


def test_delete_if_unused_counts_only_bindings_from_the_exchange(connect, names):
    """An exchange that is only a destination of another is unused (RabbitMQ)."""
    ch = confirming(connect())
    src, dst = names("src"), names("dst")
    ch.exchange_declare(src, "fanout")
    ch.exchange_declare(dst, "fanout")
    ch.exchange_bind(dst, src)
    ch.exchange_delete(dst, if_unused=True)
    with channel_error(404):
        ch.exchange_declare(dst, passive=True)


def test_auto_delete_exchange_goes_with_its_last_binding(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "direct", auto_delete=True)
    ch.exchange_declare(x, passive=True)  # no binding yet: it stays
    qa, qb = queues(ch, names, 2)
    ch.queue_bind(qa, x, "a")
    ch.queue_bind(qb, x, "b")
    ch.queue_unbind(qa, x, "a")
    ch.exchange_declare(x, passive=True)  # one binding left
    ch.queue_unbind(qb, x, "b")
    with channel_error(404):
        ch.exchange_declare(x, passive=True)


def test_auto_delete_exchange_stays_when_an_unrelated_queue_goes(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "direct", auto_delete=True)
    other = names("other")
    ch.queue_declare(other)
    ch.queue_delete(other)  # never bound to x
    ch.exchange_declare(x, passive=True)


def test_auto_delete_exchange_goes_when_its_queue_is_deleted(connect, names):
    ch = confirming(connect())
    x = names("x")
    ch.exchange_declare(x, "fanout", auto_delete=True)
    (q,) = queues(ch, names, 1)
    ch.queue_bind(q, x)
    ch.queue_delete(q)
    with channel_error(404):
        ch.exchange_declare(x, passive=True)


# ============================================== exchange-to-exchange bindings
def test_exchange_to_exchange_bind_and_unbind(connect, names):
    ch = confirming(connect())
    src, mid = names("src"), names("mid")
    ch.exchange_declare(src, "topic")
    ch.exchange_declare(mid, "direct")
    (q,) = queues(ch, names, 1)
    ch.queue_bind(q, mid, "a.b")
    ch.exchange_bind(mid, src, "a.*")
    for key in ("a.b", "a.c", "x.b"):
        ch.basic_publish(src, key, key.encode())
    assert drain(ch, q) == [b"a.b"]  # src passes a.b and a.c; mid keeps a.b
    ch.exchange_unbind(mid, src, "a.*")
    ch.exchange_unbind(mid, src, "a.*")  # a missing binding is not an error
    ch.basic_publish(src, "a.b", b"after")
    assert drain(ch, q) == []


def test_exchange_to_exchange_cycle_delivers_once(connect, names):
    ch = confirming(connect())
    a, b = names("a"), names("b")
    ch.exchange_declare(a, "fanout")
    ch.exchange_declare(b, "fanout")
    ch.exchange_bind(b, a)
    ch.exchange_bind(a, b)
    (q,) = queues(ch, names, 1)
    ch.queue_bind(q, a)
    ch.queue_bind(q, b)
    ch.basic_publish(a, "", b"once")
    assert drain(ch, q) == [b"once"]


def test_internal_exchange_only_through_bindings(connect, names):
    conn = connect()
    ch = confirming(conn)
    front, inner = names("front"), names("inner")
    ch.exchange_declare(front, "fanout")
    ch.exchange_declare(inner, "fanout", internal=True)
    ch.exchange_bind(inner, front)
    (q,) = queues(ch, names, 1)
    ch.queue_bind(q, inner)
    ch.basic_publish(front, "", b"via-front")
    assert drain(ch, q) == [b"via-front"]
    with channel_error(
        403, f"ACCESS_REFUSED - cannot publish to internal exchange '{inner}' in vhost '/'"
    ):
        ch.basic_publish(inner, "", b"direct")
        ch.queue_declare(q, passive=True)  # the error arrives by the next round trip


def test_exchange_bind_to_missing_ends_is_404(connect, names):
    conn = connect()
    ch = confirming(conn)
    x, missing = names("x"), names("missing")
    ch.exchange_declare(x, "fanout")
    with channel_error(404, f"NOT_FOUND - no exchange '{missing}' in vhost '/'"):
        ch.exchange_bind(x, missing)
    with channel_error(404, f"NOT_FOUND - no exchange '{missing}' in vhost '/'"):
        conn.channel().exchange_bind(missing, x)


# ================================================================ alternates
def test_alternate_exchange_takes_unroutable_messages(connect, names):
    ch = confirming(connect())
    x, ae = names("x"), names("ae")
    ch.exchange_declare(ae, "fanout")
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": ae})
    main, spill = queues(ch, names, 2)
    ch.queue_bind(main, x, "known")
    ch.queue_bind(spill, ae)
    ch.basic_publish(x, "known", b"routed", mandatory=True)
    ch.basic_publish(x, "unknown", b"spilled", mandatory=True)  # no return: the AE routed it
    assert drain(ch, main) == [b"routed"]
    assert drain(ch, spill) == [b"spilled"]


def test_alternate_exchange_declared_later_or_missing(connect, names):
    ch = confirming(connect())
    x, ae = names("x"), names("ae")
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": ae})
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "nowhere", b"1", mandatory=True)  # the AE does not exist yet
    ch.exchange_declare(ae, "fanout")
    (spill,) = queues(ch, names, 1)
    ch.queue_bind(spill, ae)
    ch.basic_publish(x, "nowhere", b"2", mandatory=True)
    assert drain(ch, spill) == [b"2"]


# ================================================================ publishing
def test_publish_to_missing_exchange_closes_the_channel_with_404(connect, names):
    conn = connect()
    ch = confirming(conn)
    missing = names("missing")
    with channel_error(404, f"NOT_FOUND - no exchange '{missing}' in vhost '/'"):
        ch.basic_publish(missing, "k", b"x")
        ch.queue_declare("", exclusive=True)  # the error arrives by the next round trip
    assert not ch.is_open
    assert conn.is_open
    conn.channel().queue_declare("", exclusive=True)


def test_publish_to_default_exchange_reaches_the_queue_named_by_the_key(connect, names):
    ch = confirming(connect())
    (q,) = queues(ch, names, 1)
    ch.basic_publish("", q, b"by-name", PERSISTENT)
    ch.basic_publish("", names("nothing"), b"dropped")
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.exchange, method.routing_key, props.delivery_mode) == (
        b"by-name",
        "",
        q,
        2,
    )
    assert ch.basic_get(q, auto_ack=True) == (None, None, None)


def test_predeclared_exchanges_route(connect, names):
    ch = confirming(connect())
    qd, qf, qt, qh = queues(ch, names, 4)
    ch.queue_bind(qd, "amq.direct", qd)
    ch.queue_bind(qf, "amq.fanout")
    ch.queue_bind(qt, "amq.topic", f"{qt}.#")
    ch.queue_bind(qh, "amq.headers", arguments={"x-match": "any", "to": qh})
    ch.basic_publish("amq.direct", qd, b"d")
    ch.basic_publish("amq.fanout", "any", b"f")
    ch.basic_publish("amq.topic", f"{qt}.x.y", b"t")
    ch.basic_publish("amq.headers", "", b"h", pika.BasicProperties(headers={"to": qh}))
    assert drain(ch, qd) == [b"d"]
    assert drain(ch, qt) == [b"t"]
    assert drain(ch, qh) == [b"h"]
    assert drain(ch, qf) == [b"f"]
