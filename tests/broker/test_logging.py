"""The broker's log: one line for each event an operator cares about, levels from the config."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ProbableAuthenticationError
from support.broker import BrokerProcess


@pytest.fixture
def workdir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="warrenmq-logging-"))
    (base / "data").mkdir()
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _wait_for(process: BrokerProcess, pattern: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.search(pattern, process.log_text())
        if found:
            return found.group(0)
        time.sleep(0.02)
    raise AssertionError(f"no log line matching {pattern!r} in:\n{process.log_text()}")


def test_connections_channel_errors_and_recovery_are_logged(workdir: Path) -> None:
    process = BrokerProcess(workdir / "data")
    try:
        process.start()
        text = process.log_text()
        assert "starting warrenmq" in text and str(workdir / "data") in text
        assert f"listening for AMQP on 127.0.0.1:{process.port}" in text
        assert f"listening for management HTTP on 127.0.0.1:{process.management_port}" in text

        conn = pika.BlockingConnection(pika.URLParameters(process.url))
        local = conn._impl._transport._sock.getsockname()[1]
        peer = rf"127\.0\.0\.1:{local}"
        _wait_for(process, rf"connection {peer} opened \(user 'guest', vhost '/'\)")
        channel = conn.channel()
        with pytest.raises(ChannelClosedByBroker):
            channel.queue_declare("no-such-queue", passive=True)
        _wait_for(
            process,
            rf"channel error on connection {peer}, channel 1: "
            r"404 NOT_FOUND - no queue 'no-such-queue' in vhost '/'",
        )
        conn.close()
        _wait_for(process, rf"connection {peer} closed \(user 'guest'\)")

        bad = pika.URLParameters(process.url.replace("guest:guest", "guest:wrong"))
        with pytest.raises(ProbableAuthenticationError):
            pika.BlockingConnection(bad)
        _wait_for(process, r"login refused for user 'guest'")
        assert "wrong" not in process.log_text()  # a password never reaches the log

        process.kill()
        process.start()
        _wait_for(process, r"was not shut down cleanly; recovering")
    finally:
        process.stop()
        process.kill()


def test_levels_per_logger_come_from_the_config(workdir: Path) -> None:
    config = workdir / "warrenmq.yaml"
    config.write_text("log_level: info\nlog_levels:\n  warrenmq.amqp: error\n")
    process = BrokerProcess(workdir / "data", "--config", str(config))
    try:
        process.start()
        conn = pika.BlockingConnection(pika.URLParameters(process.url))
        with pytest.raises(ChannelClosedByBroker):
            conn.channel().queue_declare("no-such-queue", passive=True)
        conn.close()
        _wait_for(process, r"closed \(user 'guest'\)")  # warrenmq.broker still logs at info
        assert "channel error" not in process.log_text()  # warrenmq.amqp logs errors only
    finally:
        process.stop()
        process.kill()


def test_a_bad_log_level_names_the_key(workdir: Path) -> None:
    from warrenmq.broker.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"x.yaml:2: log_levels: warrenmq.amqp: must be one of"):
        parse_config("log_level: info\nlog_levels: {warrenmq.amqp: loud}\n", "x.yaml")
