"""A RabbitMQ definitions document -> entities, each field located when the text is known.

The document is taken as RabbitMQ and our `/api/definitions` write it,
with the import's defaults for fields left out. What is not part of a
topology (versions, policies, parameters, vhost metadata) is accepted and
left out; any other key is a problem, so a misspelt field is not ignored.
"""

from __future__ import annotations

import copy
from typing import Any

from warrenmq.broker.users import HASHES, hash_password

from .entries import KIND_OF_SECTION, Entry
from .keys import DEFAULT_HASHING, DEFINITIONS_KEYS, DEFINITIONS_TOP_LEVEL
from .normalize import split_tags
from .reader import EXCLUSIVE_QUEUE, Reader, type_name
from .source import KeyPath

DEFAULTS: dict[str, dict[str, Any]] = {
    "vhosts": {"description": "", "tags": []},
    "users": {"hashing_algorithm": DEFAULT_HASHING, "tags": [], "limits": {}},
    "permissions": {},
    "exchanges": {"vhost": "/", "type": "direct", "durable": True, "auto_delete": False,
                  "internal": False, "arguments": {}},
    "queues": {"vhost": "/", "durable": True, "auto_delete": False, "arguments": {}},
    "bindings": {"vhost": "/", "destination_type": "queue", "routing_key": "", "arguments": {}},
}  # fmt: skip
FIELD_ORDER: dict[str, tuple[str, ...]] = {
    "vhosts": ("name", "description", "tags"),
    "users": ("name", "password_hash", "hashing_algorithm", "tags", "limits"),
    "permissions": ("user", "vhost", "configure", "write", "read"),
    "exchanges": ("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments"),
    "queues": ("name", "vhost", "durable", "auto_delete", "arguments"),
    "bindings": ("source", "vhost", "destination", "destination_type", "routing_key", "arguments"),
}


class DefinitionsReader(Reader):
    """Reads one definitions document (dict) into entries."""

    def __init__(self, file: str, lines: Any = None) -> None:
        super().__init__(file, lines)
        self.entries: list[Entry] = []
        self.passwords: dict[str, str] = {}

    def read(self, doc: Any) -> None:
        if not isinstance(doc, dict):
            self.problem((), f"a definitions document must be an object, not {type_name(doc)}")
            return
        self.unknown_keys(doc, (), DEFINITIONS_TOP_LEVEL)
        for section, order in FIELD_ORDER.items():
            for path, item in self.items(doc, section):
                self.unknown_keys(item, path, DEFINITIONS_KEYS[section])
                self._item(section, path, item, order)

    def _item(
        self, section: str, path: KeyPath, item: dict[str, Any], order: tuple[str, ...]
    ) -> None:
        item = copy.deepcopy(
            item
        )  # the topology must not share (and later change) the caller's dicts
        if section == "vhosts":
            metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
            for key in ("description", "tags"):
                if key not in item and key in metadata:
                    item[key] = metadata[key]
        if section in ("vhosts", "users") and "tags" in item:
            item["tags"] = split_tags(item["tags"])
        if section == "users" and "password" in item and "password_hash" not in item:
            algorithm = item.get("hashing_algorithm", DEFAULT_HASHING)
            if isinstance(item["password"], str) and algorithm in HASHES:
                item["password_hash"] = hash_password(item["password"], algorithm)
                if isinstance(item.get("name"), str):
                    self.passwords[item["name"]] = item["password"]
        if section == "queues" and item.get("exclusive", False) is not False:
            self.problem((*path, "exclusive"), EXCLUSIVE_QUEUE)
        defaults = DEFAULTS[section]
        body = {
            key: item[key] if key in item else defaults[key]
            for key in order
            if key in item or key in defaults
        }
        path_text, line = self.where(path)
        entry = Entry(KIND_OF_SECTION[section], body, path_text, line)
        for key in order:
            entry.fields[key] = self.where((*path, key))
        arguments = item.get("arguments")
        if isinstance(arguments, dict):
            for key in arguments:
                entry.fields[f"arguments.{key}"] = self.where((*path, "arguments", key))
        self.entries.append(entry)
