"""A fresh broker per test: the global counters the tests check start at zero."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.broker import BrokerProcess


@pytest.fixture
def start_broker() -> Iterator[Callable[..., BrokerProcess]]:
    """Start a broker (extra YAML config lines optional) in a temporary directory; stopped after."""
    started: list[tuple[BrokerProcess, Path]] = []

    def start(config: str = "") -> BrokerProcess:
        root = Path(tempfile.mkdtemp(prefix="warrenmq-metrics-"))
        args = []
        if config:
            (root / "warrenmq.yaml").write_text(config)
            args = ["--config", str(root / "warrenmq.yaml")]
        proc = BrokerProcess(root / "data", *args)
        started.append((proc, root))
        return proc.start()

    yield start
    for proc, root in started:
        try:
            proc.stop()
            assert "Traceback" not in proc.log_text(), proc.log_text()
        finally:
            proc.kill()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def broker(start_broker: Callable[..., BrokerProcess]) -> BrokerProcess:
    return start_broker()
