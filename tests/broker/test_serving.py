"""`warrenmq serve`: config files, clean shutdown, and who may log in."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pika
import pytest
from support.broker import BrokerProcess

from warrenmq.broker.config import BrokerConfig, ConfigError, load_config, parse_config
from warrenmq.broker.server import Broker


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "warrenmq.broker.cli", "serve", *args],
        capture_output=True, text=True, timeout=30, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("heartbeat: 30\nfsync: sometimes\n", 2, "fsync: must be one of always, interval, never"),
        ("listeners: [127.0.0.1:5672]\ndata_dirr: ./x\n", 2, "data_dirr: unknown key"),
        ("frame_max: 1024\n", 1, "frame_max: must be at least 4096"),
        ("default_user:\n  username: bob\n  pasword: x\n", 3, "default_user.pasword: unknown key"),
        ("listeners: [nonsense]\n", 1, "listeners: must be host:port"),
        ("channel_max: [1\n", 2, "not valid YAML"),
    ],
)
def test_a_bad_config_file_names_file_line_and_key(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "warrenmq.yaml"
    path.write_text(text)
    result = serve("--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{path}:{line}: " in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_a_config_file_sets_everything_and_flags_override_it(tmp_path: Path) -> None:
    path = tmp_path / "warrenmq.yaml"
    path.write_text(
        "listeners: [127.0.0.1:5999]\ndata_dir: /tmp/x\nfsync: interval\nfsync_interval_ms: 50\n"
        "heartbeat: 10\nframe_max: 8192\nchannel_max: 64\nlog_level: debug\n"
        "default_user: {username: admin, password: s3cret}\n"
    )
    config = load_config(str(path))
    assert (config.listeners[0].port, config.fsync, config.fsync_interval_ms) == (5999, "interval", 50)
    assert (config.heartbeat, config.frame_max, config.channel_max) == (10, 8192, 64)
    assert (config.default_user, config.default_pass, config.log_level) == ("admin", "s3cret", "debug")
    with pytest.raises(ConfigError, match="--fsync: must be one of"):
        from warrenmq.broker.config import apply_overrides

        apply_overrides(config, {"fsync": "sometimes"})
    assert parse_config("") == BrokerConfig()


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    result = serve("--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and "nope.yaml: cannot read the config file" in result.stderr


def test_sigterm_closes_clients_with_320_and_restarts_cleanly(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        conn.channel().queue_declare("kept", durable=True)
        closed: list[BaseException] = []

        def watch() -> None:
            try:
                while True:
                    conn.process_data_events(time_limit=0.1)
            except Exception as exc:  # the broker's Connection.Close
                closed.append(exc)

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert broker.stop() == 0
        watcher.join(10)
        assert closed, "the client was not told the broker went away"
        assert "320" in str(closed[0]) and "CONNECTION_FORCED" in str(closed[0])
        assert "broker stopped cleanly" in broker.log_text()
        assert (tmp_path / "data" / ".clean-shutdown").exists()
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        assert conn.channel().queue_declare("kept", passive=True).method.queue == "kept"
        conn.close()
        assert "recovering" not in broker.log_text().split("broker stopped cleanly")[-1]
    finally:
        broker.kill()


def test_guest_may_log_in_from_loopback_only() -> None:
    broker = Broker(BrokerConfig())
    assert broker.authenticate("guest", "guest", "127.0.0.1")
    assert broker.authenticate("guest", "guest", "::1")
    assert not broker.authenticate("guest", "guest", "192.0.2.10")
    assert not broker.authenticate("guest", "wrong", "127.0.0.1")
    other = Broker(BrokerConfig(default_user="app", default_pass="pw", loopback_users=["guest"]))
    assert other.authenticate("app", "pw", "192.0.2.10")  # only loopback_users are limited
