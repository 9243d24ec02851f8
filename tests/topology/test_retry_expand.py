"""The retry shorthand: what it expands to, its conflicts, and that the ladder works on a broker."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pika
import pytest
from support.broker import BrokerProcess

from warrenmq.broker.topology import RetryLadder, TopologyError, load

LADDER = """\
vhosts: [{name: shop}]
retry:
  - vhost: shop
    queue: orders
    delays: [1s, 10s, 1m]
    then: orders.parking
"""


def _queue(name: str, arguments: dict[str, Any], vhost: str = "shop") -> dict[str, Any]:
    return {
        "name": name,
        "vhost": vhost,
        "durable": True,
        "auto_delete": False,
        "arguments": arguments,
    }


def _exchange(name: str, type_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "vhost": "shop", "type": type_name, "durable": True, "auto_delete": False,
            "internal": False, "arguments": arguments}  # fmt: skip


def _binding(source: str, queue: str, key: str) -> dict[str, Any]:
    return {"source": source, "vhost": "shop", "destination": queue, "destination_type": "queue",
            "routing_key": key, "arguments": {}}  # fmt: skip


def test_ttl_queues_ladder_expands_to_plain_entities() -> None:
    d = load("r.yaml", text=LADDER).definitions
    assert d["exchanges"] == [
        _exchange("orders.retry", "direct", {"alternate-exchange": "orders.retry.first"}),
        _exchange("orders.retry.first", "fanout", {}),
        _exchange("orders.retry.return", "fanout", {}),
    ]
    step = {"x-dead-letter-exchange": "orders.retry.return"}
    assert d["queues"] == [
        _queue("orders", {"x-dead-letter-exchange": "orders.retry"}),
        _queue("orders.parking", {}),
        _queue(
            "orders.retry.1",
            {**step, "x-dead-letter-routing-key": "orders.retry.1", "x-message-ttl": 1000},
        ),
        _queue(
            "orders.retry.2",
            {**step, "x-dead-letter-routing-key": "orders.retry.2", "x-message-ttl": 10_000},
        ),
        _queue(
            "orders.retry.3",
            {**step, "x-dead-letter-routing-key": "orders.retry.3", "x-message-ttl": 60_000},
        ),
    ]
    assert d["bindings"] == [
        _binding("orders.retry", "orders.parking", "orders.retry.3"),
        _binding("orders.retry", "orders.retry.2", "orders.retry.1"),
        _binding("orders.retry", "orders.retry.3", "orders.retry.2"),
        _binding("orders.retry.first", "orders.retry.1", ""),
        _binding("orders.retry.return", "orders", ""),
    ]


def test_the_ladder_is_recorded_for_display() -> None:
    topology = load("r.yaml", text=LADDER)
    assert topology.retries == [RetryLadder("shop", "orders", (1000, 10_000, 60_000), "orders.parking",
                                            "ttl-queues", "retry[0]", 3)]  # fmt: skip
    ladder = topology.retries[0]
    assert ladder.exchange == "orders.retry"
    assert ladder.wait_queues == ("orders.retry.1", "orders.retry.2", "orders.retry.3")


def test_expanded_entities_point_at_the_retry_entry() -> None:
    topology = load("r.yaml", text=LADDER)
    for kind, name in [("queue", "orders.retry.2"), ("exchange", "orders.retry.first"),
                       ("queue", "orders"), ("queue", "orders.parking")]:  # fmt: skip
        assert topology.location(kind, "shop", name) == ("r.yaml", 3)
    binding = _binding("orders.retry", "orders.parking", "orders.retry.3")
    assert topology.location("binding", "shop", binding) == ("r.yaml", 3)


def test_a_declared_work_queue_keeps_its_settings_and_gains_the_dead_letter_exchange() -> None:
    text = LADDER + "queues:\n  - {name: orders, vhost: shop, type: quorum, max-length: 10}\n"
    topology = load("r.yaml", text=text)
    orders = next(q for q in topology.definitions["queues"] if q["name"] == "orders")
    assert orders["arguments"] == {"x-dead-letter-exchange": "orders.retry", "x-max-length": 10,
                                   "x-queue-type": "quorum"}  # fmt: skip
    assert topology.location("queue", "shop", "orders") == ("r.yaml", 8)


def test_identical_declarations_are_fine() -> None:
    text = LADDER + (
        "exchanges:\n  - {name: orders.retry.first, vhost: shop, type: fanout}\n"
        "queues:\n  - {name: orders.parking, vhost: shop, max-length: 100}\n"
    )
    topology = load("r.yaml", text=text)
    assert topology.location("exchange", "shop", "orders.retry.first") == ("r.yaml", 8)
    parking = next(q for q in topology.definitions["queues"] if q["name"] == "orders.parking")
    assert parking["arguments"] == {"x-max-length": 100}


def _problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        load("r.yaml", text=text)
    return [str(p) for p in info.value.problems]


def test_a_work_queue_with_another_dead_letter_exchange_is_an_error_naming_both_lines() -> None:
    text = (
        LADDER
        + "exchanges: [{name: dlx, vhost: shop}]\nqueues:\n  - {name: orders, vhost: shop, dead-letter-exchange: dlx}\n"
    )
    assert _problems(text) == [
        "r.yaml:3: retry[0].queue: queue 'orders' is declared at line 9 (queues[0]) with "
        "x-dead-letter-exchange 'dlx'; this retry ladder needs 'orders.retry'"
    ]


def test_a_work_queue_with_a_dead_letter_routing_key_breaks_the_ladder() -> None:
    text = LADDER + (
        "queues:\n  - {name: orders, vhost: shop, dead-letter-exchange: orders.retry,"
        " dead-letter-routing-key: k}\n"
    )
    found = _problems(text)
    assert len(found) == 1
    assert found[0].startswith("r.yaml:3: retry[0].queue: queue 'orders' is declared at line 8")
    assert "keep their routing key" in found[0]


def test_a_conflicting_declaration_is_an_error_naming_both_lines() -> None:
    text = LADDER + "exchanges:\n  - {name: orders.retry, vhost: shop, type: topic}\n"
    assert _problems(text) == [
        "r.yaml:3: retry[0]: exchange 'orders.retry' in vhost 'shop' is declared at line 8 "
        '(exchanges[0]) with other settings than this retry ladder needs (type: "topic" vs '
        '"direct", arguments.alternate-exchange: none vs "orders.retry.first")'
    ]


def test_problems_in_a_retry_entry_point_at_its_keys() -> None:
    text = "retry:\n  - queue: q\n    delays:\n      - 1s\n      - soon\n    then: p\n    mode: later\n"
    assert _problems(text) == [
        "r.yaml:5: retry[0].delays[1]: must be a duration such as 30s or 500ms, not 'soon'",
        "r.yaml:7: retry[0].mode: must be one of ttl-queues, delayed-exchange, not 'later'",
    ]
    same = "retry:\n  - {queue: q, delays: [1s], then: q}\n"
    assert _problems(same) == [
        "r.yaml:2: retry[0].then: must name another queue than the work queue"
    ]


def test_an_unknown_vhost_in_a_retry_entry_is_reported_once() -> None:
    text = "retry:\n  - {vhost: nope, queue: q, delays: [1s], then: p}\n"
    found = _problems(text)
    assert len(found) == 1
    assert found[0].startswith("r.yaml:2: retry[0].vhost: unknown vhost 'nope'")


def test_delayed_exchange_mode() -> None:
    text = LADDER.replace(
        "then: orders.parking", "then: orders.parking\n    mode: delayed-exchange"
    )
    topology = load("r.yaml", text=text)
    d = topology.definitions
    assert d["exchanges"] == [
        _exchange("orders.retry", "x-delayed-message", {"x-delayed-type": "direct"})
    ]
    assert d["queues"] == [
        _queue(
            "orders", {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.parking"}
        ),
        _queue("orders.parking", {}),
    ]
    assert d["bindings"] == [_binding("orders.retry", "orders", "orders")]
    assert topology.retries[0].delays == (1000, 10_000, 60_000)
    assert topology.retries[0].wait_queues == ()


# ------------------------------------------------------------------ on a broker
@pytest.fixture(scope="module")
def broker() -> Any:
    base = Path(tempfile.mkdtemp(prefix="warrenmq-retry-"))
    process = BrokerProcess(base)
    try:
        yield process.start()
    finally:
        try:
            process.stop()
        finally:
            process.kill()
            shutil.rmtree(base, ignore_errors=True)


def _import(broker: BrokerProcess, definitions: dict[str, Any]) -> None:
    request = urllib.request.Request(
        broker.management_url + "/api/definitions", method="POST", data=json.dumps(definitions).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10):
        pass


def _get(channel: Any, queue: str, timeout: float = 5.0) -> tuple[Any, Any, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue)
        if method is not None:
            return method, properties, body
        time.sleep(0.02)
    raise AssertionError(f"nothing arrived in {queue}")


def test_the_ttl_ladder_retries_with_rejects_alone(broker: BrokerProcess) -> None:
    text = "retry:\n  - {queue: work, delays: [100ms, 200ms], then: parked}\n"
    _import(broker, load("r.yaml", text=text).definitions)
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        channel = connection.channel()
        channel.basic_publish("", "work", b"job")
        keys = []
        for _ in range(3):  # the first try, then one per delay
            method, _, body = _get(channel, "work")
            assert body == b"job"
            keys.append(method.routing_key)
            channel.basic_reject(method.delivery_tag, requeue=False)
        assert keys == ["work", "work.retry.1", "work.retry.2"]
        method, properties, body = _get(channel, "parked")
        assert body == b"job"
        deaths = properties.headers["x-death"]
        assert {(d["queue"], d["reason"]) for d in deaths} >= {
            ("work", "rejected"),
            ("work.retry.1", "expired"),
            ("work.retry.2", "expired"),
        }
        channel.basic_ack(method.delivery_tag)
        for queue in ("work", "work.retry.1", "work.retry.2", "parked"):
            assert channel.queue_declare(queue, passive=True).method.message_count == 0
    finally:
        connection.close()


def test_the_delayed_exchange_ladder_parks_on_reject(broker: BrokerProcess) -> None:
    text = "retry:\n  - {queue: dwork, delays: [100ms], then: dparked, mode: delayed-exchange}\n"
    _import(broker, load("r.yaml", text=text).definitions)
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        channel = connection.channel()
        channel.basic_publish(
            "dwork.retry", "dwork", b"job", pika.BasicProperties(headers={"x-delay": 100})
        )
        method, _, _ = _get(channel, "dwork")
        channel.basic_reject(method.delivery_tag, requeue=False)
        method, _, body = _get(channel, "dparked")
        assert body == b"job"
        channel.basic_ack(method.delivery_tag)
    finally:
        connection.close()
