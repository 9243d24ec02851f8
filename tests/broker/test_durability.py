"""SIGKILL the broker while publishers confirm and consumers ack, several times.

What a user is promised, and this test checks after every kill and restart:
- every confirmed persistent message is delivered at least once;
- first deliveries come in publish order (one publisher, one queue);
- a message delivered again after a crash carries `redelivered`;
- at most `prefetch` already-acked messages per consumer per crash are
  delivered again: the broker writes a queue's settled state before it
  writes anything to a client, so only acks it had not yet read (at most the
  client's unacked window) can be lost with it (docs/architecture.md).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pika
import pytest
from support.broker import BrokerProcess

QUEUE = "durable-orders"
KILLS = 4
PREFETCH = 20


class Ledger:
    """What the clients saw, across all rounds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_seq = 0
        self.confirmed: set[int] = set()
        self.deliveries: list[tuple[int, bool, int]] = []  # (seq, redelivered, round)
        self.acked: set[int] = set()
        self.acked_then_redelivered = 0


def _connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", port, heartbeat=0, connection_attempts=1)
    )


def publisher(port: int, ledger: Ledger, stop: threading.Event) -> None:
    try:
        conn = _connect(port)
        ch = conn.channel()
        ch.confirm_delivery()
        while not stop.is_set():
            with ledger.lock:
                seq = ledger.next_seq
                ledger.next_seq += 1
            ch.basic_publish("", QUEUE, str(seq).encode(), pika.BasicProperties(delivery_mode=2))
            with ledger.lock:
                ledger.confirmed.add(seq)
        conn.close()
    except Exception:  # the broker was killed under us: expected
        return


def consumer(port: int, ledger: Ledger, stop: threading.Event, round_: int) -> None:
    try:
        conn = _connect(port)
        ch = conn.channel()
        ch.basic_qos(prefetch_count=PREFETCH)

        pending: list[int] = []

        def on_message(channel, method, _props, body) -> None:
            seq = int(body)
            with ledger.lock:
                if seq in ledger.acked:
                    ledger.acked_then_redelivered += 1
                ledger.deliveries.append((seq, method.redelivered, round_))
            pending.append(seq)
            time.sleep(0.001)  # some work, so the prefetch window is full when the broker dies
            if len(pending) >= 5:  # acks with multiple=True, as many clients send them
                channel.basic_ack(method.delivery_tag, multiple=True)
                with ledger.lock:
                    ledger.acked.update(pending)
                pending.clear()

        ch.basic_consume(QUEUE, on_message)
        while not stop.is_set():
            conn.process_data_events(time_limit=0.05)
        conn.close()
    except Exception:
        return


def drain(port: int, ledger: Ledger, round_: int) -> None:
    """Consume until the queue stays empty."""
    conn = _connect(port)
    ch = conn.channel()
    while True:
        method, _props, body = ch.basic_get(QUEUE)
        if method is None:
            break
        seq = int(body)
        if seq in ledger.acked:
            ledger.acked_then_redelivered += 1
        ledger.deliveries.append((seq, method.redelivered, round_))
        ch.basic_ack(method.delivery_tag)
        ledger.acked.add(seq)
    conn.close()


@pytest.mark.slow
def test_confirmed_messages_survive_sigkill_in_order(tmp_path: Path) -> None:
    rng = random.Random(7)
    broker = BrokerProcess(tmp_path / "data").start()
    ledger = Ledger()
    try:
        conn = _connect(broker.port)
        conn.channel().queue_declare(QUEUE, durable=True)
        conn.close()
        for round_ in range(KILLS):
            stop = threading.Event()
            threads = [
                threading.Thread(target=publisher, args=(broker.port, ledger, stop)),
                threading.Thread(target=consumer, args=(broker.port, ledger, stop, round_)),
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.6, 1.5))
            broker.kill()
            stop.set()
            for t in threads:
                t.join(30)
                assert not t.is_alive(), "a client hung after the broker was killed"
            broker.start()
        drain(broker.port, ledger, KILLS)
    finally:
        broker.kill()

    assert len(ledger.confirmed) > 50, "too few publishes were confirmed to test anything"
    delivered = {seq for seq, _r, _round in ledger.deliveries}
    lost = sorted(ledger.confirmed - delivered)
    assert not lost, f"{len(lost)} confirmed messages were never delivered: {lost[:20]}"

    first_deliveries = []
    seen: set[int] = set()
    for seq, redelivered, _round in ledger.deliveries:
        if seq in seen:
            assert redelivered, f"message {seq} was delivered again without redelivered=True"
        else:
            seen.add(seq)
            first_deliveries.append(seq)
    assert first_deliveries == sorted(first_deliveries), "first deliveries are out of publish order"
    assert ledger.acked_then_redelivered <= PREFETCH * KILLS, (
        f"{ledger.acked_then_redelivered} acked messages came back, "
        f"more than the documented bound of {PREFETCH} per crash"
    )
