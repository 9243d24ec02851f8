"""docs/topology.schema.json describes exactly what the loader accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from warrenmq.broker.server import OVERFLOW_MODES
from warrenmq.broker.topology import TopologyError, load
from warrenmq.broker.topology.arguments import EXCHANGE_TYPES_ACCEPTED
from warrenmq.broker.topology.keys import QUEUE_TYPES, RETRY_MODES, SECTION_KEYS, TOP_LEVEL
from warrenmq.broker.topology.units import parse_duration, parse_size
from warrenmq.broker.users import HASHES
from warrenmq.exchanges import EXCHANGE_TYPES

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "topology.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
ITEM = {"vhosts": "vhost", "users": "user", "permissions": "permission", "exchanges": "exchange",
        "queues": "queue", "bindings": "binding", "retry": "retry",
        "super-streams": "super-stream"}  # fmt: skip


def _item_schema(section: str) -> dict[str, Any]:
    ref = SCHEMA["properties"][section]["items"]["$ref"]
    assert ref == f"#/$defs/{ITEM[section]}"
    return SCHEMA["$defs"][ITEM[section]]


def test_draft_2020_12_and_closed() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["additionalProperties"] is False
    assert list(SCHEMA["properties"]) == list(TOP_LEVEL)


@pytest.mark.parametrize("section", TOP_LEVEL)
def test_each_section_has_exactly_the_loaders_keys(section: str) -> None:
    item = _item_schema(section)
    assert item["additionalProperties"] is False
    assert list(item["properties"]) == list(SECTION_KEYS[section])
    for key, spec in item["properties"].items():
        assert spec.get("description"), f"{section}.{key} has no description"


MINIMAL: dict[str, tuple[dict[str, Any], str]] = {
    "vhosts": ({"name": "v"}, ""),
    "users": ({"name": "u", "password": "p"}, ""),
    "permissions": ({"user": "u", "vhost": "/", "configure": "", "write": "", "read": ""},
                    "users: [{name: u, password: p}]\n"),
    "exchanges": ({"name": "x"}, ""),
    "queues": ({"name": "q"}, ""),
    "bindings": ({"from": "amq.direct", "to": "q"}, "queues: [{name: q}]\n"),
    "retry": ({"queue": "w", "delays": ["1s"], "then": "p"}, ""),
    "super-streams": ({"name": "s", "partitions": 2}, ""),
}  # fmt: skip


@pytest.mark.parametrize("section", TOP_LEVEL)
def test_required_keys_are_what_the_loader_requires(section: str) -> None:
    item, context = MINIMAL[section]
    load("t.yaml", text=context + f"{section}: [{json.dumps(item)}]\n")
    schema = _item_schema(section)
    required = set(schema.get("required", []))
    for alternatives in schema.get("oneOf", []):
        required |= set(alternatives["required"])
    assert required <= set(item) | {"password_hash", "to-exchange", "routing-keys"}
    for key in item:
        text = context + f"{section}: [{json.dumps({k: v for k, v in item.items() if k != key})}]\n"
        try:
            load("t.yaml", text=text)
            refused = False
        except TopologyError as exc:
            refused = any(p.path == f"{section}[0].{key}" for p in exc.problems)
        assert refused == (key in required), key


def _enum(section: str, key: str) -> list[str]:
    return _item_schema(section)["properties"][key]["enum"]


def test_choices_match_the_broker() -> None:
    assert sorted(_enum("exchanges", "type")) == list(EXCHANGE_TYPES_ACCEPTED)
    assert sorted(_enum("exchanges", "delayed-type")) == sorted(EXCHANGE_TYPES)
    assert _enum("queues", "type") == list(QUEUE_TYPES)
    assert _enum("queues", "overflow") == list(OVERFLOW_MODES)
    assert _enum("retry", "mode") == list(RETRY_MODES)
    assert sorted(_enum("users", "hashing_algorithm")) == sorted(HASHES)


def _pattern(name: str) -> re.Pattern[str]:
    (as_string,) = [s for s in SCHEMA["$defs"][name]["oneOf"] if s["type"] == "string"]
    return re.compile(as_string["pattern"])


@pytest.mark.parametrize("text", ["500ms", "30s", "10m", "2h", "7d", "1.5s", "1500", " 2 m "])
def test_duration_pattern_takes_what_the_loader_takes(text: str) -> None:
    parse_duration(text)
    assert _pattern("duration").search(text)


@pytest.mark.parametrize("text", ["soon", "1w", "10 min", "-1s"])
def test_duration_pattern_refuses_what_the_loader_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
    assert not _pattern("duration").search(text)


@pytest.mark.parametrize("text", ["1GiB", "1 GiB", "512MB", "1.5KiB", "100"])
def test_size_pattern_takes_what_the_loader_takes(text: str) -> None:
    parse_size(text)
    assert _pattern("size").search(text)


@pytest.mark.parametrize("text", ["1G", "lots", "1kb", "1 B"])
def test_size_pattern_refuses_what_the_loader_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
    assert not _pattern("size").search(text)
