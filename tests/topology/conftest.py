"""Fixtures for the topology command tests: real brokers, the real command line.

- `broker`: a fresh `warrenmq serve` per test (AMQP, management HTTP and
  Prometheus on ephemeral ports of 127.0.0.1), its data in `workdir`.
- `workdir`: a temporary directory, removed afterwards, for topology files
  and data directories.
- `kit`: the helpers the tests share (a test module cannot import a
  conftest): `kit.topology(...)` runs `warrenmq topology ...` in this
  process and returns its exit status and output as an operator reads
  them; `kit.running_broker(...)` starts more brokers, always stopped.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
from support.broker import BrokerProcess

from warrenmq.broker.cli import main
from warrenmq.broker.ctl import ManagementClient, api_path

SERVE_TIMEOUT = 60.0  # seconds a `serve` that must fail at start may take to do so
ARRIVAL_DEADLINE = 30.0  # seconds a message routed through dead-lettering may take
PERSISTENT = pika.BasicProperties(delivery_mode=2)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class Kit:
    """Helpers for the tests of this folder."""

    @staticmethod
    def topology(*args: str) -> Result:
        """`warrenmq topology ARGS` in this process; stdin is no terminal, so apply asks nothing."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["topology", *args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
        return Result(code, out.getvalue(), err.getvalue())

    @staticmethod
    @contextlib.contextmanager
    def running_broker(data_dir: Path, *serve_args: str) -> Iterator[BrokerProcess]:
        """A broker on data_dir, stopped (and killed if need be) when the block ends."""
        data_dir.mkdir(parents=True, exist_ok=True)
        process = BrokerProcess(data_dir, *serve_args)
        try:
            process.start()
            yield process
        finally:
            try:
                process.stop()
            finally:
                process.kill()

    @staticmethod
    def serve_until_exit(data_dir: Path, *serve_args: str) -> subprocess.CompletedProcess[str]:
        """`warrenmq serve` that is expected to refuse to start: its exit status and stderr."""
        data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "warrenmq.broker.cli", "serve", "--listen", "127.0.0.1:0",
                "--data-dir", str(data_dir), "--management", "127.0.0.1:0",
                "--prometheus", "127.0.0.1:0", *serve_args]  # fmt: skip
        # On a timeout (a broker that did start) subprocess.run kills it before raising.
        return subprocess.run(args, capture_output=True, text=True, timeout=SERVE_TIMEOUT,
                              cwd=str(data_dir.parent))  # fmt: skip

    @staticmethod
    def write(directory: Path, name: str, text: str) -> Path:
        path = directory / name
        path.write_text(text)
        return path

    @staticmethod
    def client(process: BrokerProcess) -> ManagementClient:
        return ManagementClient(process.management_url, "guest", "guest")

    @staticmethod
    def live_queue(process: BrokerProcess, vhost: str, name: str) -> dict[str, Any]:
        return Kit.client(process).request("GET", api_path("queues", vhost, name))

    @staticmethod
    @contextlib.contextmanager
    def channel(process: BrokerProcess, vhost: str = "/", user: str = "guest",
                password: str = "guest") -> Iterator[Any]:  # fmt: skip
        """A pika channel on a connection closed when the block ends."""
        params = pika.ConnectionParameters(
            "127.0.0.1", process.port, vhost, pika.PlainCredentials(user, password),
            connection_attempts=1,
        )  # fmt: skip
        connection = pika.BlockingConnection(params)
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    @staticmethod
    def publish(process: BrokerProcess, vhost: str, exchange: str, key: str, body: bytes) -> None:
        """A persistent message, with confirms and mandatory: an unroutable one fails the test."""
        with Kit.channel(process, vhost) as channel:
            channel.confirm_delivery()
            channel.basic_publish(exchange, key, body, PERSISTENT, mandatory=True)

    @staticmethod
    def get_message(channel: Any, queue: str) -> tuple[Any, Any, bytes]:
        """basic.get until a message is there (dead-lettering may take a turn or two)."""
        end = time.monotonic() + ARRIVAL_DEADLINE
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return method, properties, body
            if time.monotonic() > end:
                raise AssertionError(f"no message arrived in {queue!r}")
            time.sleep(0.02)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@pytest.fixture
def workdir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="warrenmq-topology-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def broker(workdir: Path) -> Iterator[BrokerProcess]:
    with Kit.running_broker(workdir / "data") as process:
        yield process
