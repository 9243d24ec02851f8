"""Every rabbitmq_* family we expose is RabbitMQ 3.10's: same name, type, label names and HELP.

The reference is tests/metrics/rabbitmq_3_10_metrics.txt, recorded from a
real RabbitMQ 3.10 by record_rabbitmq_metrics.py (run it again to refresh).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from metrics import workload
from metrics.exposition import Exposition
from support.broker import BrokerProcess

RECORDED = Path(__file__).with_name("rabbitmq_3_10_metrics.txt")
# Families we label with a subset of RabbitMQ's labels, and why.
FEWER_LABELS = {
    # RabbitMQ counts per (channel, exchange, queue); we count per queue only.
    "rabbitmq_queue_messages_published_total": "counted per queue",
}
# What RabbitMQ's dashboards read, which we must expose.
REQUIRED = {
    "rabbitmq_identity_info", "rabbitmq_build_info",
    "rabbitmq_connections", "rabbitmq_channels", "rabbitmq_consumers", "rabbitmq_queues",
    "rabbitmq_connections_opened_total", "rabbitmq_connections_closed_total",
    "rabbitmq_channels_opened_total", "rabbitmq_channels_closed_total",
    "rabbitmq_queues_declared_total", "rabbitmq_queues_created_total", "rabbitmq_queues_deleted_total",
    "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked", "rabbitmq_queue_messages",
    "rabbitmq_queue_consumers", "rabbitmq_queue_messages_published_total",
    "rabbitmq_global_publishers", "rabbitmq_global_consumers",
    "rabbitmq_channel_messages_published_total", "rabbitmq_channel_messages_confirmed_total",
    "rabbitmq_channel_messages_unroutable_dropped_total",
    "rabbitmq_channel_messages_unroutable_returned_total",
    "rabbitmq_channel_messages_delivered_total", "rabbitmq_channel_messages_delivered_ack_total",
    "rabbitmq_channel_messages_redelivered_total", "rabbitmq_channel_messages_acked_total",
    "rabbitmq_channel_get_total", "rabbitmq_channel_get_ack_total", "rabbitmq_channel_get_empty_total",
    "rabbitmq_channel_messages_unacked", "rabbitmq_channel_messages_unconfirmed",
} | {
    f"rabbitmq_global_messages_{name}_total" for name in (
        "received", "received_confirm", "routed", "unroutable_dropped", "unroutable_returned",
        "confirmed", "delivered", "delivered_consume_auto_ack", "delivered_consume_manual_ack",
        "delivered_get_auto_ack", "delivered_get_manual_ack", "get_empty", "redelivered",
        "acknowledged", "dead_lettered_rejected", "dead_lettered_expired", "dead_lettered_maxlen",
        "dead_lettered_delivery_limit",
    )
}  # fmt: skip


def recorded_families() -> dict[str, tuple[str, str, set[str]]]:
    """name -> (type, HELP, label sets seen on either endpoint)."""
    out: dict[str, tuple[str, str, set[str]]] = {}
    for line in RECORDED.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        _endpoint, name, kind, labels, help_text = line.split("\t")
        entry = out.setdefault(name, (kind, help_text, set()))
        assert entry[:2] == (kind, help_text), f"{name}: the endpoints disagree"
        if labels != "?":
            entry[2].add(labels)
    return out


def test_the_reference_file_was_recorded_from_rabbitmq_3_10() -> None:
    text = RECORDED.read_text()
    assert 'rabbitmq_version="3.10.' in text
    recorded = recorded_families()
    assert recorded["rabbitmq_queue_messages_ready"][2] == {"-", "queue,vhost"}
    assert recorded["rabbitmq_global_messages_received_total"] == (
        "counter", "Total number of messages received from publishers", {"protocol"}
    )


def test_every_rabbitmq_family_we_expose_is_rabbitmq_3_10s(broker: BrokerProcess) -> None:
    w = workload.Workload(prefix=f"names-{uuid.uuid4().hex[:8]}")
    workload.run(broker.url, w)  # so that every per-queue and per-channel family has samples
    try:
        ours = Exposition.scrape(broker.metrics_url).families
    finally:
        workload.close(broker.url, w)
    recorded = recorded_families()
    assert set(ours) >= REQUIRED, sorted(REQUIRED - set(ours))
    problems = []
    for name, family in sorted(ours.items()):
        if not name.startswith("rabbitmq_"):
            assert name.startswith("warrenmq_"), name  # our own families keep our prefix
            continue
        if name not in recorded:
            problems.append(f"{name}: RabbitMQ 3.10 has no such family")
            continue
        kind, help_text, label_sets = recorded[name]
        if family.type != kind:
            problems.append(f"{name}: type {family.type}, RabbitMQ's is {kind}")
        if family.help != help_text:
            problems.append(f"{name}: HELP {family.help!r}, RabbitMQ's is {help_text!r}")
        for labels in family.label_sets:
            if labels in label_sets:
                continue
            ours_set = set(labels.split(","))
            if name in FEWER_LABELS and any(ours_set < set(ref.split(",")) for ref in label_sets):
                continue
            problems.append(f"{name}: labels {labels}, RabbitMQ's are {sorted(label_sets)}")
    assert not problems, "\n".join(problems)
