"""The scripts in examples/topologies/, each run as a subprocess against a real broker.

Each applies its YAML file through the management API (`warrenmq topology
apply`), runs, and deletes the vhost it created.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.broker import BrokerProcess

from warrenmq.broker.ctl import ManagementClient
from warrenmq.broker.topology import load

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "topologies"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    proc = BrokerProcess(tmp_path_factory.mktemp("topology-examples") / "data").start()
    yield proc
    proc.kill()


def run_example(broker: BrokerProcess, script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--url", broker.url,
         "--management-url", broker.management_url, *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    print(done.stdout)  # shown by pytest when a test fails
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout


def landed(out: str, body: str) -> str:
    """Where the tour says a message went: the text after its arrow."""
    match = re.search(rf"  '{re.escape(body)}' with .* -> (.*)$", out, re.MULTILINE)
    assert match, body
    return match.group(1)


def assert_vhost_deleted(broker: BrokerProcess, vhost: str) -> None:
    client = ManagementClient(broker.management_url, "guest", "guest")
    assert vhost not in {v["name"] for v in client.request("GET", "/api/vhosts")}


@pytest.mark.parametrize("name", ["routing_tour", "order_processing", "event_bus"])
def test_each_example_topology_is_valid(name: str) -> None:
    topology = load(EXAMPLES / f"{name}.yaml")
    assert topology.definitions["exchanges"] and topology.definitions["queues"]


def test_routing_tour(broker: BrokerProcess) -> None:
    out = run_example(broker, "routing_tour.py", "--scale", "0.05")
    assert "applied routing_tour.yaml (6 exchanges, 13 queues, 13 bindings)" in out
    unroutable = "nowhere (no binding matched: returned to the publisher)"
    # direct
    assert landed(out, "welcome mail") == "tasks.email"
    assert landed(out, "login code") == "tasks.sms"
    assert landed(out, "a fax") == unroutable
    # fanout
    assert landed(out, "menu of the day") == "screens.kitchen, screens.lobby"
    # topic
    assert landed(out, "card declined") == "logs.billing, logs.errors, logs.everything"
    assert landed(out, "basket lost") == "logs.errors, logs.everything"
    assert landed(out, "invoice paid") == "logs.billing, logs.everything"
    assert landed(out, "bare error") == "logs.everything"
    # headers
    assert landed(out, "quarterly report") == "documents.pdf-reports"
    assert landed(out, "urgent report") == "documents.pdf-reports, documents.urgent-or-logs"
    assert landed(out, "access log") == "documents.urgent-or-logs"
    assert landed(out, "an invoice") == unroutable
    # consistent hash: exactly one shard each, the same one for the same key
    shards = {n: landed(out, f"order of customer-{n}") for n in range(1, 10)}
    assert set(shards.values()) <= {"shards.a", "shards.b", "shards.c"}, shards
    assert landed(out, "another order of customer-1") == shards[1]
    # delayed: published 2 s, none, 1 s (scaled); arrive in the order of their delays
    assert "sent 'stretch' with x-delay 100 ms" in out
    assert "arrival order: drink water | stand up | stretch" in out
    assert "EARLY" not in out
    assert "deleted vhost tour" in out
    assert_vhost_deleted(broker, "tour")


def test_order_processing(broker: BrokerProcess) -> None:
    out = run_example(broker, "order_processing.py", "--scale", "0.02")
    assert ("retry ladder: orders.payments.retry.1 20ms, orders.payments.retry.2 100ms, "
            "orders.payments.retry.3 600ms") in out  # fmt: skip
    assert "result: order-1 -> paid on attempt 1" in out
    assert "result: order-2 -> paid on attempt 3" in out
    assert "result: order-3 -> parked after 4 failed attempts" in out
    assert "result: order-4 -> unroutable, kept in orders.unrouted" in out
    work = "orders.payments"
    assert (
        f"journey of order-1: published with key 'order.placed.eu' -> {work} (attempt 1: paid)"
        in out
    )
    assert (
        f"journey of order-2: published with key 'order.placed.us' -> {work} (attempt 1: failed)"
        f" -> {work}.retry.1 (20ms) -> {work} (attempt 2: failed) -> {work}.retry.2 (100ms)"
        f" -> {work} (attempt 3: paid)"
    ) in out
    assert (
        f"journey of order-3: published with key 'order.placed.eu' -> {work} (attempt 1: failed)"
        f" -> {work}.retry.1 (20ms) -> {work} (attempt 2: failed) -> {work}.retry.2 (100ms)"
        f" -> {work} (attempt 3: failed) -> {work}.retry.3 (600ms) -> {work} (attempt 4: failed)"
        " -> orders.parking"
    ) in out
    assert ("journey of order-4: published with key 'order.placed' -> "
            "orders.unrouted (alternate exchange)") in out  # fmt: skip
    # The retries come back through the ladder with the rung in the routing key.
    for rung in (1, 2, 3):
        assert re.search(rf"worker: order-3 is back after [\d.]+s in {work}\.retry\.{rung}, "
                         rf"routing key '{work}\.retry\.{rung}'", out)  # fmt: skip
    # Nobody read the notifications: after the queue's (scaled) TTL, none are left.
    assert ("3 notifications were routed there and nobody read them; 200ms (its ttl) after "
            "publishing it holds 0") in out  # fmt: skip
    assert_vhost_deleted(broker, "shop")


def test_event_bus(broker: BrokerProcess) -> None:
    out = run_example(broker, "event_bus.py")
    assert ("the service queues hold 22 messages: billing 5, shipping 2, email 2, analytics 6, "
            "audit.log 7") in out  # fmt: skip
    expected = {
        "order.placed": "billing, analytics, audit.log",
        "order.paid": "billing, shipping, analytics, audit.log",
        "payment.refunded.partial": "billing, audit.log",
        "user.signed-up": "email, analytics, audit.log",
        "order.shipped": "billing, email, analytics, audit.log",
        "inventory.low": "analytics, audit.log",
        "order.cancelled": "billing, shipping, analytics, audit.log",
    }
    for event, services in expected.items():
        assert f"event {event} -> {services}\n" in out
    assert "shipping received 2: order.paid, order.cancelled" in out
    # Each consumer printed what it received, the payload too.
    assert re.search(r"^\s*[\d.]+s\s+email <- user\.signed-up \{\"user\": \"ada\"\}$", out, re.M)
    assert len(re.findall(r"audit\.log <- ", out)) == 7
    assert ("publishing to 'audit' directly: refused, 403 ACCESS_REFUSED - cannot publish to "
            "internal exchange 'audit'") in out  # fmt: skip
    assert_vhost_deleted(broker, "events")


def test_keep_leaves_the_topology(broker: BrokerProcess) -> None:
    out = run_example(broker, "event_bus.py", "--keep")
    assert "deleted vhost" not in out
    client = ManagementClient(broker.management_url, "guest", "guest")
    try:
        queues = {q["name"] for q in client.request("GET", "/api/queues/events")}
        assert queues == {"billing", "shipping", "email", "analytics", "audit.log"}
    finally:
        client.request("DELETE", "/api/vhosts/events")
