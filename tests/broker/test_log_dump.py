"""`warrenmq log dump` against the data directory of a running broker.

One broker (small segments, so a queue's log spans several segment files)
gets known messages in two groups with a pause between them; the tests dump
that queue's log and compare what they read with what was published.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pika
import pytest
from pamqp import commands
from support.broker import BrokerProcess

from warrenmq.amqp.codec import encode_properties, encode_short
from warrenmq.broker.cli import main
from warrenmq.broker.message import FLAG_PERSISTENT, record_headers
from warrenmq.logstore import LogConfig, LogManager
from warrenmq.logstore.records import encode_batch

QUEUE = "orders"
BOUND_KEY = "orders.created"
PUBLISH_TIMESTAMP = 1_700_000_000  # the timestamp property, seconds
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass
class Published:
    exchange: str
    routing_key: str
    body: bytes
    properties: dict  # as the dump should show them
    persistent: bool


@dataclass
class Setup:
    process: BrokerProcess
    data_dir: Path
    messages: list[Published]
    second_group_start: int  # offset of the first message published after the pause
    between_groups_ms: int  # a time after the first group and before the second


def _message(i: int) -> tuple[str, str, bytes, pika.BasicProperties, Published]:
    exchange, key = ("", QUEUE) if i % 2 == 0 else ("amq.direct", BOUND_KEY)
    body = f"order-{i}:".encode() + b"x" * (i * 37 % 180)
    mode = 2 if i % 3 else 1
    headers = {"attempt": i, "source": "shop", "urgent": i % 4 == 0,
               "tags": ["a", i], "nested": {"depth": 1}}  # fmt: skip
    props = pika.BasicProperties(
        content_type="application/json", headers=headers, delivery_mode=mode, priority=i % 10,
        correlation_id=f"corr-{i}", message_id=f"msg-{i}", expiration="600000",
        timestamp=PUBLISH_TIMESTAMP, type="order.created", app_id="shop",
    )  # fmt: skip
    shown = {
        "content_type": "application/json", "headers": headers, "delivery_mode": mode,
        "priority": i % 10, "correlation_id": f"corr-{i}", "expiration": "600000",
        "message_id": f"msg-{i}", "timestamp": "2023-11-14T22:13:20Z", "type": "order.created",
        "app_id": "shop",
    }  # fmt: skip
    return exchange, key, body, props, Published(exchange, key, body, shown, mode == 2)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    base = Path(tempfile.mkdtemp(prefix="warrenmq-logdump-"))
    data = base / "data"
    data.mkdir()
    config = base / "warrenmq.yaml"
    config.write_text("segment_bytes: 4096\n")
    process = BrokerProcess(data, "--config", str(config))
    try:
        process.start()
        conn = pika.BlockingConnection(pika.URLParameters(process.url))
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare(QUEUE, durable=True)
        channel.queue_bind(QUEUE, "amq.direct", BOUND_KEY)
        messages = []

        def publish(numbers: range) -> None:
            for i in numbers:
                exchange, key, body, props, expected = _message(i)
                channel.basic_publish(exchange, key, body, props, mandatory=True)
                messages.append(expected)

        publish(range(20))
        time.sleep(0.02)
        between = _now_ms()
        time.sleep(0.02)
        publish(range(20, 40))
        channel.basic_publish("", QUEUE, b"\x00\x01binary" * 10)
        messages.append(Published("", QUEUE, b"\x00\x01binary" * 10, {}, False))
        conn.close()
        setup = Setup(process, data, messages, 20, between)
        assert len(list(_partition_dir(data).glob("*.log"))) > 2  # the log spans segments
        yield setup
    finally:
        try:
            process.stop()
        finally:
            process.kill()
            shutil.rmtree(base, ignore_errors=True)


def _partition_dir(data: Path, vhost: str = "/", queue: str = QUEUE) -> Path:
    (topic,) = [
        p for p in (data / "topics").iterdir()
        if json.loads((p / "topic.json").read_text())["name"] == f"{vhost}\x00{queue}"
    ]  # fmt: skip
    return topic / "0"


def dump(capsys: pytest.CaptureFixture, setup: Setup, *args: str) -> tuple[int, str, str]:
    status = main(["log", "dump", QUEUE, "--data-dir", str(setup.data_dir), *args])
    out, err = capsys.readouterr()
    return status, out, err


def dump_json(capsys: pytest.CaptureFixture, setup: Setup, *args: str) -> list[dict]:
    status, out, err = dump(capsys, setup, "--json", *args)
    assert (status, err) == (0, "")
    return [json.loads(line) for line in out.splitlines()]


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime, except the recovery points the broker rewrites
    every 30 seconds on its own."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("recovery-point")
    }


# ------------------------------------------------------------------ records
def test_json_records_equal_what_was_published(capsys, setup):
    records = dump_json(capsys, setup)
    assert [r["offset"] for r in records] == list(range(len(setup.messages)))
    for record, sent in zip(records, setup.messages, strict=True):
        assert record["exchange"] == sent.exchange
        assert record["routing_key"] == sent.routing_key
        assert record["persistent"] is sent.persistent
        assert record["properties"] == sent.properties
        assert record["body_size"] == len(sent.body)
        assert record["body_truncated"] is (len(sent.body) > 60)
        assert ISO_MS.match(record["time"])
    printable = [(r, s) for r, s in zip(records, setup.messages, strict=True) if s.properties]
    for record, sent in printable:
        assert record["body_preview"] == sent.body[:60].decode()
    assert records[-1]["body_preview"] == "..binary" * 7 + "..bi"  # the first 60 of 80 bytes
    times = [r["timestamp"] for r in records]
    assert times == sorted(times)
    assert times[19] < setup.between_groups_ms <= times[20]


def test_text_lines_show_each_record(capsys, setup):
    status, out, err = dump(capsys, setup)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == len(setup.messages)
    for offset, (line, sent) in enumerate(zip(lines, setup.messages, strict=True)):
        assert line.startswith(f"offset={offset} time=")
        assert f'exchange="{sent.exchange}" routing_key="{sent.routing_key}"' in line
        assert f"persistent={'yes' if sent.persistent else 'no'}" in line
        assert f"size={len(sent.body)}" in line
    first = lines[1]
    assert '"correlation_id": "corr-1"' in first
    assert '"headers": {"attempt": 1, "source": "shop", "urgent": false' in first
    assert first.endswith('body="order-1:' + "x" * 37 + '"')
    long_one = lines[4]  # 8 + 148 bytes: cut at 60
    assert long_one.endswith('body="order-4:' + "x" * 52 + '"...')
    assert lines[-1].endswith("properties={} size=80 " + 'body="' + "..binary" * 7 + '..bi"...')


def test_from_offset(capsys, setup):
    records = dump_json(capsys, setup, "--from-offset", "7")
    assert [r["offset"] for r in records] == list(range(7, len(setup.messages)))
    assert records[0]["properties"]["message_id"] == "msg-7"
    assert dump_json(capsys, setup, "--from-offset", str(len(setup.messages))) == []


def test_limit(capsys, setup):
    records = dump_json(capsys, setup, "--from-offset", "3", "--limit", "4")
    assert [r["properties"]["message_id"] for r in records] == [f"msg-{i}" for i in range(3, 7)]
    status, out, _err = dump(capsys, setup, "--limit", "2")
    assert status == 0 and len(out.splitlines()) == 2


@pytest.mark.parametrize("form", ["epoch-ms", "iso"])
def test_from_time_between_groups_selects_the_second(capsys, setup, form):
    ms = setup.between_groups_ms
    when = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    records = dump_json(capsys, setup, "--from-time", str(ms) if form == "epoch-ms" else when)
    assert [r["offset"] for r in records] == list(
        range(setup.second_group_start, len(setup.messages))
    )


def test_from_time_as_dates(capsys, setup):
    assert len(dump_json(capsys, setup, "--from-time", "2000-01-01")) == len(setup.messages)
    assert dump_json(capsys, setup, "--from-time", "2999-01-01T00:00:00Z") == []


def test_transient_message_is_in_the_log_while_the_broker_runs(capsys, setup):
    conn = pika.BlockingConnection(pika.URLParameters(setup.process.url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare("scratch", durable=False)
        channel.basic_publish("", "scratch", b"fleeting", pika.BasicProperties(delivery_mode=1))
    finally:
        conn.close()
    status = main(["log", "dump", "scratch", "--data-dir", str(setup.data_dir), "--json"])
    out, _err = capsys.readouterr()
    assert status == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["routing_key"] == "scratch"
    assert record["persistent"] is False
    assert record["properties"] == {"delivery_mode": 1}
    assert record["body_preview"] == "fleeting"


# ------------------------------------------------------------ read-only use
def test_dump_while_running_changes_no_file(setup):
    before = _snapshot(setup.data_dir)
    cli = [sys.executable, "-m", "warrenmq.broker.cli", "log", "dump", QUEUE,
           "--data-dir", str(setup.data_dir)]  # fmt: skip
    full = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    by_time = subprocess.run([*cli, "--from-time", str(setup.between_groups_ms), "--json"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    after = _snapshot(setup.data_dir)
    assert (full.returncode, full.stderr) == (0, "")
    assert len(full.stdout.splitlines()) == len(setup.messages)
    assert (by_time.returncode, by_time.stderr) == (0, "")
    first = json.loads(by_time.stdout.splitlines()[0])
    assert first["properties"]["message_id"] == f"msg-{setup.second_group_start}"
    assert before.keys() == after.keys()
    changed = [name for name in before if before[name] != after[name]]
    assert changed == []


def test_stops_quietly_at_a_torn_tail(capsys, setup, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(setup.data_dir, copy)
    last_segment = sorted(_partition_dir(copy).glob("*.log"))[-1]
    size = os.path.getsize(last_segment)
    next_batch, _first, _max = encode_batch(
        len(setup.messages), 0, [(_now_ms(), None, b"torn", b"")]
    )
    with open(last_segment, "ab") as f:
        f.write(next_batch[: len(next_batch) - 3])  # a crash in the middle of a write
    status = main(["log", "dump", QUEUE, "--data-dir", str(copy), "--json"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert len(out.splitlines()) == len(setup.messages)
    assert os.path.getsize(last_segment) == size + len(next_batch) - 3  # the dump cut nothing


def test_index_positions_of_a_closed_log_are_used_and_checked(capsys, tmp_path):
    """A cleanly closed log has index entries inside its segments (batches of 5
    records here); a start found through them, or past a stale one, is exact."""
    data = tmp_path / "data"
    manager = LogManager(str(data), LogConfig(index_interval_bytes=200, segment_bytes=2000))
    log = manager.create_topic("/\x00q", 1).partition(0)
    headers = record_headers(FLAG_PERSISTENT, encode_short("") + encode_short("q"),
                             encode_properties(commands.Basic.Properties(message_id="m")))  # fmt: skip
    for first in range(0, 100, 5):
        log.append(
            [(1_000_000 + 10 * i, None, b"body-%d" % i, headers) for i in range(first, first + 5)]
        )
    manager.close()
    indexes = sorted((data / "topics" / "%2F%00q" / "0").glob("*.index"))
    assert len(indexes) > 2 and all(p.stat().st_size for p in indexes)

    def offsets(*args: str) -> list[int]:
        assert main(["log", "dump", "q", "--data-dir", str(data), "--json", *args]) == 0
        return [json.loads(line)["offset"] for line in capsys.readouterr().out.splitlines()]

    assert offsets("--from-offset", "63") == list(range(63, 100))
    assert offsets("--from-time", "1000375") == list(range(38, 100))
    for index in indexes:  # stale entries: every position one byte off
        raw = bytearray(index.read_bytes())
        for i in range(4, len(raw), 8):
            raw[i + 3] += 1
        index.write_bytes(bytes(raw))
    assert offsets("--from-offset", "63") == list(range(63, 100))
    assert offsets("--from-time", "1000375", "--limit", "3") == [38, 39, 40]


# ------------------------------------------------------------------- errors
def test_missing_queue_names_the_existing_ones(capsys, setup):
    status = main(["log", "dump", "nope", "--data-dir", str(setup.data_dir)])
    _out, err = capsys.readouterr()
    assert status == 2
    assert err.count("\n") == 1
    assert "no queue 'nope' in vhost '/'" in err and QUEUE in err


def test_missing_vhost_names_queues_elsewhere(capsys, setup):
    status = main(["log", "dump", QUEUE, "--vhost", "other", "--data-dir", str(setup.data_dir)])
    _out, err = capsys.readouterr()
    assert status == 2
    assert f"{QUEUE} (vhost '/')" in err


def test_bad_time(capsys, setup):
    status, out, err = dump(capsys, setup, "--from-time", "yesterday")
    assert (status, out) == (2, "")
    assert "bad --from-time 'yesterday'" in err and err.count("\n") == 1


def test_partition_out_of_range(capsys, setup):
    status, _out, err = dump(capsys, setup, "--partition", "1")
    assert status == 2
    assert "has 1 partition(s); no partition 1" in err


def test_missing_data_dir(capsys, tmp_path):
    missing = tmp_path / "no-such-dir"
    status = main(["log", "dump", QUEUE, "--data-dir", str(missing)])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err == f"warrenmq log dump: no data directory at {missing}\n"
    assert not missing.exists()


def test_from_offset_and_from_time_exclude_each_other(capsys, setup):
    with pytest.raises(SystemExit) as exc:
        dump(capsys, setup, "--from-offset", "1", "--from-time", "0")
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
