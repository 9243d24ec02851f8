"""Record the metric names, types, label names and HELP texts a reference RabbitMQ exposes.

Usage (against a RabbitMQ 3.10 with the rabbitmq_prometheus plugin):

    .venv/bin/python tests/metrics/record_rabbitmq_metrics.py \
        [--amqp amqp://guest:guest@127.0.0.1:5673/] [--metrics http://127.0.0.1:15693] \
        [--out tests/metrics/rabbitmq_3_10_metrics.txt]

Per-object families (per queue, channel, connection) carry labels only while
such objects exist, so the script holds a connection, a channel, an exclusive
queue and a consumer open while it scrapes `/metrics` and
`/metrics/per-object`; the queue goes away with the connection. The output
is a tab-separated file, one line per (endpoint, family, label set):
endpoint, name as exposed, type, sorted label names (`-` for none, `?` when
the family had no sample), HELP text.
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path

import pika

RECORD_QUEUE = "metrics-record.probe"
ENDPOINTS = ("/metrics", "/metrics/per-object")
DEFAULT_OUT = Path(__file__).with_name("rabbitmq_3_10_metrics.txt")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8")


def families(text: str) -> dict[str, tuple[str, str, set[str]]]:
    """name -> (type, help, label-name sets) from the text exposition, names as RabbitMQ writes them.

    The family's samples are the lines whose name is the family's name, or
    the family's name plus a histogram or summary suffix.
    """
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            labels.setdefault(name, set())
            current = name
        elif line.startswith("# HELP "):
            parts = line.split(" ", 3)
            helps[parts[2]] = parts[3] if len(parts) > 3 else ""
        elif line and not line.startswith("#") and current is not None:
            sample = line.split("{", 1)[0].split(" ", 1)[0]
            if sample not in (current, current + "_count", current + "_sum", current + "_bucket"):
                continue
            names = []
            if "{" in line:
                body = line.split("{", 1)[1].rsplit("}", 1)[0]
                names = [pair.split("=", 1)[0] for pair in _split_labels(body)]
            names = [n for n in names if n not in ("le", "quantile")]
            labels[current].add(",".join(sorted(names)) or "-")
    return {name: (types[name], helps.get(name, ""), labels[name]) for name in types}


def _split_labels(body: str) -> list[str]:
    """Split `a="x",b="y,z"` at the commas outside quotes."""
    out, current, quoted, escaped = [], "", False, False
    for ch in body:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            current += ch
            escaped = True
        elif ch == '"':
            current += ch
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append(current)
            current = ""
        else:
            current += ch
    if current:
        out.append(current)
    return out


def record(amqp_url: str, metrics_base: str) -> list[str]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(RECORD_QUEUE, exclusive=True)
        channel.basic_publish("", RECORD_QUEUE, b"probe")
        channel.basic_publish("", RECORD_QUEUE, b"probe")
        channel.basic_consume(RECORD_QUEUE, lambda *args: None, auto_ack=False)
        connection.process_data_events(time_limit=0.5)
        # RabbitMQ emits per-object statistics every few seconds: wait for the queue.
        deadline = time.monotonic() + 60
        while RECORD_QUEUE not in scrape(metrics_base + "/metrics/per-object"):
            if time.monotonic() > deadline:
                raise RuntimeError("the probe queue never showed in /metrics/per-object")
            connection.process_data_events(time_limit=1.0)
        connection.process_data_events(time_limit=6.0)  # one more emission for channels
        texts = {endpoint: scrape(metrics_base + endpoint) for endpoint in ENDPOINTS}
        channel.queue_delete(RECORD_QUEUE)
    finally:
        connection.close()
    lines = []
    for endpoint, text in texts.items():
        for name, (kind, help_text, label_sets) in sorted(families(text).items()):
            for label_set in sorted(label_sets) or ["?"]:
                lines.append("\t".join((endpoint, name, kind, label_set, help_text)))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5673/")
    parser.add_argument("--metrics", default="http://127.0.0.1:15693")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    build = scrape(args.metrics + "/metrics")
    version = next((line for line in build.splitlines() if line.startswith("rabbitmq_build_info")), "")
    lines = record(args.amqp, args.metrics)
    header = [
        "# Metric families of a reference RabbitMQ's Prometheus endpoints, recorded by",
        "# tests/metrics/record_rabbitmq_metrics.py. Columns (tab-separated): endpoint, name,",
        "# type, label names (- none, ? no sample), HELP.",
        f"# {version}",
    ]
    Path(args.out).write_text("\n".join(header + lines) + "\n")
    print(f"{len(lines)} lines written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
