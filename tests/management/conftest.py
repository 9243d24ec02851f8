"""Fixtures for the management API tests: a real warrenmq subprocess per test module.

`mgmt_broker` is a `warrenmq serve` with its AMQP, management HTTP and
Prometheus listeners on ephemeral ports of 127.0.0.1 (`.url`,
`.management_url`), its data in a temporary directory removed afterwards.
`ctl(*args)` runs `warrenmq ctl` against it in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from support.broker import BrokerProcess, running_broker

from warrenmq.broker.cli import main


@pytest.fixture(scope="module")
def mgmt_broker() -> Iterator[BrokerProcess]:
    with running_broker("warrenmq-mgmt-") as process:
        if not process.management_port:
            raise RuntimeError("no management listener:\n" + process.log_text()[-3000:])
        yield process


@dataclass
class Result:
    """What `warrenmq ctl` did: its exit code and what it printed."""

    code: int
    out: str
    err: str


@pytest.fixture
def ctl(mgmt_broker: BrokerProcess, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """ctl(*args) -> Result: `warrenmq ctl --url <broker> *args`, run in this process."""

    def ctl(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(["ctl", "--url", mgmt_broker.management_url, *args])
        except SystemExit as exc:  # argparse
            code = exc.code
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return ctl
