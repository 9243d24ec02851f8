"""Stream queue fixtures: a warrenmq subprocess per test module, or a reference RabbitMQ.

As in tests/broker: each module gets its own `warrenmq serve` on an
ephemeral port with its data in a temporary directory, tests name their
queues with `names`, and a traceback in the broker's log fails the test.
Pointed at a RabbitMQ with

    WARRENMQ_REFERENCE_URL=amqp://guest:guest@127.0.0.1:5673/ .venv/bin/pytest tests/streams

the tests marked `restarts` or `warrenmq_only` (they restart the broker, or
look at its data directory, or test what only warrenmq does: server-side
offsets of named consumers) are skipped, and those marked `rabbitmq4`
(RabbitMQ 4.x behaviour a 3.x reference lacks) may fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pika
import pytest
from support.broker import BrokerProcess, running_broker, watching
from support.streams import DEADLINE

from warrenmq.logstore import escape_name

REFERENCE_URL = os.environ.get("WARRENMQ_REFERENCE_URL")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "rabbitmq4: RabbitMQ 4.x behaviour that a RabbitMQ 3.x reference lacks",
        "restarts: restarts the broker (not run against a reference)",
        "warrenmq_only: warrenmq's own behaviour or files (not run against a reference)",
    ):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not REFERENCE_URL:
        return
    here = Path(__file__).parent
    for item in items:
        if here not in Path(str(item.path)).parents:
            continue
        if item.get_closest_marker("restarts") or item.get_closest_marker("warrenmq_only"):
            item.add_marker(pytest.mark.skip(reason="not run against a reference broker"))
        if item.get_closest_marker("rabbitmq4"):
            item.add_marker(pytest.mark.xfail(reason="RabbitMQ 4.x behaviour", strict=False))


class Target:
    """The broker under test: a warrenmq subprocess, or a reference RabbitMQ."""

    def __init__(self, process: BrokerProcess | None, url: str | None = None) -> None:
        self.process = process
        self._url = url

    @property
    def reference(self) -> bool:
        return self.process is None

    @property
    def url(self) -> str:
        return self._url if self.process is None else self.process.url

    def pika_params(self) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            "127.0.0.1", urlparse(self.url).port, "/", pika.PlainCredentials("guest", "guest"),
            connection_attempts=1, blocked_connection_timeout=DEADLINE,
        )  # fmt: skip

    def restart(self) -> None:
        """A clean restart on the same data directory (SIGTERM, then start)."""
        assert self.process is not None
        assert self.process.stop() == 0, self.process.log_text()
        self.process.start()

    def crash_and_restart(self) -> None:
        """kill -9, then start again on the same data directory."""
        assert self.process is not None
        self.process.kill()
        self.process.start()

    def partition_dir(self, queue: str, vhost: str = "/") -> Path:
        """The directory of a queue's log partition (docs/storage.md)."""
        assert self.process is not None
        return self.process.data_dir / "topics" / escape_name(f"{vhost}\x00{queue}") / "0"


@pytest.fixture(scope="module")
def broker_module() -> Iterator[Target]:
    if REFERENCE_URL:
        yield Target(None, REFERENCE_URL)
        return
    with running_broker("warrenmq-streams-") as process:
        yield Target(process)


@pytest.fixture
def broker(broker_module: Target) -> Iterator[Target]:
    """The module's broker; the test fails if the broker logged a traceback meanwhile."""
    with watching(broker_module.process):
        yield broker_module


@pytest.fixture
def names(request: pytest.FixtureRequest, broker: Target) -> Iterator[Callable[[str], str]]:
    """names("s") -> a fresh name; streams declared under such names are deleted afterwards."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    tag = uuid.uuid4().hex[:8]
    made: list[str] = []

    def name(kind: str = "s") -> str:
        made.append(f"{base}.{kind}.{tag}")
        return made[-1]

    yield name
    with contextlib.suppress(Exception):  # a reference broker keeps what tests leave
        conn = pika.BlockingConnection(broker.pika_params())
        ch = conn.channel()
        for queue in made:
            ch.queue_delete(queue)
        conn.close()


@pytest.fixture
def connect(broker: Target) -> Iterator[Callable[[], pika.BlockingConnection]]:
    """connect() -> a pika BlockingConnection to the broker, closed after the test."""
    opened: list[pika.BlockingConnection] = []

    def connect() -> pika.BlockingConnection:
        conn = pika.BlockingConnection(broker.pika_params())
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        if conn.is_open:
            with contextlib.suppress(Exception):  # closed by the broker meanwhile
                conn.close()


@pytest.fixture
def run() -> Callable[..., Any]:
    """run(coro) -> its result; an asyncio scenario with a deadline."""

    def run(coro: Any, timeout: float = 4 * DEADLINE) -> Any:
        return asyncio.run(asyncio.wait_for(coro, timeout))

    return run

