"""The YAML topology the example scripts share: read it, declare it, delete it.

A topology file lists exchanges (name, type, durable, arguments), queues
(name, durable, arguments) and bindings (exchange, queue, routing_key,
arguments); `{prefix}` in it is replaced so that runs do not clash.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def read(path: Path, prefix: str) -> dict:
    return yaml.safe_load(path.read_text().replace("{prefix}", prefix))


def declare(ch, topology: dict) -> None:
    for ex in topology["exchanges"]:
        ch.exchange_declare(
            ex["name"], ex["type"], durable=ex.get("durable", False), arguments=ex.get("arguments")
        )
    for q in topology["queues"]:
        ch.queue_declare(q["name"], durable=q.get("durable", False), arguments=q.get("arguments"))
    for b in topology["bindings"]:
        ch.queue_bind(b["queue"], b["exchange"], b.get("routing_key"), arguments=b.get("arguments"))


def delete(ch, topology: dict) -> None:
    for q in topology["queues"]:
        ch.queue_delete(q["name"])
    for ex in topology["exchanges"]:
        ch.exchange_delete(ex["name"])
