"""Partitioned-queue fixtures: a warrenmq subprocess per test module, fresh names per test.

As in tests/broker: each module gets its own `warrenmq serve` on an
ephemeral port with its data in a temporary directory, tests name their
queues and exchanges with `names`, and a traceback in the broker's log
fails the test. Partitioned queues are warrenmq's own, so nothing here runs
against a reference RabbitMQ.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from support.broker import BrokerProcess, running_broker, watching
from support.partitions import DEADLINE


class Target:
    """The broker under test, and ways to look at it from outside."""

    def __init__(self, process: BrokerProcess) -> None:
        self.process = process

    @property
    def port(self) -> int:
        return self.process.port

    def pika_params(self) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            "127.0.0.1", self.port, "/", pika.PlainCredentials("guest", "guest"),
            connection_attempts=1, blocked_connection_timeout=DEADLINE,
        )  # fmt: skip

    def restart(self) -> None:
        """A clean restart on the same data directory (SIGTERM, then start)."""
        assert self.process.stop() == 0, self.process.log_text()
        self.process.start()

    def crash_and_restart(self) -> None:
        """kill -9, then start again on the same data directory."""
        self.process.kill()
        self.process.start()

    def api(self, path: str) -> Any:
        """GET a management API path (already quoted) as guest."""
        request = urllib.request.Request(
            self.process.management_url + path,
            headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
        )
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return json.load(response)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.process.metrics_url, timeout=DEADLINE) as response:
            return response.read().decode()

    def dump(self, queue: str, partition: int) -> list[dict[str, Any]]:
        """A partition's records, read from the data directory by `warrenmq log dump`."""
        out = subprocess.run(
            [sys.executable, "-m", "warrenmq.broker.cli", "log", "dump", queue, "--json",
             "--data-dir", str(self.process.data_dir), "--partition", str(partition)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture(scope="module")
def broker_module() -> Iterator[Target]:
    with running_broker("warrenmq-partitions-") as process:
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

