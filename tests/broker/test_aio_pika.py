"""aio-pika end to end: the way most asyncio users talk to RabbitMQ.

Exchanges and queues through aio-pika's objects, the queue iterator and
message.process(), basic.get, prefetch, round-robin, the consumer cancel
notification, returns with publisher confirms, transactions, exclusive and
auto-delete queues, and the errors aio-pika raises with RabbitMQ's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aio_pika
import aiormq
import pytest
from aio_pika import ExchangeType, Message

DEADLINE = 10.0


@contextlib.asynccontextmanager
async def connection(broker):
    conn = await aio_pika.connect(broker.url)
    try:
        yield conn
    finally:
        await conn.close()


async def wait_for(predicate, what: str = "the broker") -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def queue_gone(channel_factory, name: str) -> bool:
    ch = await channel_factory()
    try:
        await ch.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return True
    except aiormq.exceptions.ChannelLockedResource:
        return False  # another connection's exclusive queue: it is there
    await ch.close()
    return False


async def wait_gone(conn, name: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await queue_gone(conn.channel, name):
        assert time.monotonic() < deadline, f"queue {name} is still there"
        await asyncio.sleep(0.005)


async def drain(queue) -> list[bytes]:
    out = []
    while (msg := await queue.get(no_ack=True, fail=False)) is not None:
        out.append(msg.body)
    return out


def test_exchanges_queues_and_routing(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            topic = await ch.declare_exchange(names("topic"), ExchangeType.TOPIC, durable=True)
            fanout = await ch.declare_exchange(
                names("fanout"), ExchangeType.FANOUT, auto_delete=True
            )
            headers = await ch.declare_exchange(names("headers"), ExchangeType.HEADERS)
            inner = await ch.declare_exchange(names("inner"), ExchangeType.DIRECT, internal=True)
            ae = await ch.declare_exchange(names("ae"), ExchangeType.FANOUT)
            direct = await ch.declare_exchange(names("direct"), ExchangeType.DIRECT,
                                               arguments={"alternate-exchange": ae.name})  # fmt: skip
            await ch.declare_exchange(topic.name, passive=True)
            q = await ch.declare_queue(exclusive=True)
            assert q.name.startswith("amq.gen-")
            await q.bind(topic, "a.*")
            await q.bind(headers, arguments={"x-match": "any", "k": "v"})
            await fanout.bind(topic, "f.#")  # exchange to exchange
            await inner.bind(fanout)
            await q.bind(inner, "f.x")
            await q.bind(ae)
            await q.bind(direct, "d")

            await topic.publish(Message(b"a.b"), "a.b")
            await topic.publish(Message(b"f.x"), "f.x")  # topic -> fanout -> inner -> q
            await headers.publish(Message(b"hdr", headers={"k": "v"}), "")
            await direct.publish(Message(b"d"), "d")
            await direct.publish(Message(b"to-ae"), "other")
            await ch.default_exchange.publish(Message(b"default"), q.name)
            assert await drain(q) == [b"a.b", b"f.x", b"hdr", b"d", b"to-ae", b"default"]

            await fanout.unbind(topic, "f.#")
            await topic.publish(Message(b"f.y"), "f.x", mandatory=False)
            assert await drain(q) == []
            await inner.unbind(fanout)
            await wait_for_404(conn, fanout.name)  # auto-delete: its last binding went

            ch = await conn.channel()
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as info:
                await ch.declare_exchange(topic.name, ExchangeType.TOPIC, durable=False)
            assert info.value.args == (
                f"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{topic.name}' in vhost '/': "
                "received 'false' but current is 'true'",
            )
            ch = await conn.channel()
            src = await ch.declare_exchange(names("src"), ExchangeType.FANOUT)
            dst = await ch.declare_exchange(names("dst"), ExchangeType.FANOUT)
            await dst.bind(src)
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                await src.delete(if_unused=True)
            ch = await conn.channel()
            await ch.exchange_delete(dst.name, if_unused=True)  # only a destination: unused
            await ch.exchange_delete(src.name, if_unused=True)
            await ch.exchange_delete(topic.name)

    run(scenario())


async def wait_for_404(conn, exchange: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        ch = await conn.channel()
        try:
            await ch.declare_exchange(exchange, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return
        await ch.close()
        assert time.monotonic() < deadline, f"exchange {exchange} is still there"
        await asyncio.sleep(0.005)


def test_iterator_process_and_requeue(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=10)
            q = await ch.declare_queue(names("q"), exclusive=True)
            for i in range(4):
                await ch.default_exchange.publish(Message(str(i).encode()), q.name)
            seen = []
            async with q.iterator(consumer_tag="it-1") as it:
                async for message in it:
                    seen.append((message.body, message.redelivered, message.consumer_tag))
                    if message.body == b"1" and not message.redelivered:
                        await message.nack(requeue=True)  # comes back, in its place
                    elif message.body == b"2":
                        await message.reject(requeue=False)
                    else:
                        async with message.process():  # acks on leaving the block
                            pass
                    if len(seen) == 5:
                        break
            assert [(b, r) for b, r, _t in seen] == [(b"0", False), (b"1", False), (b"2", False),
                                                      (b"3", False), (b"1", True)]  # fmt: skip
            assert {t for _b, _r, t in seen} == {"it-1"}
            assert await drain(q) == []

    run(scenario())


def test_get_reports_message_count(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            q = await ch.declare_queue(names("q"), exclusive=True)
            for i in range(3):
                await ch.default_exchange.publish(Message(str(i).encode()), q.name)
            counts = []
            for _ in range(3):
                msg = await q.get(no_ack=False)
                counts.append((msg.body, msg.message_count))
                await msg.ack()
            assert counts == [(b"0", 2), (b"1", 1), (b"2", 0)]
            assert await q.get(fail=False) is None
            with pytest.raises(aio_pika.exceptions.QueueEmpty):
                await q.get()

    run(scenario())


def test_round_robin_and_global_prefetch(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            q = await ch.declare_queue(names("q"), exclusive=True)
            a, b = [], []

            async def keep_a(message):
                a.append(message)

            async def keep_b(message):
                b.append(message)

            consumer = await conn.channel()
            await consumer.set_qos(prefetch_count=3, global_=True)
            cq = await consumer.get_queue(q.name)
            await cq.consume(keep_a)
            await cq.consume(keep_b)
            for i in range(10):
                await ch.default_exchange.publish(Message(str(i).encode()), q.name)
            await wait_for(lambda: len(a) + len(b) == 3, "3 deliveries")
            ok = await ch.declare_queue(q.name, passive=True)
            assert ok.declaration_result.message_count == 7
            assert len(a) + len(b) == 3, "the channel-wide limit holds"
            for m in a + b:
                await m.ack()
            await wait_for(lambda: len(a) + len(b) == 6)
            assert abs(len(a) - len(b)) <= 1, "the two consumers take turns"

    run(scenario())


def test_consumer_cancel_notification(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel()
            q = await ch.declare_queue(names("q"))
            underlay = await ch.get_underlay_channel()
            cancelled = []
            underlay.on_consumer_cancel_callbacks.add(
                lambda frame: cancelled.append(frame.consumer_tag)
            )

            async def ignore(_m):
                pass

            tag = await q.consume(ignore)
            other = await conn.channel()
            await other.queue_delete(q.name)
            await wait_for(lambda: cancelled, "Basic.Cancel")
            assert cancelled == [tag]

    run(scenario())


def test_mandatory_return_with_confirms(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
            q = await ch.declare_queue(names("q"), exclusive=True)
            ok = await ch.default_exchange.publish(Message(b"ok", message_id="1"), q.name)
            assert isinstance(ok, aiormq.spec.Basic.Ack)
            with pytest.raises(aio_pika.exceptions.PublishError) as info:
                await ch.default_exchange.publish(
                    Message(b"lost", message_id="2"), names("nowhere")
                )
            assert (info.value.frame.reply_code, info.value.frame.reply_text) == (312, "NO_ROUTE")

            quiet = await conn.channel(publisher_confirms=True, on_return_raises=False)
            returned = []
            quiet.return_callbacks.add(lambda _ch, message: returned.append(message.body))
            await quiet.default_exchange.publish(
                Message(b"lost too", message_id="3"), names("nowhere")
            )
            await wait_for(lambda: returned)
            assert returned == [b"lost too"]

    run(scenario())


def test_transactions(broker, names, run):
    async def scenario():
        async with connection(broker) as conn:
            ch = await conn.channel(publisher_confirms=False)
            q = await ch.declare_queue(names("q"), exclusive=True)
            tx = ch.transaction()
            await tx.select()
            await ch.default_exchange.publish(Message(b"rolled back"), q.name)
            await tx.rollback()
            await ch.default_exchange.publish(Message(b"committed"), q.name)
            assert (
                await ch.declare_queue(q.name, passive=True)
            ).declaration_result.message_count == 0
            await tx.commit()
            msg = await q.get(no_ack=False)
            assert (msg.body, msg.redelivered) == (b"committed", False)
            await msg.ack()
            await tx.rollback()  # the ack goes with the rollback: the message stays unacked
            await ch.close()  # and so comes back
            ch = await conn.channel(publisher_confirms=False)
            q = await ch.get_queue(q.name)
            await ch.transaction().select()
            msg = await q.get(no_ack=False)
            assert (msg.body, msg.redelivered) == (b"committed", True)
            await msg.ack()
            await ch.transaction().commit()
            await ch.close()
            ch = await conn.channel()
            assert (
                await ch.declare_queue(q.name, passive=True)
            ).declaration_result.message_count == 0

    run(scenario())


def test_exclusive_and_auto_delete_queues(broker, names, run):
    async def scenario():
        async with connection(broker) as watcher:
            owner = await aio_pika.connect(broker.url)
            try:
                ch = await owner.channel()
                excl = await ch.declare_queue(names("excl"), exclusive=True)
                other = await watcher.channel()
                with pytest.raises(aiormq.exceptions.ChannelLockedResource):
                    await other.declare_queue(excl.name, passive=True)
                auto = await ch.declare_queue(names("auto"), auto_delete=True)

                async def ignore(_m):
                    pass

                tag = await auto.consume(ignore)
                assert not await queue_gone(watcher.channel, auto.name)
                await auto.cancel(tag)
                await wait_gone(watcher, auto.name)
                assert not await queue_gone(watcher.channel, excl.name)
            finally:
                await owner.close()
            await wait_gone(watcher, excl.name)

    run(scenario())
