"""aiormq (the low-level asyncio client under aio-pika) end to end.

Topology, publish and consume, basic.get, acks and requeue, prefetch,
recover, the cancel notification, and every error aiormq maps to its own
exception class, with RabbitMQ's reply text.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiormq
import pytest
from aiormq import spec
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelLockedResource,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ConnectionNotImplemented,
)

DEADLINE = 10.0


@contextlib.asynccontextmanager
async def connection(broker):
    conn = await aiormq.connect(broker.url)
    try:
        yield conn
    finally:
        if not conn.is_closed:
            await conn.close()


async def wait_for(predicate, what: str = "the broker") -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def wait_ready(ch, q: str, n: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while (await ch.queue_declare(q, passive=True)).message_count != n:
        assert time.monotonic() < deadline, f"{q} never held {n} ready messages"
        await asyncio.sleep(0.005)


# ================================================================ topology
def test_exchange_types_bindings_and_alternate(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            x = {
                kind: names(kind)
                for kind in ("direct", "fanout", "topic", "headers", "x-consistent-hash")
            }
            for kind, name in x.items():
                await ch.exchange_declare(name, exchange_type=kind, durable=False)
                await ch.exchange_declare(name, passive=True)
            q = names("q")
            await ch.queue_declare(q, exclusive=True)
            await ch.queue_bind(q, x["direct"], routing_key="d")
            await ch.queue_bind(q, x["topic"], routing_key="t.#")
            await ch.queue_bind(q, x["headers"], arguments={"x-match": "all", "h": 1})
            await ch.queue_bind(q, x["x-consistent-hash"], routing_key="5")
            await ch.exchange_bind(x["fanout"], x["direct"], routing_key="to-fanout")
            await ch.queue_bind(q, x["fanout"])
            ae = names("ae")
            await ch.exchange_declare(ae, exchange_type="fanout")
            with_ae = names("with-ae")
            await ch.exchange_declare(
                with_ae, exchange_type="direct", arguments={"alternate-exchange": ae}
            )
            await ch.queue_bind(q, ae)

            await ch.confirm_delivery()
            sends = [(x["direct"], "d", None), (x["direct"], "to-fanout", None), (x["topic"], "t.a.b", None),
                     (x["headers"], "", {"h": 1}), (x["x-consistent-hash"], "any", None), (with_ae, "none", None),
                     (x["direct"], "unbound", None)]  # fmt: skip
            for exchange, key, headers in sends:
                await ch.basic_publish(f"{exchange}/{key}".encode(), exchange=exchange, routing_key=key,
                                       properties=spec.Basic.Properties(headers=headers))  # fmt: skip
            await ch.exchange_unbind(x["fanout"], x["direct"], routing_key="to-fanout")
            await ch.basic_publish(b"after-unbind", exchange=x["direct"], routing_key="to-fanout")
            got = []
            while True:
                msg = await ch.basic_get(q, no_ack=True)
                if isinstance(msg.delivery, spec.Basic.GetEmpty):
                    break
                got.append(msg.body.decode())
            assert got == [f"{e}/{k}" for e, k, _h in sends[:-1]]
            await ch.exchange_delete(x["direct"])
            with pytest.raises(ChannelNotFoundEntity) as info:
                await ch.exchange_declare(x["direct"], passive=True)
            assert info.value.args == (f"NOT_FOUND - no exchange '{x['direct']}' in vhost '/'",)

    run(scenario())


def test_queue_declare_delete_purge(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            ok = await ch.queue_declare("", exclusive=True)
            assert ok.queue.startswith("amq.gen-") and len(ok.queue) == 30
            q = names("q")
            await ch.queue_declare(q, durable=True)
            await ch.confirm_delivery()
            for i in range(4):
                await ch.basic_publish(str(i).encode(), routing_key=q)
            ok = await ch.queue_declare(q, passive=True)
            assert (ok.message_count, ok.consumer_count) == (4, 0)
            with pytest.raises(ChannelPreconditionFailed) as info:
                await ch.queue_delete(q, if_empty=True)
            assert info.value.args == (f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty",)
            ch = await conn.channel()
            assert (await ch.queue_purge(q)).message_count == 4
            await ch.basic_consume(q, lambda m: None, consumer_tag="c1")
            with pytest.raises(ChannelPreconditionFailed) as info:
                await ch.queue_delete(q, if_unused=True)
            assert info.value.args == (f"PRECONDITION_FAILED - queue '{q}' in vhost '/' in use",)
            ch = await conn.channel()
            assert (await ch.queue_delete(q)).message_count == 0

    run(scenario())


# ============================================================== consuming
def test_consume_ack_nack_reject_and_requeue_order(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel(publisher_confirms=True)
            q = names("q")
            await ch.queue_declare(q, exclusive=True)
            for i in range(6):
                await ch.basic_publish(str(i).encode(), routing_key=q)
            got: list[aiormq.abc.DeliveredMessage] = []
            consumer = await conn.channel()
            await consumer.basic_qos(prefetch_count=4)
            ok = await consumer.basic_consume(q, got.append, consumer_tag="tag-1")
            assert ok.consumer_tag == "tag-1"
            await wait_for(lambda: len(got) == 4, "4 deliveries")
            assert [m.body for m in got] == [b"0", b"1", b"2", b"3"]
            assert {m.delivery.consumer_tag for m in got} == {"tag-1"}
            await consumer.basic_cancel("tag-1")  # no new deliveries; the 4 stay unacked
            await consumer.basic_reject(got[1].delivery.delivery_tag, requeue=True)
            await consumer.basic_nack(
                got[3].delivery.delivery_tag, multiple=True, requeue=False
            )  # 0, 2, 3
            await wait_ready(ch, q, 3)
            rest = []
            for _ in range(3):
                m = await ch.basic_get(q, no_ack=True)
                rest.append((m.body, m.delivery.redelivered, m.delivery.message_count))
            assert rest == [(b"1", True, 2), (b"4", False, 1), (b"5", False, 0)]
            empty = await ch.basic_get(q)
            assert isinstance(empty.delivery, spec.Basic.GetEmpty)

    run(scenario())


def test_recover_and_channel_close_redeliver(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel(publisher_confirms=True)
            q = names("q")
            await ch.queue_declare(q, exclusive=True)
            for i in range(2):
                await ch.basic_publish(str(i).encode(), routing_key=q)
            got = []
            consumer = await conn.channel()
            await consumer.basic_consume(q, got.append)
            await wait_for(lambda: len(got) == 2)
            await consumer.basic_recover(requeue=True)
            await wait_for(lambda: len(got) == 4)
            assert [(m.body, m.delivery.redelivered) for m in got[2:]] == [
                (b"0", True),
                (b"1", True),
            ]
            await consumer.basic_ack(got[2].delivery.delivery_tag)
            await consumer.close()
            await wait_ready(ch, q, 1)
            m = await ch.basic_get(q, no_ack=True)
            assert (m.body, m.delivery.redelivered) == (b"1", True)

    run(scenario())


def test_consumer_cancelled_when_its_queue_is_deleted(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            q = names("q")
            await ch.queue_declare(q)
            cancelled = []
            ch.on_consumer_cancel_callbacks.add(lambda frame: cancelled.append(frame.consumer_tag))
            ok = await ch.basic_consume(q, lambda m: None)
            other = await conn.channel()
            await other.queue_delete(q)
            await wait_for(lambda: cancelled, "Basic.Cancel")
            assert cancelled == [ok.consumer_tag]
            assert ok.consumer_tag not in ch.consumers
            await ch.queue_declare(names("q2"), exclusive=True)  # the channel is still open

    run(scenario())


@pytest.mark.parametrize("global_", [False, True])
def test_prefetch(broker, names, run, global_):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel(publisher_confirms=True)
            q = names("q")
            await ch.queue_declare(q, exclusive=True)
            for i in range(10):
                await ch.basic_publish(str(i).encode(), routing_key=q)
            consumer = await conn.channel()
            await consumer.basic_qos(prefetch_count=2, global_=global_)
            a, b = [], []
            await consumer.basic_consume(q, a.append)
            await consumer.basic_consume(q, b.append)
            expected = 2 if global_ else 4
            await wait_ready(ch, q, 10 - expected)
            await wait_for(lambda: len(a) + len(b) == expected)
            await asyncio.sleep(0)
            assert len(a) + len(b) == expected
            first = (a or b)[0]
            await consumer.basic_ack(first.delivery.delivery_tag)
            await wait_ready(ch, q, 10 - expected - 1)
            await wait_for(lambda: len(a) + len(b) == expected + 1)

    run(scenario())


# ================================================================ errors
def test_channel_errors(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            q, x = names("q"), names("x")
            ch = await conn.channel()
            await ch.exchange_declare(x, exchange_type="direct")
            await ch.queue_declare(q, arguments={"x-max-length": 10})
            cases = [
                (ChannelNotFoundEntity, f"NOT_FOUND - no queue '{q}-missing' in vhost '/'",
                 lambda c: c.queue_declare(f"{q}-missing", passive=True)),
                (ChannelAccessRefused, f"ACCESS_REFUSED - exchange name 'amq.{x}' contains reserved prefix 'amq.*'",
                 lambda c: c.exchange_declare(f"amq.{x}", exchange_type="direct")),
                (ChannelAccessRefused, "ACCESS_REFUSED - operation not permitted on the default exchange",
                 lambda c: c.queue_bind(q, "", routing_key=q)),
                (ChannelPreconditionFailed,
                 f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': "
                 "received 'topic' but current is 'direct'",
                 lambda c: c.exchange_declare(x, exchange_type="topic")),
                (ChannelPreconditionFailed,
                 f"PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '{q}-bad' in vhost '/': "
                 '"expected integer, got longstr"',
                 lambda c: c.queue_declare(f"{q}-bad", arguments={"x-message-ttl": "1000"})),
                (ChannelPreconditionFailed, "PRECONDITION_FAILED - unknown delivery tag 42",
                 lambda c: _ack_then_round_trip(c, 42)),
                (ChannelNotFoundEntity, f"NOT_FOUND - no exchange '{x}-missing' in vhost '/'",
                 lambda c: _publish_then_round_trip(c, f"{x}-missing")),
            ]  # fmt: skip
            for exc_type, text, attempt in cases:
                channel = await conn.channel()
                with pytest.raises(exc_type) as info:
                    await attempt(channel)
                assert info.value.args == (text,)
            assert not conn.is_closed
            ch = await conn.channel()
            await ch.queue_delete(q)

    run(scenario())


async def _ack_then_round_trip(ch, tag: int) -> None:
    await ch.basic_ack(tag)
    await ch.queue_declare("", exclusive=True)


async def _publish_then_round_trip(ch, exchange: str) -> None:
    await ch.basic_publish(b"x", exchange=exchange, routing_key="k")
    await ch.queue_declare("", exclusive=True)


@pytest.mark.rabbitmq4
def test_unknown_exchange_type_is_a_channel_error(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            with pytest.raises(ChannelPreconditionFailed) as info:
                await ch.exchange_declare(names("x"), exchange_type="x-unknown")
            assert info.value.args == ("PRECONDITION_FAILED - unknown exchange type 'x-unknown'",)
            assert not conn.is_closed

    run(scenario())


def test_exclusive_queue_of_another_connection_is_405(broker, names, run):
    async def scenario():
        async with connection(broker) as owner, connection(broker) as other:
            q = names("q")
            await (await owner.channel()).queue_declare(q, exclusive=True)
            ch = await other.channel()
            with pytest.raises(ChannelLockedResource) as info:
                await ch.basic_consume(q, lambda m: None)
            assert info.value.args[0].startswith(
                f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'."
            )

    run(scenario())


@pytest.mark.parametrize(
    ("what", "text"),
    [
        ("immediate", "NOT_IMPLEMENTED - immediate=true"),
        ("prefetch_size", "NOT_IMPLEMENTED - prefetch_size!=0 (10)"),
        ("recover", "NOT_IMPLEMENTED - requeue=false"),
        ("flow", "NOT_IMPLEMENTED - active=false"),
    ],
)
def test_not_implemented_closes_the_connection_with_540(broker, run, what, text):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            assert isinstance(await ch.flow(True), spec.Channel.FlowOk)  # active=true is fine
            with pytest.raises(ConnectionNotImplemented) as info:
                if what == "immediate":
                    await ch.basic_publish(b"x", routing_key="nowhere", immediate=True)
                    await ch.queue_declare("", exclusive=True)
                elif what == "prefetch_size":
                    await ch.basic_qos(prefetch_size=10, prefetch_count=1)
                elif what == "recover":
                    await ch.basic_recover(requeue=False)
                else:
                    await ch.flow(False)
            assert info.value.args == (text,)
            await wait_for(lambda: conn.is_closed, "the connection to close")

    run(scenario())
