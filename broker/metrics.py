"""Prometheus metrics on their own listener, named as RabbitMQ's rabbitmq_prometheus names them.

Nothing is pushed to prometheus_client while the broker works. The hot path
only bumps plain ints it keeps anyway (`ChannelSession.counters`,
`Queue.counters`, `Broker.counters`) and the log fills its own histograms
per batch and per commit round (`warrenmq.logstore.stats`). A scrape runs a
custom collector on the broker's event loop that walks that state once and
builds every family: so a metric costs nothing between scrapes, and gauges
(ready, unacked, consumers, segments) are exact at the moment of the scrape.

Names, types, label names and HELP texts of the `rabbitmq_*` families are
RabbitMQ 3.10's (checked against a recorded reference in tests/metrics), so
RabbitMQ's Grafana dashboards work; the log's own are `warrenmq_*`.
docs/metrics.md lists them all.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import os
import platform
import resource
import shutil
import socket
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from warrenmq.logstore import Histogram

from .partitioned import PartitionedQueue
from .session import CHANNEL_COUNTERS

PROTOCOL = "amqp091"
QUEUE_TYPE = "rabbit_classic_queue"  # warrenmq has one kind of queue; it behaves as a classic one
DEAD_LETTER_REASONS = ("rejected", "expired", "maxlen", "delivery_limit")
# RabbitMQ's dead_letter_strategy label: at_most_once when the queue has a
# dead-letter exchange to republish to, disabled when the message is dropped.
DEAD_LETTER_STRATEGIES = (("at_most_once", "dead_lettered_"), ("disabled", "discarded_"))
PATHS = ("/metrics", "/metrics/per-object", "/metrics/detailed")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the classic text format, as RabbitMQ's

# The global counters: (name without _total, HELP, channel counter, labelled by queue type).
GLOBAL_MESSAGE_COUNTERS = (
    ("received", "Total number of messages received from publishers", "publish", False),
    ("received_confirm", "Total number of messages received from publishers expecting confirmations",
     "received_confirm", False),
    ("routed", "Total number of messages routed to queues or streams", "routed", False),
    ("unroutable_dropped", "Total number of messages published as non-mandatory into an exchange and "
     "dropped as unroutable", "drop_unroutable", False),
    ("unroutable_returned", "Total number of messages published as mandatory into an exchange and "
     "returned to the publisher as unroutable", "return_unroutable", False),
    ("confirmed", "Total number of messages confirmed to publishers", "confirm", False),
    ("delivered", "Total number of messages delivered to consumers", "delivered", True),
    ("delivered_consume_auto_ack", "Total number of messages delivered to consumers using "
     "basic.consume with automatic acknowledgment", "deliver_no_ack", True),
    ("delivered_consume_manual_ack", "Total number of messages delivered to consumers using "
     "basic.consume with manual acknowledgment", "deliver", True),
    ("delivered_get_auto_ack", "Total number of messages delivered to consumers using basic.get "
     "with automatic acknowledgment", "get_no_ack", True),
    ("delivered_get_manual_ack", "Total number of messages delivered to consumers using basic.get "
     "with manual acknowledgment", "get", True),
    ("get_empty", "Total number of times basic.get operations fetched no message", "get_empty", True),
    ("redelivered", "Total number of messages redelivered to consumers", "redeliver", True),
    ("acknowledged", "Total number of messages acknowledged by consumers", "ack", True),
)  # fmt: skip
DEAD_LETTER_HELP = {
    "rejected": "Total number of messages dead-lettered due to basic.reject or basic.nack",
    "expired": "Total number of messages dead-lettered due to message TTL exceeded",
    "maxlen": "Total number of messages dead-lettered due to overflow drop-head or reject-publish-dlx",
    "delivery_limit": "Total number of messages dead-lettered due to delivery-limit exceeded",
}
# Sums over the open channels, as RabbitMQ's unlabelled rabbitmq_channel_* are.
CHANNEL_MESSAGE_COUNTERS = (
    ("rabbitmq_channel_messages_published", "Total number of messages published into an exchange "
     "on a channel", "publish"),
    ("rabbitmq_channel_messages_confirmed", "Total number of messages published into an exchange "
     "and confirmed on the channel", "confirm"),
    ("rabbitmq_channel_messages_unroutable_dropped", "Total number of messages published as "
     "non-mandatory into an exchange and dropped as unroutable", "drop_unroutable"),
    ("rabbitmq_channel_messages_unroutable_returned", "Total number of messages published as "
     "mandatory into an exchange and returned to the publisher as unroutable", "return_unroutable"),
    ("rabbitmq_channel_messages_delivered", "Total number of messages delivered to consumers in "
     "automatic acknowledgement mode", "deliver_no_ack"),
    ("rabbitmq_channel_messages_delivered_ack", "Total number of messages delivered to consumers "
     "in manual acknowledgement mode", "deliver"),
    ("rabbitmq_channel_messages_redelivered", "Total number of messages redelivered to consumers",
     "redeliver"),
    ("rabbitmq_channel_messages_acked", "Total number of messages acknowledged by consumers", "ack"),
    ("rabbitmq_channel_get", "Total number of messages fetched with basic.get in automatic "
     "acknowledgement mode", "get_no_ack"),
    ("rabbitmq_channel_get_ack", "Total number of messages fetched with basic.get in manual "
     "acknowledgement mode", "get"),
    ("rabbitmq_channel_get_empty", "Total number of times basic.get operations fetched no message",
     "get_empty"),
)  # fmt: skip
# Per-queue families, in the order `_queues` fills them: (name, type, HELP); labels
# vhost and queue, but queue_vhost and queue for the published counter, as RabbitMQ.
QUEUE_FAMILIES = (
    ("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered to consumers"),
    ("rabbitmq_queue_messages_ready_bytes", "gauge", "Size in bytes of ready messages"),
    ("rabbitmq_queue_messages_unacked", "gauge",
     "Messages delivered to consumers but not yet acknowledged"),
    ("rabbitmq_queue_messages", "gauge", "Sum of ready and unacknowledged messages - total queue depth"),
    ("rabbitmq_queue_consumers", "gauge", "Consumers on a queue"),
    ("rabbitmq_queue_messages_published", "counter", "Total number of messages published to queues"),
    ("warrenmq_queue_messages_retry_waiting", "gauge",
     "Returned messages waiting out x-delayed-retry before they are ready again"),
    ("warrenmq_queue_segments", "gauge", "Segment files in the queue's log"),
    ("warrenmq_queue_segment_bytes", "gauge", "Bytes of the queue's log segment (.log) files"),
    ("warrenmq_queue_log_end_offset", "gauge", "Offset the queue's next message will get"),
    ("warrenmq_queue_consumer_offset_lag", "gauge",
     "Log end offset minus the queue's first unsettled offset"),
)  # fmt: skip
_FAMILY_TYPES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}
LIFECYCLE_COUNTERS = (
    ("rabbitmq_connections_opened", "Total number of connections opened", "connections_opened"),
    ("rabbitmq_connections_closed", "Total number of connections closed or terminated",
     "connections_closed"),
    ("rabbitmq_channels_opened", "Total number of channels opened", "channels_opened"),
    ("rabbitmq_channels_closed", "Total number of channels closed", "channels_closed"),
    ("rabbitmq_queues_declared", "Total number of queues declared", "queues_declared"),
    ("rabbitmq_queues_created", "Total number of queues created", "queues_created"),
    ("rabbitmq_queues_deleted", "Total number of queues deleted", "queues_deleted"),
)  # fmt: skip


class BrokerSnapshot:
    """One walk over the open connections and channels: sums, and the totals they add to.

    A closed channel's counts were folded into `Broker.counters` when it
    closed, so `total(key)` (folded + open) never goes down; `open_counts`
    is the open channels' part alone.
    """

    def __init__(self, broker: Any) -> None:
        self.counters = broker.counters
        self.open_counts = dict.fromkeys(CHANNEL_COUNTERS, 0)
        self.open_counts["received_confirm"] = 0
        self.connections = len(broker.connections)
        self.channels = self.consumers = self.publishers = 0
        self.unacked = self.unconfirmed = self.uncommitted = self.acks_uncommitted = 0
        counts = self.open_counts
        for conn in list(broker.connections):
            for session in list(conn.sessions.values()):
                self.channels += 1
                for key, value in session.counters.items():
                    counts[key] += value
                counts["received_confirm"] += session.publish_seq
                self.consumers += len(session.consumers)
                self.publishers += session.counters["publish"] > 0
                self.unacked += len(session.unacked)
                if session.confirming:
                    self.unconfirmed += session.unconfirmed
                self.uncommitted += len(session.tx_publishes)
                self.acks_uncommitted += len(session.tx_acks)

    def total(self, key: str) -> int:
        if key == "delivered":
            return sum(self.total(k) for k in ("deliver", "deliver_no_ack", "get", "get_no_ack"))
        return self.counters.get(key, 0) + self.open_counts.get(key, 0)


class BrokerCollector:
    """A prometheus_client collector that reads the broker's state at scrape time."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.identity = _identity(broker)
        self.build = _build_labels()

    def describe(self) -> list[Metric]:
        return []  # families depend on the state: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        broker = self.broker
        snap = BrokerSnapshot(broker)
        yield from self._info()
        yield from self._global(snap)
        yield from self._totals(snap)
        yield from self._channels(snap)
        yield from self._queues(broker)
        yield from self._process(broker)
        if broker.manager is not None:
            yield from _log_histograms(broker.manager.stats)

    def _info(self) -> Iterator[Metric]:
        build = UnknownMetricFamily(
            "rabbitmq_build_info", "RabbitMQ & Erlang/OTP version info", labels=list(self.build)
        )
        build.add_metric(list(self.build.values()), 1)
        identity = UnknownMetricFamily(
            "rabbitmq_identity_info", "RabbitMQ node & cluster identity info", labels=list(self.identity)
        )
        identity.add_metric(list(self.identity.values()), 1)
        return iter((build, identity))

    def _global(self, snap: BrokerSnapshot) -> Iterator[Metric]:
        for name, help_text, key, by_queue_type in GLOBAL_MESSAGE_COUNTERS:
            labels = ["protocol", "queue_type"] if by_queue_type else ["protocol"]
            family = CounterMetricFamily(f"rabbitmq_global_messages_{name}", help_text, labels=labels)
            family.add_metric([PROTOCOL, QUEUE_TYPE][: len(labels)], snap.total(key))
            yield family
        for reason in DEAD_LETTER_REASONS:
            family = CounterMetricFamily(
                f"rabbitmq_global_messages_dead_lettered_{reason}", DEAD_LETTER_HELP[reason],
                labels=["queue_type", "dead_letter_strategy"],
            )  # fmt: skip
            for strategy, prefix in DEAD_LETTER_STRATEGIES:
                family.add_metric([QUEUE_TYPE, strategy], snap.counters.get(prefix + reason, 0))
            yield family
        yield _gauge("rabbitmq_global_publishers", "Current number of publishers", snap.publishers,
                     protocol=PROTOCOL)  # fmt: skip
        yield _gauge("rabbitmq_global_consumers", "Current number of consumers", snap.consumers,
                     protocol=PROTOCOL)  # fmt: skip

    def _totals(self, snap: BrokerSnapshot) -> Iterator[Metric]:
        queues = sum(len(vhost.queues) for vhost in self.broker.vhosts.values())
        yield _gauge("rabbitmq_connections", "Connections currently open", snap.connections)
        yield _gauge("rabbitmq_channels", "Channels currently open", snap.channels)
        yield _gauge("rabbitmq_consumers", "Consumers currently connected", snap.consumers)
        yield _gauge("rabbitmq_queues", "Queues available", queues)
        for name, help_text, key in LIFECYCLE_COUNTERS:
            yield CounterMetricFamily(name, help_text, value=snap.counters.get(key, 0))

    def _channels(self, snap: BrokerSnapshot) -> Iterator[Metric]:
        for name, help_text, key in CHANNEL_MESSAGE_COUNTERS:
            yield CounterMetricFamily(name, help_text, value=snap.open_counts[key])
        yield _gauge("rabbitmq_channel_consumers", "Consumers on a channel", snap.consumers)
        yield _gauge("rabbitmq_channel_messages_unacked", "Delivered but not yet acknowledged messages",
                     snap.unacked)  # fmt: skip
        yield _gauge("rabbitmq_channel_messages_unconfirmed", "Published but not yet confirmed messages",
                     snap.unconfirmed)  # fmt: skip
        yield _gauge("rabbitmq_channel_messages_uncommitted",
                     "Messages received in a transaction but not yet committed", snap.uncommitted)  # fmt: skip
        yield _gauge("rabbitmq_channel_acks_uncommitted",
                     "Message acknowledgements in a transaction not yet committed",
                     snap.acks_uncommitted)  # fmt: skip

    def _queues(self, broker: Any) -> Iterator[Metric]:
        """One sample per queue in each family; samples are appended directly (a scrape of
        thousands of queues is mostly this loop), sharing one label dict per queue."""
        families = [_FAMILY_TYPES[kind](name, help_text) for name, kind, help_text in QUEUE_FAMILIES]
        (ready, ready_bytes, unacked, messages, consumers, published, retry, segments,
         segment_bytes, end_offset, lag) = (family.samples.append for family in families)  # fmt: skip
        for vhost in list(broker.vhosts.values()):
            for queue in list(vhost.queues.values()):
                if queue.deleted:
                    continue
                labels = {"vhost": vhost.name, "queue": queue.name}
                waiting = queue.retry_waiting
                unacked_count = max(0, queue.unacked_count - waiting)
                ready(Sample("rabbitmq_queue_messages_ready", labels, queue.ready, None))
                ready_bytes(Sample("rabbitmq_queue_messages_ready_bytes", labels, queue.ready_bytes, None))
                unacked(Sample("rabbitmq_queue_messages_unacked", labels, unacked_count, None))
                messages(Sample("rabbitmq_queue_messages", labels, queue.ready + unacked_count, None))
                consumers(Sample("rabbitmq_queue_consumers", labels, len(queue.consumers), None))
                published(Sample("rabbitmq_queue_messages_published_total",
                                 {"queue_vhost": vhost.name, "queue": queue.name},
                                 queue.counters["published"], None))  # fmt: skip
                retry(Sample("warrenmq_queue_messages_retry_waiting", labels, waiting, None))
                log = queue.log
                if log.closed:
                    continue
                leo = log.log_end_offset
                segments(Sample("warrenmq_queue_segments", labels, len(log.segments), None))
                segment_bytes(Sample("warrenmq_queue_segment_bytes", labels, log.size_bytes, None))
                end_offset(Sample("warrenmq_queue_log_end_offset", labels, leo, None))
                lag(Sample("warrenmq_queue_consumer_offset_lag", labels, consumer_offset_lag(queue, leo), None))
        return iter(families)

    def _process(self, broker: Any) -> Iterator[Metric]:
        """The few process figures RabbitMQ's overview dashboard shows, where Linux tells them cheaply."""
        with contextlib.suppress(OSError):
            yield _gauge("rabbitmq_process_open_fds", "Open file descriptors",
                         len(os.listdir("/proc/self/fd")))  # fmt: skip
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_limit != resource.RLIM_INFINITY:
            yield _gauge("rabbitmq_process_max_fds", "Open file descriptors limit", soft_limit)
        with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as f:
            rss_pages = int(f.read().split()[1])
            yield _gauge("rabbitmq_process_resident_memory_bytes", "Memory used in bytes",
                         rss_pages * os.sysconf("SC_PAGE_SIZE"))  # fmt: skip
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(broker.config.data_dir).free
            yield _gauge("rabbitmq_disk_space_available_bytes", "Disk space available in bytes", free)


def consumer_offset_lag(queue: Any, log_end_offset: int) -> int:
    """Messages between the first unsettled one and the log end; a partitioned queue sums its partitions'."""
    if isinstance(queue, PartitionedQueue):
        return sum(consumer_offset_lag(m, m.log.log_end_offset) for m in queue.members)
    return max(0, log_end_offset - first_unsettled(queue, log_end_offset))


def first_unsettled(queue: Any, log_end_offset: int) -> int:
    """The queue's lowest offset not yet settled (the consumer offset, in Kafka's terms).

    The cursor waits below offsets settled out of order (expired, dropped)
    until a delivery walks past them; this looks past them without moving it.
    """
    first = queue.cursor
    skipped = queue.skipped
    while first < log_end_offset and first in skipped:
        first += 1
    if queue.outstanding:
        first = min(first, min(queue.outstanding))
    return first


def _gauge(name: str, help_text: str, value: float, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _histogram(name: str, help_text: str, hist: Histogram) -> HistogramMetricFamily:
    buckets = [(floatToGoString(bound), count) for bound, count in hist.cumulative()]
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=hist.sum)


def _log_histograms(stats: Any) -> Iterator[Metric]:
    yield _histogram("warrenmq_log_append_seconds",
                     "Time one log append (a batch: one write) took", stats.append_seconds)  # fmt: skip
    yield _histogram("warrenmq_log_append_records", "Records in one log append (a batch)",
                     stats.append_records)  # fmt: skip
    yield _histogram("warrenmq_log_fsync_seconds", "Time the fsyncs of one group-commit round took",
                     stats.fsync_seconds)  # fmt: skip
    yield _histogram("warrenmq_log_commit_round_logs", "Logs one group-commit round fsynced",
                     stats.round_logs)  # fmt: skip
    yield _histogram("warrenmq_log_commit_round_records",
                     "Records one group-commit round made durable", stats.round_records)  # fmt: skip


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _build_labels() -> dict[str, str]:
    """rabbitmq_build_info's labels, with what stands in for RabbitMQ and Erlang here."""
    version = _version("warrenmq")
    return {
        "rabbitmq_version": version,
        "prometheus_plugin_version": version,
        "prometheus_client_version": _version("prometheus-client"),
        "erlang_version": f"python-{platform.python_version()}",
    }


def _identity(broker: Any) -> dict[str, str]:
    """rabbitmq_identity_info's labels; dashboards join every panel on them.

    A single node is its own cluster, named after the node as RabbitMQ names a
    new cluster; the permanent id is derived from the node and its data
    directory, so it stays the same across restarts.
    """
    node = getattr(broker, "node", None) or f"warrenmq@{socket.gethostname()}"
    data_dir = os.path.abspath(broker.config.data_dir)
    digest = hashlib.sha256(f"{node}\x00{data_dir}".encode("utf-8", "surrogateescape")).digest()
    permanent_id = "warrenmq-cluster-id-" + base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
    return {"rabbitmq_node": node, "rabbitmq_cluster": node, "rabbitmq_cluster_permanent_id": permanent_id}


def render_text(families: Iterable[Metric]) -> bytes:
    """Families in the Prometheus text format 0.0.4, as prometheus_client's generate_latest writes it.

    Faster for many queues: a label set that several families share (one
    queue's) is escaped once per scrape, not once per sample. The families
    are all kept until the end, so the ids that key that cache stay theirs.
    """
    families = list(families)
    rendered: dict[int, str] = {}
    out = []
    for family in families:
        name = family.name + "_total" if family.type == "counter" else family.name
        kind = "untyped" if family.type == "unknown" else family.type
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        for sample in family.samples:
            labels = sample.labels
            text = rendered.get(id(labels)) if labels else ""
            if text is None:
                text = rendered[id(labels)] = "{" + ",".join(
                    f'{key}="{_escape_label_value(value)}"' for key, value in sorted(labels.items())
                ) + "}"
            value = sample.value
            number = str(value) if type(value) is int else floatToGoString(value)
            out.append(f"{sample.name}{text} {number}\n")
    return "".join(out).encode("utf-8")


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def build_app(broker: Any) -> web.Application:
    """The Prometheus endpoint: the same exposition on each of RabbitMQ's three paths."""
    collector = BrokerCollector(broker)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render_text(collector.collect()), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    for path in PATHS:
        app.router.add_get(path, metrics)
    return app
