"""A real broker subprocess (`warrenmq serve`) for end-to-end and crash tests.

It listens on an ephemeral port on 127.0.0.1 (read back from its log line),
keeps its data in a directory the test owns, and can be stopped cleanly
(SIGTERM), killed (SIGKILL) and started again on the same data.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_LISTENING = re.compile(r"listening for AMQP on [^:]+:(\d+)")
_HTTP = re.compile(r"listening for (management HTTP|Prometheus metrics) on [^:]+:(\d+)")


class BrokerProcess:
    def __init__(self, data_dir: Path, *extra_args: str, fsync: str = "always") -> None:
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.fsync = fsync
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.management_port = 0  # 0 while off (pass --management off)
        self.prometheus_port = 0
        self.log_lines: list[str] = []

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}/metrics"

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        args = [
            sys.executable, "-m", "warrenmq.broker.cli", "serve",
            "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir),
            "--fsync", self.fsync, "--management", "127.0.0.1:0", "--prometheus", "127.0.0.1:0",
            *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            cwd=str(self.data_dir.parent),
        )  # fmt: skip
        port_found = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.log_lines.append(line)
                http = _HTTP.search(line)
                if http:
                    if http.group(1) == "management HTTP":
                        self.management_port = int(http.group(2))
                    else:
                        self.prometheus_port = int(http.group(2))
                m = _LISTENING.search(line)
                if m and not port_found.is_set():
                    self.port = int(m.group(1))
                    port_found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not port_found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("broker did not start:\n" + "".join(self.log_lines[-30:]))
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: a clean shutdown."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return "".join(self.log_lines)


@contextlib.contextmanager
def running_broker(prefix: str, *extra_args: str) -> Iterator[BrokerProcess]:
    """A started broker with its data in a fresh temporary directory; stopped and removed after."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    data = base / "data"
    data.mkdir()
    process = BrokerProcess(data, *extra_args)
    try:
        process.start()
        yield process
    finally:
        try:
            process.stop()
        finally:
            process.kill()
            shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def watching(process: BrokerProcess | None) -> Iterator[None]:
    """Fail the test if the broker exited, or logged a traceback, while it ran."""
    mark = len(process.log_lines) if process is not None else 0
    yield
    if process is None:
        return
    if process.proc is not None and process.proc.poll() is not None and process.proc.returncode:
        pytest.fail("the broker exited:\n" + process.log_text()[-3000:])
    new = "".join(process.log_lines[mark:])
    assert "Traceback" not in new, new
