"""The Prometheus endpoint after known workloads: exact counts, gauges and the log's own figures."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pika
from metrics import workload
from metrics.exposition import Exposition
from support.broker import BrokerProcess

from warrenmq.logstore import escape_name

PROTOCOL = {"protocol": "amqp091"}
CLASSIC = {"protocol": "amqp091", "queue_type": "rabbit_classic_queue"}
LOG_HISTOGRAMS = (
    "warrenmq_log_append_seconds", "warrenmq_log_append_records", "warrenmq_log_fsync_seconds",
    "warrenmq_log_commit_round_logs", "warrenmq_log_commit_round_records",
)  # fmt: skip


def _wait_for(broker: BrokerProcess, name: str, value: float) -> Exposition:
    """Scrape until a gauge shows value (a closed connection is noticed on the broker's next turn)."""
    deadline = time.monotonic() + 10
    while True:
        metrics = Exposition.scrape(broker.metrics_url)
        if metrics.value(name) == value or time.monotonic() > deadline:
            return metrics
        time.sleep(0.05)


def _partition_dir(broker: BrokerProcess, queue: str, vhost: str = "/") -> Path:
    return broker.data_dir / "topics" / escape_name(f"{vhost}\x00{queue}") / "0"


def _segment_files(broker: BrokerProcess, queue: str) -> list[Path]:
    return sorted(_partition_dir(broker, queue).glob("*.log"))


def test_global_counters_after_a_known_workload(broker: BrokerProcess) -> None:
    w = workload.Workload(prefix=f"wl-{uuid.uuid4().hex[:8]}")
    exp = workload.run(broker.url, w)
    try:
        m = Exposition.scrape(broker.metrics_url)
        g = "rabbitmq_global_messages_"
        assert m.value(g + "received_total", **PROTOCOL) == exp.received
        assert m.value(g + "received_confirm_total", **PROTOCOL) == exp.received_confirm
        assert m.value(g + "routed_total", **PROTOCOL) == exp.routed
        assert m.value(g + "unroutable_returned_total", **PROTOCOL) == exp.returned
        assert m.value(g + "unroutable_dropped_total", **PROTOCOL) == exp.dropped
        assert m.value(g + "confirmed_total", **PROTOCOL) == exp.confirmed
        assert m.value(g + "delivered_total", **CLASSIC) == exp.delivered
        assert m.value(g + "delivered_consume_manual_ack_total", **CLASSIC) == exp.delivered_consume_manual
        assert m.value(g + "delivered_consume_auto_ack_total", **CLASSIC) == exp.delivered_consume_auto
        assert m.value(g + "delivered_get_manual_ack_total", **CLASSIC) == exp.delivered_get_manual
        assert m.value(g + "delivered_get_auto_ack_total", **CLASSIC) == exp.delivered_get_auto
        assert m.value(g + "get_empty_total", **CLASSIC) == exp.get_empty
        assert m.value(g + "redelivered_total", **CLASSIC) == exp.redelivered
        assert m.value(g + "acknowledged_total", **CLASSIC) == exp.acknowledged
        for reason in ("rejected", "expired", "maxlen", "delivery_limit"):
            for strategy in ("at_most_once", "disabled"):
                got = m.value(f"{g}dead_lettered_{reason}_total", queue_type="rabbit_classic_queue",
                              dead_letter_strategy=strategy)  # fmt: skip
                assert got == exp.dead_lettered.get((reason, strategy), 0), (reason, strategy)
        assert m.value("rabbitmq_global_publishers", **PROTOCOL) == exp.publishers
        assert m.value("rabbitmq_global_consumers", **PROTOCOL) == exp.total_consumers

        assert m.value("rabbitmq_connections") == exp.connections
        assert m.value("rabbitmq_channels") == exp.channels
        assert m.value("rabbitmq_consumers") == exp.total_consumers
        assert m.value("rabbitmq_queues") == len(exp.ready)
        assert m.value("rabbitmq_connections_opened_total") == exp.connections_opened
        assert m.value("rabbitmq_connections_closed_total") == exp.connections_closed
        assert m.value("rabbitmq_channels_opened_total") == exp.channels_opened
        assert m.value("rabbitmq_channels_closed_total") == exp.channels_closed
        assert m.value("rabbitmq_queues_declared_total") == exp.queues_declared
        assert m.value("rabbitmq_queues_created_total") == exp.queues_created
        assert m.value("rabbitmq_queues_deleted_total") == exp.queues_deleted

        # As RabbitMQ's unlabelled rabbitmq_channel_*: sums over the open channels
        # only. Channel 2 (the unroutable publishes) is closed.
        assert m.value("rabbitmq_channel_messages_unroutable_returned_total") == 0
        assert m.value("rabbitmq_channel_messages_unroutable_dropped_total") == w.unroutable_confirmed
        assert m.value("rabbitmq_channel_messages_published_total") == exp.received_confirm
        assert m.value("rabbitmq_channel_messages_confirmed_total") == exp.confirmed
        assert m.value("rabbitmq_channel_messages_delivered_ack_total") == exp.delivered_consume_manual
        assert m.value("rabbitmq_channel_messages_delivered_total") == exp.delivered_consume_auto
        assert m.value("rabbitmq_channel_get_ack_total") == exp.delivered_get_manual
        assert m.value("rabbitmq_channel_get_total") == exp.delivered_get_auto
        assert m.value("rabbitmq_channel_get_empty_total") == exp.get_empty
        assert m.value("rabbitmq_channel_messages_redelivered_total") == exp.redelivered
        assert m.value("rabbitmq_channel_messages_acked_total") == exp.acknowledged
        assert m.value("rabbitmq_channel_messages_unacked") == sum(exp.unacked.values())
        assert m.value("rabbitmq_channel_consumers") == exp.total_consumers
    finally:
        workload.close(broker.url, w)

    # Every connection closed: the global counters keep what closed channels counted.
    after = _wait_for(broker, "rabbitmq_connections", 0)
    assert after.value("rabbitmq_channels") == 0
    assert after.value(g + "received_total", **PROTOCOL) == exp.received
    assert after.value(g + "unroutable_returned_total", **PROTOCOL) == exp.returned
    assert after.value(g + "acknowledged_total", **CLASSIC) == exp.acknowledged
    assert after.value(g + "received_confirm_total", **PROTOCOL) == exp.received_confirm
    assert after.value("rabbitmq_channel_messages_published_total") == 0
    assert after.value("rabbitmq_global_publishers", **PROTOCOL) == 0
    assert after.value("rabbitmq_queues") == 0
    assert after.value("rabbitmq_connections_opened_total") == exp.connections_opened + 1
    assert after.value("rabbitmq_connections_closed_total") == exp.connections_opened + 1
    assert after.value("rabbitmq_queues_deleted_total") == exp.queues_deleted + len(exp.ready)


def test_queue_gauges_and_log_figures_after_a_known_workload(broker: BrokerProcess) -> None:
    w = workload.Workload(prefix=f"wl-{uuid.uuid4().hex[:8]}")
    exp = workload.run(broker.url, w)
    try:
        m = Exposition.scrape(broker.metrics_url)
        for name, labels in (
            ("rabbitmq_queue_messages_ready", exp.ready),
            ("rabbitmq_queue_messages_unacked", exp.unacked),
            ("rabbitmq_queue_consumers", exp.consumers),
        ):
            assert {q: v for q, v in m.labelled(name, "queue").items() if q.startswith(w.prefix)} == labels
        for queue in exp.ready:
            depth = exp.ready[queue] + exp.unacked[queue]
            assert m.value("rabbitmq_queue_messages", vhost="/", queue=queue) == depth
            assert m.value("rabbitmq_queue_messages_published_total", queue_vhost="/",
                           queue=queue) == exp.published[queue]  # fmt: skip
            assert m.value("warrenmq_queue_log_end_offset", vhost="/", queue=queue) == exp.published[queue]
            files = _segment_files(broker, queue)
            assert files, queue
            assert m.value("warrenmq_queue_segments", vhost="/", queue=queue) == len(files)
            assert m.value("warrenmq_queue_segment_bytes", vhost="/", queue=queue) == sum(
                f.stat().st_size for f in files
            )
        # A: 22 appended; its first unsettled offset is the basic.get left unacked (the
        # twelfth message taken), so 11 are behind it: 10 ready and that one.
        a, b = w.name("a"), w.name("b")
        assert m.value("warrenmq_queue_consumer_offset_lag", vhost="/", queue=a) == exp.ready[a] + 1
        assert m.value("warrenmq_queue_consumer_offset_lag", vhost="/", queue=b) == 0
        # The expired messages of T were settled out of order: nothing of T is unsettled.
        assert m.value("warrenmq_queue_consumer_offset_lag", vhost="/", queue=w.name("t")) == 0
        ready_bytes = m.value("rabbitmq_queue_messages_ready_bytes", vhost="/", queue=w.name("dead"))
        assert ready_bytes == len(b"a3") + w.ttl_zero * len(b"t")  # the rejected copy and the expired

        for name in LOG_HISTOGRAMS:
            assert m.value(name + "_count") > 0, name
            assert m.value(name + "_bucket", le="+Inf") == m.value(name + "_count"), name
        # Every persistent publish to the durable queue A was confirmed, so some
        # commit rounds made at least those records durable.
        assert m.value("warrenmq_log_commit_round_records_sum") >= w.confirmed_to_a
        assert m.value("warrenmq_log_append_records_sum") >= sum(exp.published.values())
    finally:
        workload.close(broker.url, w)


def test_segments_and_offset_lag_follow_the_files_on_disk(start_broker) -> None:
    broker = start_broker("segment_bytes: 4096\n")
    queue = f"segments-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()  # one publish per turn: one append each
        for i in range(300):
            ch.basic_publish("", queue, b"%03d" % i + bytes(197), pika.BasicProperties(delivery_mode=2))
        before = Exposition.scrape(broker.metrics_url)
        files = _segment_files(broker, queue)
        assert len(files) > 5
        assert before.value("warrenmq_queue_segments", vhost="/", queue=queue) == len(files)
        assert before.value("warrenmq_queue_consumer_offset_lag", vhost="/", queue=queue) == 300
        assert before.value("warrenmq_log_append_records_count") >= 300

        for _ in range(200):  # settle the first 200: whole segments below them go
            method, _props, _body = ch.basic_get(queue, auto_ack=False)
            ch.basic_ack(method.delivery_tag)
        conn.process_data_events(time_limit=0.2)
        after = Exposition.scrape(broker.metrics_url)
        remaining = _segment_files(broker, queue)
        assert len(remaining) < len(files)
        assert after.value("warrenmq_queue_segments", vhost="/", queue=queue) == len(remaining)
        assert after.value("warrenmq_queue_segment_bytes", vhost="/", queue=queue) == sum(
            f.stat().st_size for f in remaining
        )
        assert after.value("warrenmq_queue_consumer_offset_lag", vhost="/", queue=queue) == 100
        assert after.value("rabbitmq_queue_messages_ready", vhost="/", queue=queue) == 100
        assert after.value("rabbitmq_global_messages_acknowledged_total", **CLASSIC) == 200
        assert after.value("rabbitmq_global_messages_delivered_get_manual_ack_total", **CLASSIC) == 200
    finally:
        conn.close()


def test_delivery_limit_and_a_missing_dead_letter_exchange(broker: BrokerProcess) -> None:
    prefix = f"dl-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        ch = conn.channel()
        ch.exchange_declare(f"{prefix}.dlx", "fanout")
        ch.queue_declare(f"{prefix}.dead")
        ch.queue_bind(f"{prefix}.dead", f"{prefix}.dlx")
        limited, orphan = f"{prefix}.limited", f"{prefix}.orphan"
        ch.queue_declare(limited, arguments={"x-delivery-limit": 1, "x-dead-letter-exchange": f"{prefix}.dlx"})
        ch.queue_declare(orphan, arguments={"x-dead-letter-exchange": f"{prefix}.missing"})
        ch.basic_publish("", limited, b"x")
        ch.basic_publish("", orphan, b"y")
        for _ in range(2):  # the second return goes past the limit of one
            method, _props, _body = ch.basic_get(limited, auto_ack=False)
            ch.basic_nack(method.delivery_tag, requeue=True)
        method, _props, _body = ch.basic_get(orphan, auto_ack=False)
        ch.basic_reject(method.delivery_tag, requeue=False)
        conn.process_data_events(time_limit=0.2)
        m = Exposition.scrape(broker.metrics_url)
        g = "rabbitmq_global_messages_dead_lettered_"
        labels = {"queue_type": "rabbit_classic_queue"}
        assert m.value(g + "delivery_limit_total", dead_letter_strategy="at_most_once", **labels) == 1
        assert m.value(g + "delivery_limit_total", dead_letter_strategy="disabled", **labels) == 0
        assert m.value(g + "rejected_total", dead_letter_strategy="disabled", **labels) == 1
        assert m.value(g + "rejected_total", dead_letter_strategy="at_most_once", **labels) == 0
        assert m.value("rabbitmq_queue_messages_ready", vhost="/", queue=f"{prefix}.dead") == 1
        assert m.value("rabbitmq_global_messages_redelivered_total", **CLASSIC) == 1
    finally:
        conn.close()


def test_transactions_show_as_uncommitted(broker: BrokerProcess) -> None:
    queue = f"tx-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        ch = conn.channel()
        ch.queue_declare(queue)
        ch.basic_publish("", queue, b"one")
        ch.basic_publish("", queue, b"two")
        ch.tx_select()
        method, _props, _body = ch.basic_get(queue, auto_ack=False)
        ch.basic_ack(method.delivery_tag)
        for body in (b"three", b"four", b"five"):
            ch.basic_publish("", queue, body)
        conn.process_data_events(time_limit=0.2)
        m = Exposition.scrape(broker.metrics_url)
        assert m.value("rabbitmq_channel_messages_uncommitted") == 3
        assert m.value("rabbitmq_channel_acks_uncommitted") == 1
        assert m.value("rabbitmq_global_messages_acknowledged_total", **CLASSIC) == 0
        ch.tx_commit()
        m = Exposition.scrape(broker.metrics_url)
        assert m.value("rabbitmq_channel_messages_uncommitted") == 0
        assert m.value("rabbitmq_global_messages_acknowledged_total", **CLASSIC) == 1
        assert m.value("rabbitmq_queue_messages_ready", vhost="/", queue=queue) == 4
        assert m.value("rabbitmq_global_messages_routed_total", **PROTOCOL) == 5
    finally:
        conn.close()


def test_every_path_serves_the_same_families(broker: BrokerProcess) -> None:
    base = broker.metrics_url.rsplit("/metrics", 1)[0]
    families = [set(Exposition.scrape(base + path).families) for path in
                ("/metrics", "/metrics/per-object", "/metrics/detailed")]  # fmt: skip
    assert families[0] == families[1] == families[2]
    assert "rabbitmq_identity_info" in families[0]

