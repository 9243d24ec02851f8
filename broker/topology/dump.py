"""A definitions document -> the canonical YAML of the format (docs/topology.md).

Canonical: sections and keys in a fixed order, entities sorted, defaults
left out, friendly keys wherever they say the same as the argument
(`ttl: 1m` for `x-message-ttl: 60000`), durations and sizes in the largest
unit that divides them evenly. Loading the output gives back the same
definitions, so `export` then `apply` changes nothing.

A complete super stream (its exchange, partitions and bindings exactly as
the `super-streams` entry expands) is written back as that entry; anything
less stays plain entities. Retry ladders come out expanded.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .entries import sort_key
from .keys import DEFAULT_HASHING, EXCHANGE_ARGUMENTS, QUEUE_ARGUMENTS
from .superstream import FRIENDLY_ARGUMENTS, SuperStream, split_super_streams
from .units import format_duration, format_size

SECTIONS = ("vhosts", "users", "permissions", "exchanges", "queues", "bindings")
KIND = {"vhosts": "vhost", "users": "user", "permissions": "permission", "exchanges": "exchange",
        "queues": "queue", "bindings": "binding"}  # fmt: skip
DURATION_ARGUMENTS = ("x-message-ttl", "x-expires")
SIZE_ARGUMENTS = ("x-max-length-bytes",)


class _Dumper(yaml.SafeDumper):
    """Block style, and list items indented under their key (as people write them)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Double quotes for line breaks PyYAML would fold away in other styles (NEL, LS, PS, CR)."""
    if any(c in value for c in "\x85\u2028\u2029\r"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _vhost(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": body["name"]}
    if body.get("description"):
        out["description"] = body["description"]
    if body.get("tags"):
        out["tags"] = list(body["tags"])
    return out


def _user(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": body["name"], "password_hash": body.get("password_hash", "")}
    if body.get("hashing_algorithm", DEFAULT_HASHING) != DEFAULT_HASHING:
        out["hashing_algorithm"] = body["hashing_algorithm"]
    if body.get("tags"):
        out["tags"] = list(body["tags"])
    if body.get("limits"):
        out["limits"] = dict(sorted(body["limits"].items()))
    return out


def _permission(body: dict[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in ("user", "vhost", "configure", "write", "read")}


def _common(body: dict[str, Any], out: dict[str, Any]) -> None:
    if body.get("durable", True) is not True:
        out["durable"] = body["durable"]
    if body.get("auto_delete", False) is not False:
        out["auto-delete"] = body["auto_delete"]


def _exchange(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": body["name"]}
    if body.get("vhost", "/") != "/":
        out["vhost"] = body["vhost"]
    type_name = body.get("type", "direct")
    if type_name != "direct":
        out["type"] = type_name
    _common(body, out)
    if body.get("internal", False) is not False:
        out["internal"] = body["internal"]
    arguments = dict(body.get("arguments") or {})
    for key, argument in EXCHANGE_ARGUMENTS.items():
        if argument in arguments and (key != "delayed-type" or type_name == "x-delayed-message"):
            out[key] = arguments.pop(argument)
    if arguments:
        out["arguments"] = dict(sorted(arguments.items()))
    return out


def _queue(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": body["name"]}
    if body.get("vhost", "/") != "/":
        out["vhost"] = body["vhost"]
    arguments = dict(body.get("arguments") or {})
    if arguments.get("x-queue-type") in ("quorum", "stream"):
        out["type"] = arguments.pop("x-queue-type")
    _common(body, out)
    for key, (argument, _) in QUEUE_ARGUMENTS.items():
        if argument not in arguments:
            continue
        value = arguments[argument]
        if argument in DURATION_ARGUMENTS or argument in SIZE_ARGUMENTS:
            if not _whole(value):
                continue  # not what the friendly key takes: left in arguments, as-is
            value = format_duration(value) if argument in DURATION_ARGUMENTS else format_size(value)
        out[key] = value
        del arguments[argument]
    if arguments:
        out["arguments"] = dict(sorted(arguments.items()))
    return out


def _binding(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body.get("vhost", "/") != "/":
        out["vhost"] = body["vhost"]
    out["from"] = body["source"]
    to = "to-exchange" if body.get("destination_type", "queue") == "exchange" else "to"
    out[to] = body["destination"]
    if body.get("routing_key", ""):
        out["routing-key"] = body["routing_key"]
    if body.get("arguments"):
        out["arguments"] = dict(sorted(body["arguments"].items()))
    return out


def _super_stream(stream: SuperStream) -> dict[str, Any]:
    out: dict[str, Any] = {"name": stream.name}
    if stream.vhost != "/":
        out["vhost"] = stream.vhost
    if stream.numbered:
        out["partitions"] = len(stream.routing_keys)
    else:
        out["routing-keys"] = list(stream.routing_keys)
    arguments = dict(stream.arguments)
    for key, (argument, _) in FRIENDLY_ARGUMENTS.items():
        if argument not in arguments:
            continue
        if argument == "x-max-age":  # checked already: written as RabbitMQ takes it
            out[key] = arguments.pop(argument)
        elif _whole(arguments[argument]):  # a size; anything else is left in arguments, as-is
            out[key] = format_size(arguments.pop(argument))
    if arguments:
        out["arguments"] = dict(sorted(arguments.items()))
    return out


WRITERS = {"vhosts": _vhost, "users": _user, "permissions": _permission, "exchanges": _exchange,
           "queues": _queue, "bindings": _binding}  # fmt: skip


def to_friendly(definitions: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The YAML format's document (plain data) of a valid definitions document."""
    streams, definitions = split_super_streams(definitions)
    doc: dict[str, list[dict[str, Any]]] = {}
    for section in SECTIONS:
        items = sorted(
            definitions.get(section) or [], key=lambda b, s=section: sort_key(KIND[s], b)
        )
        written = [WRITERS[section](item) for item in items]
        unique = list({json.dumps(w, sort_keys=True, default=str): w for w in written}.values())
        if unique:
            doc[section] = unique  # an entity listed twice alike is one entity
    if streams:
        doc["super-streams"] = [_super_stream(stream) for stream in streams]
    return doc


def dump_yaml(definitions: dict[str, Any]) -> str:
    """The canonical YAML of a (valid) definitions document; see the module docstring."""
    doc = to_friendly(definitions)
    if not doc:
        return "{}\n"
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)  # fmt: skip
