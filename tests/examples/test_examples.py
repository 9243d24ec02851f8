"""The scripts in examples/, each run as a subprocess against a real broker (fast --scale)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pika
import pytest
from support.broker import BrokerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    proc = BrokerProcess(tmp_path_factory.mktemp("examples") / "data").start()
    yield proc
    proc.kill()


def run_example(broker: BrokerProcess, script: str, prefix: str, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--url", broker.url, "--prefix", prefix, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(done.stdout)  # shown by pytest when a test fails
    assert not done.stderr or done.returncode == 0, done.stderr
    return done.returncode, done.stdout


def assert_deleted(broker: BrokerProcess, queue: str) -> None:
    """The script cleaned up: its queues are gone."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            conn.channel().queue_declare(queue, passive=True)
        assert info.value.reply_code == 404
    finally:
        conn.close()


def test_dead_letter_parking_lot(broker: BrokerProcess) -> None:
    code, out = run_example(broker, "dead_letter_parking_lot.py", "t-dlq")
    assert code == 0, out
    assert "result: order-1 -> processed" in out
    assert "result: order-2 -> dead-letters" in out
    assert "result: order-3 -> parking-lot" in out
    # order-3 was delivered three times (x-delivery-limit 2), then parked by the broker.
    assert len(re.findall(r"worker: order-3 .*nack, requeue=True", out)) == 3
    assert "worker: order-3 (x-delivery-count=2)" in out
    assert re.search(r"dead-letters: got order-2, x-first-death-reason=rejected", out)
    assert re.search(
        r"x-death entry: count=1, reason=rejected, queue=t-dlq\.work, "
        r"exchange=t-dlq\.work, routing-keys=\['order'\]",
        out,
    )
    assert re.search(r"parking-lot: got order-3, x-first-death-reason=delivery_limit", out)
    assert "count=1, reason=delivery_limit, queue=t-dlq.work" in out
    assert_deleted(broker, "t-dlq.work")


def test_ttl_retry_ladder(broker: BrokerProcess) -> None:
    code, out = run_example(broker, "ttl_retry_ladder.py", "t-ladder", "--scale", "0.01")
    assert code == 0, out
    assert "retry queues (x-message-ttl): retry-1 10 ms, retry-2 100 ms, retry-3 600 ms" in out
    assert "result: invoice-1 -> processed on attempt 3" in out
    assert "result: invoice-2 -> parked after 4 attempts (3 retries)" in out
    # The attempt number comes from the broker's x-death count of (work, rejected).
    back = re.findall(
        r"worker: invoice-2, attempt (\d) \(back from (retry-\d) after ([\d.]+)s, "
        r"routing key 'from-(retry-\d)'",
        out,
    )
    assert [(a, q, k) for a, q, _w, k in back] == [
        ("2", "retry-1", "retry-1"),
        ("3", "retry-2", "retry-2"),
        ("4", "retry-3", "retry-3"),
    ]
    assert "x-death: retry-2 expired x1, work rejected x2, retry-1 expired x1): failed" in out
    waits = [float(w) for _a, _q, w, _k in back]
    for wait, ttl in zip(waits, (0.01, 0.1, 0.6), strict=True):
        assert ttl - 0.005 <= wait <= ttl + 0.3, (waits, ttl)
    assert waits[0] < waits[1] < waits[2], waits
    assert (
        "parking-lot: got invoice-2 after 4 failed attempts; x-death: work rejected x4, "
        "retry-3 expired x1, retry-2 expired x1, retry-1 expired x1"
    ) in out
    assert_deleted(broker, "t-ladder.work")


def test_delayed_exchange(broker: BrokerProcess) -> None:
    code, out = run_example(broker, "delayed_exchange.py", "t-delayed", "--scale", "0.1")
    if code == 2 and "refused the topology: 406 PRECONDITION_FAILED - unknown exchange type" in out:
        pytest.skip("the broker does not support the x-delayed-message exchange type yet (406)")
    assert code == 0, out
    assert (
        "result: arrival order: say hello | send the invoice | check the stock | "
        "call the customer back"
    ) in out
    got = dict(re.findall(r"reminders: got '([^']+)' after (\d+) ms", out))
    for text, delay in (
        ("send the invoice", 100),
        ("check the stock", 200),
        ("call the customer back", 300),
    ):
        assert delay <= int(got[text]) <= delay + 300, (text, got)
    assert "(x-delay header now -100)" in out, "x-delay arrives negated"
    assert (
        "'renew the certificate' (x-delay 5000000000 ms, about 58 days) is held, not delivered"
        in out
    )
    assert "EARLY" not in out
    assert_deleted(broker, "t-delayed.reminders")


def test_builtin_delayed_retry(broker: BrokerProcess) -> None:
    code, out = run_example(broker, "builtin_delayed_retry.py", "t-retry", "--scale", "0.05")
    assert code == 0, out
    assert "result: report-1 -> processed on attempt 3" in out
    assert "result: report-2 -> parked after 5 attempts (delivery_limit)" in out
    for count in (1, 2, 3, 4):
        assert f"worker: report-2, attempt {count + 1} (x-delivery-count={count}," in out
    assert "parking-lot: got report-2; x-death: queue=work reason=delivery_limit count=1" in out
    line = re.search(r"result: report-2 -> .*waits before redeliveries \(s\): (.*)", out).group(1)
    waits = [float(w) for w in line.split(", ")]
    # min(50 ms x attempts, 150 ms): 50, 100, 150, 150.
    for wait, expected in zip(waits, (0.05, 0.10, 0.15, 0.15), strict=True):
        assert expected - 0.005 <= wait <= expected + 0.25, (waits, expected)
    assert waits[0] < waits[1] < waits[2], waits
    assert_deleted(broker, "t-retry.work")
