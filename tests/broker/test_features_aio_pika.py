"""TTL, dead-lettering, limits, delivery limit, delayed retry, priorities, single
active consumer and queue expiry, through aio-pika (the pika side is in
test_ttl_dlx.py and test_queue_features.py)."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import aiormq
import pytest
from aio_pika import ExchangeType, Message

DEADLINE = 10.0


async def with_dlx(ch, names, **arguments):
    """A queue whose dead letters go to a fanout DLX bound to a second queue."""
    dlx = await ch.declare_exchange(names("dlx"), ExchangeType.FANOUT)
    dead = await ch.declare_queue(names("dead"))
    await dead.bind(dlx)
    source = await ch.declare_queue(names("src"), arguments={"x-dead-letter-exchange": dlx.name, **arguments})
    return source, dead


async def get_one(queue, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        msg = await queue.get(no_ack=True, fail=False)
        if msg is not None or time.monotonic() > deadline:
            return msg
        await asyncio.sleep(0.01)


def test_ttl_expires_anywhere_and_dead_letters_with_x_death(broker, names, run):
    async def scenario():
        conn = await aio_pika.connect(broker.url)
        ch = await conn.channel()
        source, dead = await with_dlx(ch, names)
        await ch.default_exchange.publish(Message(b"long", expiration=600), routing_key=source.name)
        await ch.default_exchange.publish(Message(b"short", expiration=0.1), routing_key=source.name)
        msg = await get_one(dead)
        assert msg is not None and msg.body == b"short"
        death = msg.headers["x-death"][0]
        assert (death["reason"], death["queue"], death["count"]) == ("expired", source.name, 1)
        assert msg.headers["x-first-death-reason"] == "expired"
        assert msg.expiration is None
        await conn.close()

    run(scenario())


def test_reject_dead_letters_and_max_length_drops_the_head(broker, names, run):
    async def scenario():
        conn = await aio_pika.connect(broker.url)
        ch = await conn.channel()
        source, dead = await with_dlx(ch, names, **{"x-max-length": 2})
        for body in (b"1", b"2", b"3"):
            await ch.default_exchange.publish(Message(body), routing_key=source.name)
        dropped = await get_one(dead)
        assert dropped.body == b"1" and dropped.headers["x-death"][0]["reason"] == "maxlen"
        msg = await get_one(source)
        assert msg is not None
        msg2 = await source.get(no_ack=False)
        await msg2.reject(requeue=False)
        rejected = await get_one(dead)
        assert rejected.body == b"3" and rejected.headers["x-death"][0]["reason"] == "rejected"
        await conn.close()

    run(scenario())


def test_reject_publish_nacks_under_confirms(broker, names, run):
    async def scenario():
        conn = await aio_pika.connect(broker.url)
        ch = await conn.channel(publisher_confirms=True)
        queue = await ch.declare_queue(names("full"), arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
        await ch.default_exchange.publish(Message(b"in"), routing_key=queue.name)
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await ch.default_exchange.publish(Message(b"out"), routing_key=queue.name)
        await conn.close()

    run(scenario())


def test_delivery_limit_and_delayed_retry(broker, names, run):
    async def scenario():
        conn = await aio_pika.connect(broker.url)
        ch = await conn.channel()
        source, dead = await with_dlx(ch, names, **{
            "x-delivery-limit": 2, "x-delayed-retry-type": "failed", "x-delayed-retry-min": 100,
        })  # fmt: skip
        await ch.default_exchange.publish(Message(b"flaky"), routing_key=source.name)
        counts, waits = [], []
        rejected_at = None
        for _ in range(3):
            msg = None
            deadline = time.monotonic() + DEADLINE
            while msg is None and time.monotonic() < deadline:
                msg = await source.get(no_ack=False, fail=False)
                if msg is None:
                    await asyncio.sleep(0.01)
            if rejected_at is not None:
                waits.append(time.monotonic() - rejected_at)
            counts.append((msg.headers or {}).get("x-delivery-count"))
            rejected_at = time.monotonic()
            await msg.reject(requeue=True)
        assert counts == [None, 1, 2]
        assert 0.08 <= waits[0] < 0.6 and 0.18 <= waits[1] < 0.8, waits
        parked = await get_one(dead)
        assert parked.body == b"flaky" and parked.headers["x-death"][0]["reason"] == "delivery_limit"
        await conn.close()

    run(scenario())


def test_priorities_and_single_active_consumer(broker, names, run):
    async def scenario():
        conn = await aio_pika.connect(broker.url)
        ch = await conn.channel()
        prio = await ch.declare_queue(names("prio"), arguments={"x-max-priority": 9})
        for p, body in ((1, b"low"), (9, b"high"), (5, b"mid")):
            await ch.default_exchange.publish(Message(body, priority=p), routing_key=prio.name)
        got = [(await prio.get(no_ack=True)).body for _ in range(3)]
        assert got == [b"high", b"mid", b"low"]

        sac = await ch.declare_queue(names("sac"), arguments={"x-single-active-consumer": True})
        first, second = [], []
        ch_a, ch_b = await conn.channel(), await conn.channel()
        qa, qb = await ch_a.get_queue(sac.name), await ch_b.get_queue(sac.name)
        async def on_a(message) -> None:
            first.append(message.body)

        async def on_b(message) -> None:
            second.append(message.body)

        tag_a = await qa.consume(on_a, no_ack=True)
        await qb.consume(on_b, no_ack=True)
        for i in range(5):
            await ch.default_exchange.publish(Message(f"{i}".encode()), routing_key=sac.name)
        deadline = time.monotonic() + DEADLINE
        while len(first) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(first) == 5 and not second
        await qa.cancel(tag_a)
        await ch.default_exchange.publish(Message(b"after"), routing_key=sac.name)
        while not second and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert second == [b"after"]
        await conn.close()

    run(scenario())


def test_x_expires_deletes_an_unused_queue(broker, names, run):
    async def scenario():
        conn = await aio_pika.connect(broker.url)
        ch = await conn.channel()
        queue = await ch.declare_queue(names("expiring"), arguments={"x-expires": 200})
        await asyncio.sleep(0.5)
        probe = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await probe.declare_queue(queue.name, passive=True)
        await conn.close()

    run(scenario())
