"""Our text writer says what prometheus_client's generate_latest says, for every kind of family."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from warrenmq.broker.metrics import render_text

ODD_NAMES = ['plain', 'with "quotes"', "back\\slash", "new\nline", "ünïcödé ✓", ""]


def families() -> list:
    shared = {name: {"vhost": "/", "queue": name} for name in ODD_NAMES}
    gauge = GaugeMetricFamily("example_ready", "Ready \\ messages\nper queue", labels=["vhost", "queue"])
    counter = CounterMetricFamily("example_published", "Published", labels=["vhost", "queue"])
    for i, name in enumerate(ODD_NAMES):
        gauge.add_metric(["/", name], i)
        counter.add_metric(["/", name], 10 * i)
    # Two families sharing one label dict per queue, as the broker's per-queue families do.
    shared_a = GaugeMetricFamily("example_a", "A")
    shared_b = GaugeMetricFamily("example_b", "B")
    for i, name in enumerate(ODD_NAMES):
        shared_a.samples.append(Sample("example_a", shared[name], i, None))
        shared_b.samples.append(Sample("example_b", shared[name], -i, None))
    plain = CounterMetricFamily("example_plain", "No labels", value=7)
    info = UnknownMetricFamily("example_info", "Info", labels=["version"])
    info.add_metric(["1.2.3"], 1)
    hist = HistogramMetricFamily(
        "example_seconds", "Latency", buckets=[("0.001", 3), ("0.1", 5), ("+Inf", 6)], sum_value=0.25
    )
    floats = GaugeMetricFamily("example_float", "Floats", labels=["kind"])
    for kind, value in (("half", 0.5), ("big", 8.5363216384e10), ("inf", float("inf"))):
        floats.add_metric([kind], value)
    return [gauge, counter, shared_a, shared_b, plain, info, hist, floats]


class _Fixed:
    def collect(self):
        return families()


def parsed(text: str) -> set:
    return {
        (f.name, f.type, f.documentation,
         tuple(sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples)))
        for f in text_string_to_metric_families(text)
    }  # fmt: skip


def test_render_text_parses_as_generate_latest_does() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed())
    ours = render_text(families()).decode("utf-8")
    theirs = generate_latest(registry).decode("utf-8")
    assert parsed(ours) == parsed(theirs)
    assert "# TYPE example_info untyped" in ours
    assert "# TYPE example_published_total counter" in ours


def test_label_values_round_trip() -> None:
    text = render_text(families()).decode("utf-8")
    queues = {
        s.labels["queue"]
        for f in text_string_to_metric_families(text) if f.name == "example_a"
        for s in f.samples
    }  # fmt: skip
    assert queues == set(ODD_NAMES)
