"""End-to-end fixtures: a real warrenmq subprocess per test module, fresh names per test.

Each test module that asks for `broker` gets its own `warrenmq serve` on an
ephemeral port of 127.0.0.1, with its data in a temporary directory that is
removed afterwards. Tests name their queues and exchanges with `names`, so
tests sharing a broker never see each other's entities. After each test the
broker's log must hold no traceback.

The same tests can be pointed at a real RabbitMQ, to check that what they
expect is what RabbitMQ does:

    WARRENMQ_REFERENCE_URL=amqp://guest:guest@127.0.0.1:5673/ .venv/bin/pytest tests/broker

Against a reference broker the tests that restart the broker are skipped,
those marked `rabbitmq4` (where RabbitMQ 4.x, which warrenmq follows,
answers differently from RabbitMQ 3.x) are expected to fail, and those
marked xfail (known warrenmq bugs) are expected to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import pika
import pytest
from support.broker import BrokerProcess, running_broker, watching

REFERENCE_URL = os.environ.get("WARRENMQ_REFERENCE_URL")
DEADLINE = 10.0  # seconds any wait in these tests may take before it fails


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "rabbitmq4: RabbitMQ 4.x behaviour that a RabbitMQ 3.x reference lacks"
    )
    config.addinivalue_line(
        "markers", "restarts: restarts the broker (not run against a reference)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not REFERENCE_URL:
        return
    for item in items:
        # A strict xfail here marks a warrenmq bug: the reference must pass it.
        item.own_markers[:] = [m for m in item.own_markers if m.name != "xfail"]
        if item.get_closest_marker("restarts"):
            item.add_marker(pytest.mark.skip(reason="cannot restart a reference broker"))
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

    @property
    def port(self) -> int:
        return urlparse(self.url).port

    def pika_params(self, **extra: Any) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            "127.0.0.1", self.port, "/", pika.PlainCredentials("guest", "guest"),
            connection_attempts=1, blocked_connection_timeout=DEADLINE, **extra,
        )  # fmt: skip

    def restart(self) -> None:
        """A clean restart on the same data directory (SIGTERM, then start)."""
        assert self.process is not None
        assert self.process.stop() == 0, self.process.log_text()
        self.process.start()

    def log_text(self) -> str:
        return "" if self.process is None else self.process.log_text()


@pytest.fixture(scope="module")
def broker_module() -> Iterator[Target]:
    if REFERENCE_URL:
        yield Target(None, REFERENCE_URL)
        return
    with running_broker("warrenmq-e2e-") as process:
        yield Target(process)


@pytest.fixture
def broker(broker_module: Target) -> Iterator[Target]:
    """The module's broker; the test fails if the broker logged a traceback meanwhile."""
    with watching(broker_module.process):
        yield broker_module


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """names("q") -> a queue or exchange name no other test (or run) uses."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    tag = uuid.uuid4().hex[:8]
    return lambda kind="q": f"{base}.{kind}.{tag}"


@pytest.fixture
def connect(broker: Target) -> Iterator[Callable[..., pika.BlockingConnection]]:
    """connect() -> a pika BlockingConnection to the broker, closed after the test."""
    opened: list[pika.BlockingConnection] = []

    def connect(**extra: Any) -> pika.BlockingConnection:
        conn = pika.BlockingConnection(broker.pika_params(**extra))
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        if conn.is_open:
            with contextlib.suppress(Exception):  # closed by the broker meanwhile
                conn.close()


@pytest.fixture
def run() -> Callable[..., Any]:
    """run(coro) -> its result; an asyncio scenario with a deadline (no pytest-asyncio here)."""

    def run(coro: Any, timeout: float = 4 * DEADLINE) -> Any:
        return asyncio.run(asyncio.wait_for(coro, timeout))

    return run


def pump_until(conn: pika.BlockingConnection, predicate: Callable[[], bool],
               timeout: float = DEADLINE) -> None:  # fmt: skip
    """Process pika I/O until predicate() holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the broker")
        conn.process_data_events(time_limit=0.02)


@pytest.fixture
def pump() -> Callable[..., None]:
    return pump_until
