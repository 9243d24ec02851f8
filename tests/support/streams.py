"""Helpers for stream queue tests with pika: declare, publish one batch per message, collect."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pika

DEADLINE = 10.0
STREAM = {"x-queue-type": "stream"}


def pump_until(conn: pika.BlockingConnection, predicate: Callable[[], bool],
               timeout: float = DEADLINE) -> None:  # fmt: skip
    """Process pika I/O until predicate() holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the broker")
        conn.process_data_events(time_limit=0.02)


def declare_stream(ch: Any, name: str, **arguments: Any) -> None:
    ch.queue_declare(name, durable=True, arguments={**STREAM, **arguments})


def publish(ch: Any, queue: str, bodies: Iterable[str], **headers: Any) -> None:
    """Publish each body with confirms (on a channel of its own), waiting for each: one record
    batch (chunk) per message.

    Each message gets the header `i` (its index in bodies) besides `headers`.
    """
    publisher = ch.connection.channel()
    publisher.confirm_delivery()
    for i, body in enumerate(bodies):
        publisher.basic_publish("", queue, body.encode(), pika.BasicProperties(headers={"i": i, **headers}))
    publisher.close()


def publish_together(ch: Any, queue: str, bodies: Iterable[str]) -> None:
    """Publish in one transaction: the broker appends them in one batch (one turn)."""
    ch.tx_select()
    for body in bodies:
        ch.basic_publish("", queue, body.encode())
    ch.tx_commit()


@dataclass
class Delivery:
    body: str
    offset: int | None
    tag: int
    redelivered: bool
    headers: dict[str, Any]


@dataclass
class Collector:
    """A consumer's deliveries, in arrival order."""

    got: list[Delivery] = field(default_factory=list)

    def __call__(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        headers = dict(props.headers or {})
        self.got.append(Delivery(body.decode(), headers.get("x-stream-offset"), method.delivery_tag,
                                 method.redelivered, headers))  # fmt: skip

    @property
    def bodies(self) -> list[str]:
        return [d.body for d in self.got]

    @property
    def offsets(self) -> list[int | None]:
        return [d.offset for d in self.got]


def consume(conn: pika.BlockingConnection, ch: Any, queue: str, *, prefetch: int = 100,
            offset: Any = None, tag: str | None = None, wait_for: int = 0,
            **arguments: Any) -> Collector:  # fmt: skip
    """Start a consumer (x-stream-offset when given) and pump until wait_for deliveries arrived."""
    ch.basic_qos(prefetch_count=prefetch)
    if offset is not None:
        arguments["x-stream-offset"] = offset
    collector = Collector()
    extra = {"consumer_tag": tag} if tag is not None else {}
    ch.basic_consume(queue, collector, arguments=arguments, **extra)
    pump_until(conn, lambda: len(collector.got) >= wait_for)
    return collector


def round_trip(ch: Any, queue: str) -> Any:
    """A passive declare: once it is answered, every frame sent before it was handled."""
    return ch.queue_declare(queue, passive=True).method
