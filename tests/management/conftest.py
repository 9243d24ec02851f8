"""Fixtures for the management API tests: a real warrenmq subprocess per test module.

`mgmt_broker` is a `warrenmq serve` with its AMQP, management HTTP and
Prometheus listeners on ephemeral ports of 127.0.0.1 (`.url`,
`.management_url`), its data in a temporary directory removed afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker import BrokerProcess


@pytest.fixture(scope="module")
def mgmt_broker() -> Iterator[BrokerProcess]:
    base = Path(tempfile.mkdtemp(prefix="warrenmq-mgmt-"))
    data = base / "data"
    data.mkdir()
    process = BrokerProcess(data)
    try:
        process.start()
        if not process.management_port:
            raise RuntimeError("no management listener:\n" + process.log_text()[-3000:])
        yield process
    finally:
        try:
            process.stop()
        finally:
            process.kill()
            shutil.rmtree(base, ignore_errors=True)
