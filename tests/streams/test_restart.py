"""A stream is a durable log: its messages, transient ones too, and their offsets survive restarts."""

from __future__ import annotations

import pika
import pytest
from support.streams import STREAM, consume, declare_stream, round_trip

pytestmark = pytest.mark.restarts


@pytest.mark.parametrize("crash", [False, True], ids=["clean", "kill-9"])
def test_every_message_survives_with_its_offset(broker, connect, names, crash):
    q = names()
    ch = connect().channel()
    declare_stream(ch, q, **{"x-max-age": "7D"})
    ch.confirm_delivery()
    for i in range(4):
        mode = 2 if i % 2 else 1  # a stream keeps transient messages as well, as RabbitMQ's
        ch.basic_publish("", q, f"m{i}".encode(), pika.BasicProperties(delivery_mode=mode))
    if crash:
        broker.crash_and_restart()
    else:
        broker.restart()
    conn = connect()
    ch = conn.channel()
    again = ch.queue_declare(q, durable=True, arguments={**STREAM, "x-max-age": "7D"}).method
    assert again.message_count == 4
    got = consume(conn, conn.channel(), q, offset="first", wait_for=4)
    assert (got.bodies, got.offsets) == (["m0", "m1", "m2", "m3"], [0, 1, 2, 3])
    ch.basic_publish("", q, b"m4")
    assert round_trip(ch, q).message_count == 5  # appends go on after the last offset
