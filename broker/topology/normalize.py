"""The YAML format -> entities in definitions form (and the shorthand entries, expanded later).

This step maps friendly keys to RabbitMQ's fields and arguments
(`ttl: 30s` -> `arguments["x-message-ttl"] = 30000`), fills the defaults, and
reports what only this format can get wrong: unknown keys, bad units, a
friendly key that contradicts `arguments`. The values themselves (types,
ranges, references) are checked later, on the definitions form, by
`validate`, so both input formats get the same checks.
"""

from __future__ import annotations

from typing import Any

from warrenmq.broker.users import HASHES, hash_password

from .entries import Entry
from .keys import (
    DEFAULT_HASHING,
    EXCHANGE_ARGUMENTS,
    QUEUE_ARGUMENTS,
    QUEUE_TYPES,
    RETRY_MODES,
    SECTION_KEYS,
    TOP_LEVEL,
)
from .reader import EXCLUSIVE_QUEUE, Reader, type_name
from .retry import RetryLadder
from .source import KeyPath
from .superstream import SuperStream, read_super_stream
from .units import parse_duration


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type, as the broker compares arguments (1 is not True)."""
    return type(a) is type(b) and a == b


def split_tags(value: Any) -> Any:
    """Tags as a list; RabbitMQ's comma-separated string is accepted too."""
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


class FriendlyReader(Reader):
    """Reads one document of the YAML format."""

    def __init__(self, file: str, lines: Any = None) -> None:
        super().__init__(file, lines)
        self.entries: list[Entry] = []
        self.retries: list[RetryLadder] = []
        self.super_streams: list[SuperStream] = []
        self.passwords: dict[str, str] = {}

    def read(self, doc: Any) -> None:
        if doc is None:
            return
        if not isinstance(doc, dict):
            self.problem((), f"a topology must be a mapping of sections, not {type_name(doc)}")
            return
        self.unknown_keys(doc, (), TOP_LEVEL)
        for section, read_item in (
            ("vhosts", self._vhost), ("users", self._user), ("permissions", self._permission),
            ("exchanges", self._exchange), ("queues", self._queue), ("bindings", self._binding),
            ("retry", self._retry), ("super-streams", self._super_stream),
        ):  # fmt: skip
            for path, item in self.items(doc, section):
                self.unknown_keys(item, path, SECTION_KEYS[section])
                read_item(path, item)

    # ------------------------------------------------------------ helpers
    def _entry(self, kind: str, path: KeyPath, body: dict[str, Any],
               renamed: dict[str, str] | None = None) -> Entry:  # fmt: skip
        """An entry whose fields point at the keys written (renamed: definitions field -> key)."""
        path_text, line = self.where(path)
        entry = Entry(kind, body, path_text, line)
        renamed = renamed or {}
        for field_name in body:
            entry.fields[field_name] = self.where((*path, renamed.get(field_name, field_name)))
        for field_name, key in renamed.items():
            entry.fields[field_name] = self.where((*path, key))
        self.entries.append(entry)
        return entry

    def _arguments(self, entry: Entry, path: KeyPath, item: dict[str, Any]) -> dict[str, Any]:
        """The item's `arguments`, as-is, each one's field pointing at its key."""
        arguments = item.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            self.problem((*path, "arguments"), f"must be a mapping, not {type_name(arguments)}")
            return {}
        for key in arguments:
            entry.fields[f"arguments.{key}"] = self.where((*path, "arguments", key))
        return dict(arguments)

    def _friendly_argument(self, entry: Entry, path: KeyPath, key: str, argument: str,
                           value: Any, arguments: dict[str, Any]) -> None:  # fmt: skip
        """Set arguments[argument] from a friendly key, unless `arguments` says otherwise."""
        if argument in arguments and not same_value(arguments[argument], value):
            self.problem((*path, key), f"{value!r} conflicts with arguments.{argument}: "
                                       f"{arguments[argument]!r}")  # fmt: skip
            return
        arguments[argument] = value
        entry.fields[f"arguments.{argument}"] = self.where((*path, key))

    # ------------------------------------------------------------ sections
    def _vhost(self, path: KeyPath, item: dict[str, Any]) -> None:
        body = {"name": item.get("name"), "description": item.get("description", ""),
                "tags": split_tags(item.get("tags", []))}  # fmt: skip
        self._entry("vhost", path, _present(body, item, "name"))

    def _user(self, path: KeyPath, item: dict[str, Any]) -> None:
        algorithm = item.get("hashing_algorithm", DEFAULT_HASHING)
        password_hash = item.get("password_hash")
        if "password" in item and "password_hash" in item:
            self.problem((*path, "password"), "give either password or password_hash, not both")
        elif "password" in item:
            password = item["password"]
            if not isinstance(password, str):
                self.problem((*path, "password"), f"must be a string, not {type_name(password)}")
            elif algorithm in HASHES:
                password_hash = hash_password(password, algorithm)
                if isinstance(item.get("name"), str):
                    self.passwords[item["name"]] = password
        elif "password_hash" not in item:
            self.problem((*path, "password"), "one of password or password_hash is required")
        body = {"name": item.get("name"), "password_hash": password_hash or "",
                "hashing_algorithm": algorithm, "tags": split_tags(item.get("tags", [])),
                "limits": item.get("limits", {})}  # fmt: skip
        self._entry("user", path, _present(body, item, "name"))

    def _permission(self, path: KeyPath, item: dict[str, Any]) -> None:
        body = {key: item.get(key) for key in ("user", "vhost", "configure", "write", "read")}
        self._entry("permission", path, _present(body, item, *body))

    def _exchange(self, path: KeyPath, item: dict[str, Any]) -> None:
        body = {"name": item.get("name"), "vhost": item.get("vhost", "/"),
                "type": item.get("type", "direct"), "durable": item.get("durable", True),
                "auto_delete": item.get("auto-delete", False), "internal": item.get("internal", False),
                "arguments": {}}  # fmt: skip
        entry = self._entry(
            "exchange", path, _present(body, item, "name"), {"auto_delete": "auto-delete"}
        )
        arguments = self._arguments(entry, path, item)
        for key, argument in EXCHANGE_ARGUMENTS.items():
            if key in item:
                if key == "delayed-type" and body["type"] != "x-delayed-message":
                    self.problem(
                        (*path, key), "applies only to exchanges of type x-delayed-message"
                    )
                    continue
                self._friendly_argument(entry, path, key, argument, item[key], arguments)
        entry.body["arguments"] = arguments

    def _queue(self, path: KeyPath, item: dict[str, Any]) -> None:
        if item.get("exclusive", False) is not False:
            self.problem((*path, "exclusive"), EXCLUSIVE_QUEUE)
        body = {"name": item.get("name"), "vhost": item.get("vhost", "/"),
                "durable": item.get("durable", True), "auto_delete": item.get("auto-delete", False),
                "arguments": {}}  # fmt: skip
        entry = self._entry(
            "queue", path, _present(body, item, "name"), {"auto_delete": "auto-delete"}
        )
        arguments = self._arguments(entry, path, item)
        queue_type = item.get("type", "classic")
        if queue_type not in QUEUE_TYPES:
            self.problem(
                (*path, "type"), f"must be one of {', '.join(QUEUE_TYPES)}, not {queue_type!r}"
            )
        elif queue_type != "classic":
            self._friendly_argument(entry, path, "type", "x-queue-type", queue_type, arguments)
        elif arguments.get("x-queue-type", "classic") != "classic":
            self.problem((*path, "type"), f"'classic' conflicts with arguments.x-queue-type: "
                                          f"{arguments['x-queue-type']!r}")  # fmt: skip
        for key, (argument, convert) in QUEUE_ARGUMENTS.items():
            if key not in item:
                continue
            value = item[key]
            if convert is not None:
                try:
                    value = convert(value)
                except ValueError as exc:
                    self.problem((*path, key), str(exc))
                    continue
            self._friendly_argument(entry, path, key, argument, value, arguments)
        entry.body["arguments"] = arguments

    def _binding(self, path: KeyPath, item: dict[str, Any]) -> None:
        if "to" in item and "to-exchange" in item:
            self.problem(
                (*path, "to-exchange"), "give either to (a queue) or to-exchange, not both"
            )
        to_exchange = "to-exchange" in item and "to" not in item
        body = {"source": item.get("from"), "vhost": item.get("vhost", "/"),
                "destination": item.get("to-exchange" if to_exchange else "to"),
                "destination_type": "exchange" if to_exchange else "queue",
                "routing_key": item.get("routing-key", ""), "arguments": {}}  # fmt: skip
        if "from" not in item:
            del body["source"]
        if "to" not in item and "to-exchange" not in item:
            del body["destination"]
        entry = self._entry("binding", path, body, {
            "source": "from", "destination": "to-exchange" if to_exchange else "to",
            "routing_key": "routing-key",
        })  # fmt: skip
        body["arguments"] = self._arguments(entry, path, item)

    def _retry(self, path: KeyPath, item: dict[str, Any]) -> None:
        ok = True
        for key in ("queue", "delays", "then"):
            if key not in item:
                self.problem((*path, key), "required key is missing")
                ok = False
            elif key != "delays" and (not isinstance(item[key], str) or not item[key]):
                self.problem((*path, key), f"must be a queue name, not {item[key]!r}")
                ok = False
        vhost = item.get("vhost", "/")
        if not isinstance(vhost, str) or not vhost:
            self.problem((*path, "vhost"), f"must be a vhost name, not {vhost!r}")
            ok = False
        mode = item.get("mode", "ttl-queues")
        if mode not in RETRY_MODES:
            self.problem((*path, "mode"), f"must be one of {', '.join(RETRY_MODES)}, not {mode!r}")
            ok = False
        delays = self._delays(path, item.get("delays"))
        if delays is None or not ok:
            return
        if item["then"] == item["queue"]:
            self.problem((*path, "then"), "must name another queue than the work queue")
            return
        path_text, line = self.where(path)
        self.retries.append(RetryLadder(
            vhost=vhost, queue=item["queue"], delays=tuple(delays), then=item["then"], mode=mode,
            path=path_text, line=line,
            delay_lines=tuple(self.line((*path, "delays", i)) for i in range(len(delays))),
        ))  # fmt: skip

    def _super_stream(self, path: KeyPath, item: dict[str, Any]) -> None:
        stream = read_super_stream(self, path, item)
        if stream is not None:
            self.super_streams.append(stream)

    def _delays(self, path: KeyPath, value: Any) -> list[int] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            self.problem((*path, "delays"), f"must be a non-empty list of durations, not {value!r}")
            return None
        delays = []
        for i, delay in enumerate(value):
            try:
                delays.append(parse_duration(delay))
            except ValueError as exc:
                self.problem((*path, "delays", i), str(exc))
                return None
        return delays


def _present(body: dict[str, Any], item: dict[str, Any], *required: str) -> dict[str, Any]:
    """Body without the required fields that the item lacks (so validate reports them missing)."""
    return {k: v for k, v in body.items() if k not in required or k in item}
