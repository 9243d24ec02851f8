"""The `super-streams` shorthand: RabbitMQ's partitioned streams, expanded into plain entities.

A super stream NAME is what `rabbitmq-streams add_super_stream` makes: a
durable direct exchange NAME with `x-super-stream: true`, one durable
stream queue per partition, `NAME-KEY`, and a binding from NAME to each
with the partition's routing key KEY and `x-stream-partition-order: i`.
`partitions: N` means the keys `0` .. `N-1`. Stream clients read the
partitions back from those bindings, in that order, so the shape must be
exactly this one.

A definitions document has no super streams, only their entities;
`split_super_streams` finds the complete ones again, so `dump_yaml` can
write them back as entries that expand to exactly those entities.
Expanded entities point at the super-stream entry, as retry ladders do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from warrenmq.amqp import ChannelError
from warrenmq.broker.stream_declare import check_stream_declare
from warrenmq.broker.stream_declare import parse_max_age as max_age_milliseconds

from .entries import Entry, binding_identity, describe, differences, identity
from .problems import Problem
from .reader import Reader, type_name
from .source import KeyPath
from .units import parse_size

MAX_PARTITIONS = 1024
MAX_NAME_BYTES = 255  # an AMQP short string: the longest queue name a client can declare
SUPER_STREAM_ARGUMENT = "x-super-stream"
ORDER_ARGUMENT = "x-stream-partition-order"
QUEUE_TYPE_ARGUMENT = "x-queue-type"
Located = tuple[str, int | None]
Expanded = tuple[str, dict[str, Any], dict[str, str]]

# Definitions fields left out of a document take these (as an import does).
DEFAULTS: dict[str, dict[str, Any]] = {
    "exchange": {"vhost": "/", "type": "direct", "durable": True, "auto_delete": False,
                 "internal": False, "arguments": {}},
    "queue": {"vhost": "/", "durable": True, "auto_delete": False, "arguments": {}},
    "binding": {"vhost": "/", "destination_type": "queue", "routing_key": "", "arguments": {}},
}  # fmt: skip


def parse_max_age(value: Any) -> str:
    """An `x-max-age` as RabbitMQ takes it (`7D`, `12h`): checked, and kept as the string it is."""
    if isinstance(value, str) and max_age_milliseconds(value) is not None:
        return value
    raise ValueError(
        "must be an age such as 7D, 12h or 30m: digits and one unit of Y, M, D, h, m, s "
        f"(M is months, m minutes), not {value!r}"
    )


# Friendly key -> (stream argument, converter): what every partition gets.
FRIENDLY_ARGUMENTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "max-age": ("x-max-age", parse_max_age),
    "max-length-bytes": ("x-max-length-bytes", parse_size),
    "stream-max-segment-size-bytes": ("x-stream-max-segment-size-bytes", parse_size),
}


@dataclass(frozen=True)
class SuperStream:
    """One super stream: partition i is the stream `NAME-KEY` of the i-th routing key.

    `arguments` are every partition's stream arguments (`x-max-age` ...),
    without `x-queue-type`. `path`/`line` locate the entry in the file;
    `locations` its keys, for problems.
    """

    vhost: str
    name: str
    routing_keys: tuple[str, ...]
    arguments: dict[str, Any] = field(default_factory=dict, hash=False)
    path: str = ""
    line: int | None = None
    # "name", "vhost", "routing-keys", "routing-keys[i]", "arguments.x-max-age" -> (key path, line).
    locations: dict[str, Located] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @property
    def partitions(self) -> tuple[str, ...]:
        """The partition streams, in partition order."""
        return tuple(f"{self.name}-{key}" for key in self.routing_keys)

    @property
    def numbered(self) -> bool:
        """Whether the keys are `0` .. `N-1`, as `partitions: N` gives them."""
        return self.routing_keys == tuple(str(i) for i in range(len(self.routing_keys)))

    def at(self, where: str) -> Located:
        """The key path and line of one part of the entry (the entry's own when not recorded)."""
        return self.locations.get(where, (self.path, self.line))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type, as the broker compares arguments (1 is not True)."""
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------ checks
def super_stream_problems(stream: SuperStream) -> list[tuple[str, str]]:
    """(where, message) for each reason the entities could not be declared, or be this super stream.

    Shared by reading (where is a key of `stream.locations`) and by dumping
    (which writes an entry only when it would read back without problems).
    """
    out: list[tuple[str, str]] = []
    if stream.name.startswith("amq."):
        out.append(("name", f"'{stream.name}' starts with 'amq.', which is reserved for the "
                            "broker's exchanges and queues"))  # fmt: skip
    if len(stream.routing_keys) > MAX_PARTITIONS:
        out.append(("routing-keys", f"has {len(stream.routing_keys)} keys; a super stream has "
                                    f"at most {MAX_PARTITIONS} partitions"))  # fmt: skip
    first: dict[str, int] = {}
    for i, (key, partition) in enumerate(zip(stream.routing_keys, stream.partitions, strict=True)):
        where = f"routing-keys[{i}]"
        if not isinstance(key, str) or not key:
            out.append((where, f"must be a non-empty string, not {key!r}"))
            continue
        size = len(partition.encode("utf-8", "surrogatepass"))
        if key in first:
            out.append((where, f"repeats routing-keys[{first[key]}] ({key!r}): each partition "
                               "needs a key of its own"))  # fmt: skip
        elif size > MAX_NAME_BYTES:
            out.append((where, f"makes the partition name '{partition}' {size} bytes long; "
                               f"a queue name is at most {MAX_NAME_BYTES} bytes"))  # fmt: skip
        first.setdefault(key, i)
    partition = stream.partitions[0] if stream.partitions else stream.name
    for argument, value in stream.arguments.items():
        message = _stream_argument_problem(stream.vhost, partition, argument, value)
        if message is not None:
            out.append((f"arguments.{argument}", message))
    return out


def _stream_argument_problem(vhost: str, partition: str, argument: str, value: Any) -> str | None:
    """Why the broker would refuse a stream declared with this argument; None when it would not."""
    try:
        check_stream_declare(vhost, partition, {argument: value}, durable=True, exclusive=False,
                             auto_delete=False, server_named=False)  # fmt: skip
    except ChannelError as exc:
        return f"refused for a stream: {exc.text}"
    return None


# ------------------------------------------------------------------ reading
def read_super_stream(reader: Reader, path: KeyPath, item: dict[str, Any]) -> SuperStream | None:
    """One entry of the `super-streams` section; None once its problems are reported.

    An entry with problems is not expanded, so a mistake in it is reported
    once, at its key, and not again for every partition.
    """
    locations: dict[str, Located] = {
        "name": reader.where((*path, "name")),
        "vhost": reader.where((*path, "vhost")),
    }
    ok = True
    name = item.get("name")
    if "name" not in item:
        reader.problem((*path, "name"), "required key is missing")
        ok = False
    elif not isinstance(name, str) or not name:
        reader.problem((*path, "name"), f"must be a non-empty string, not {name!r}")
        ok = False
    vhost = item.get("vhost", "/")
    if not isinstance(vhost, str) or not vhost:
        reader.problem((*path, "vhost"), f"must be a vhost name, not {vhost!r}")
        ok = False
    keys = _routing_keys(reader, path, item, locations)
    arguments = _arguments(reader, path, item, locations)
    if not ok or keys is None or arguments is None:
        return None
    path_text, line = reader.where(path)
    stream = SuperStream(vhost, name, keys, dict(sorted(arguments.items())), path_text, line,
                         locations)  # fmt: skip
    problems = super_stream_problems(stream)
    for where, message in problems:
        key_path, key_line = stream.at(where)
        reader.problems.append(Problem(reader.file, key_line, key_path, message))
    return None if problems else stream


def _routing_keys(reader: Reader, path: KeyPath, item: dict[str, Any],
                  locations: dict[str, Located]) -> tuple[str, ...] | None:  # fmt: skip
    """The partitions' routing keys, from `partitions: N` or `routing-keys: [...]`."""
    if "partitions" in item and "routing-keys" in item:
        reader.problem((*path, "routing-keys"), "give either partitions or routing-keys, not both")
        return None
    if "partitions" not in item and "routing-keys" not in item:
        reader.problem((*path, "partitions"), "one of partitions or routing-keys is required")
        return None
    if "partitions" in item:
        count = item["partitions"]
        if not _is_int(count) or not 1 <= count <= MAX_PARTITIONS:
            reader.problem((*path, "partitions"),
                           f"must be a whole number from 1 to {MAX_PARTITIONS}, not {count!r}")  # fmt: skip
            return None
        where = reader.where((*path, "partitions"))
        locations["routing-keys"] = where
        locations.update({f"routing-keys[{i}]": where for i in range(count)})
        return tuple(str(i) for i in range(count))
    keys = item["routing-keys"]
    if not isinstance(keys, list) or not keys:
        reader.problem((*path, "routing-keys"),
                       f"must be a non-empty list of routing keys, not {keys!r}")  # fmt: skip
        return None
    locations["routing-keys"] = reader.where((*path, "routing-keys"))
    ok = True
    for i, key in enumerate(keys):
        locations[f"routing-keys[{i}]"] = reader.where((*path, "routing-keys", i))
        if not isinstance(key, str) or not key:
            hint = " (write it in quotes)" if isinstance(key, bool | int | float) else ""
            reader.problem(
                (*path, "routing-keys", i), f"must be a non-empty string{hint}, not {key!r}"
            )
            ok = False
    return tuple(keys) if ok else None


def _arguments(reader: Reader, path: KeyPath, item: dict[str, Any],
               locations: dict[str, Located]) -> dict[str, Any] | None:  # fmt: skip
    """The partitions' stream arguments: `arguments` as-is, and the friendly keys converted."""
    given = item.get("arguments", {})
    if given is None:
        given = {}
    if not isinstance(given, dict):
        reader.problem((*path, "arguments"), f"must be a mapping, not {type_name(given)}")
        return None
    arguments = dict(given)
    for key in arguments:
        locations[f"arguments.{key}"] = reader.where((*path, "arguments", key))
    ok = True
    queue_type = arguments.pop(QUEUE_TYPE_ARGUMENT, "stream")
    if queue_type != "stream":
        reader.problem((*path, "arguments", QUEUE_TYPE_ARGUMENT),
                       f"must be 'stream' (partitions are streams), not {queue_type!r}")  # fmt: skip
        ok = False
    for key, (argument, convert) in FRIENDLY_ARGUMENTS.items():
        if key not in item:
            continue
        try:
            value = convert(item[key])
        except ValueError as exc:
            reader.problem((*path, key), str(exc))
            ok = False
            continue
        if argument in arguments and not _same(arguments[argument], value):
            reader.problem((*path, key), f"{value!r} conflicts with arguments.{argument}: "
                                         f"{arguments[argument]!r}")  # fmt: skip
            ok = False
            continue
        arguments[argument] = value
        locations[f"arguments.{argument}"] = reader.where((*path, key))
    return arguments if ok else None


# ------------------------------------------------------------------ expanding
def super_stream_entities(stream: SuperStream) -> list[Expanded]:
    """(kind, body, field -> part of the entry) of the exchange, partitions and bindings."""
    vhost, name = stream.vhost, stream.name
    out: list[Expanded] = [("exchange", {
        "name": name, "vhost": vhost, "type": "direct", "durable": True, "auto_delete": False,
        "internal": False, "arguments": {SUPER_STREAM_ARGUMENT: True},
    }, {"name": "name"})]  # fmt: skip
    queue_arguments = dict(sorted({**stream.arguments, QUEUE_TYPE_ARGUMENT: "stream"}.items()))
    argument_fields = {f"arguments.{a}": f"arguments.{a}" for a in stream.arguments}
    for order, (key, partition) in enumerate(
        zip(stream.routing_keys, stream.partitions, strict=True)
    ):
        where = f"routing-keys[{order}]"
        out.append(("queue", {"name": partition, "vhost": vhost, "durable": True,
                              "auto_delete": False, "arguments": dict(queue_arguments)},
                    {"name": where, **argument_fields}))  # fmt: skip
        out.append(("binding", {"source": name, "vhost": vhost, "destination": partition,
                                "destination_type": "queue", "routing_key": key,
                                "arguments": {ORDER_ARGUMENT: order}},
                    {"source": "name", "destination": where, "routing_key": where,
                     f"arguments.{ORDER_ARGUMENT}": where}))  # fmt: skip
    return out


def _settings(stream: SuperStream) -> dict[str, Any]:
    return {"routing-keys": list(stream.routing_keys), "arguments": stream.arguments}


def _where(path: str, line: int | None) -> str:
    return f"line {line} ({path})" if line is not None else path


class _Expansion:
    def __init__(self, entries: list[Entry], file: str) -> None:
        self.entries, self.file = entries, file
        self.problems: list[Problem] = []
        self.index: dict[tuple[Any, ...], Entry] = {}
        for entry in entries:
            key = _key(entry.kind, entry.body)
            if key is not None:
                self.index.setdefault(key, entry)
        self.declared: dict[tuple[str, str], SuperStream] = {}
        self.partition_of: dict[tuple[str, str], SuperStream] = {}

    def problem(self, stream: SuperStream, message: str) -> None:
        self.problems.append(Problem(self.file, stream.line, stream.path, message))

    def expand(self, stream: SuperStream) -> None:
        first = self.declared.get((stream.vhost, stream.name))
        if first is not None:
            if diff := differences(_settings(first), _settings(stream)):
                self.problem(stream, f"super stream '{stream.name}' in vhost '{stream.vhost}' is "
                             f"declared again with other settings than at "
                             f"{_where(first.path, first.line)}: {diff}")  # fmt: skip
            return
        for partition in stream.partitions:
            owner = self.partition_of.get((stream.vhost, partition))
            if owner is not None:
                self.problem(stream, f"queue '{partition}' in vhost '{stream.vhost}' is a "
                             f"partition of super stream '{owner.name}' at "
                             f"{_where(owner.path, owner.line)} already")  # fmt: skip
                return
        self.declared[(stream.vhost, stream.name)] = stream
        self.partition_of.update({(stream.vhost, p): stream for p in stream.partitions})
        for kind, body, fields in super_stream_entities(stream):
            self._add(stream, kind, body, fields)

    def _add(self, stream: SuperStream, kind: str, body: dict[str, Any],
             fields: dict[str, str]) -> None:  # fmt: skip
        entry = Entry(kind, body, stream.path, stream.line, fallback=(stream.path, stream.line))
        entry.fields["vhost"] = stream.at("vhost")
        for field_name, where in fields.items():
            entry.fields[field_name] = stream.at(where)
        key = _key(kind, body)
        existing = self.index.get(key)
        if existing is None:
            self.index[key] = entry
            self.entries.append(entry)
        elif diff := differences(existing.body, body):
            self.problem(stream, f"{describe(kind, body)} is declared at "
                         f"{_where(existing.path, existing.line)} with other settings than "
                         f"this super stream needs ({diff})")  # fmt: skip


def _key(kind: str, body: dict[str, Any]) -> tuple[Any, ...] | None:
    ident = identity(kind, body)
    if not all(isinstance(part, str) for part in ident):
        return None
    return (kind, *ident)


def expand_super_streams(streams: list[SuperStream], entries: list[Entry],
                         file: str) -> list[Problem]:  # fmt: skip
    """Add every super stream's entities to entries (in place); problems name both conflicting lines."""
    expansion = _Expansion(entries, file)
    for stream in streams:
        expansion.expand(stream)
    return expansion.problems


# ------------------------------------------------------------------ recognising
def split_super_streams(
    definitions: dict[str, Any],
) -> tuple[list[SuperStream], dict[str, Any]]:
    """The complete super streams of a (valid) definitions document, and the document without them.

    Complete: the exchange, every partition and every binding of the exchange
    are exactly what the super stream's entry expands to, and the entry
    reads back without problems. Anything else stays plain entities.
    """
    queues = {(q.get("vhost", "/"), q.get("name")): q for q in definitions.get("queues") or []}
    bindings: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for binding in definitions.get("bindings") or []:
        bindings.setdefault((binding.get("vhost", "/"), binding.get("source")), []).append(binding)
    streams: list[SuperStream] = []
    taken: set[tuple[str, Any, Any]] = set()
    exchanges = sorted(definitions.get("exchanges") or [],
                       key=lambda x: (str(x.get("vhost", "/")), str(x.get("name"))))  # fmt: skip
    for exchange in exchanges:
        source = (exchange.get("vhost", "/"), exchange.get("name"))
        stream = _recognise(exchange, bindings.get(source, []), queues)
        if stream is None:
            continue
        covered = {("exchange", *source)} | {("queue", stream.vhost, p) for p in stream.partitions}
        if covered & taken:
            continue  # its partitions belong to another one already
        taken |= covered
        streams.append(stream)
    rest = dict(definitions)
    for section, kind in (("exchanges", "exchange"), ("queues", "queue")):
        if section in rest:
            rest[section] = [body for body in rest[section] or []
                             if (kind, body.get("vhost", "/"), body.get("name")) not in taken]  # fmt: skip
    if "bindings" in rest:
        rest["bindings"] = [b for b in rest["bindings"] or []
                            if ("exchange", b.get("vhost", "/"), b.get("source")) not in taken]  # fmt: skip
    return streams, rest


def _recognise(exchange: dict[str, Any], bindings: list[dict[str, Any]],
               queues: dict[tuple[Any, Any], dict[str, Any]]) -> SuperStream | None:  # fmt: skip
    """The super stream an exchange and its bindings are, when they are exactly one."""
    vhost, name = exchange.get("vhost", "/"), exchange.get("name")
    arguments = exchange.get("arguments")
    if not isinstance(name, str) or not isinstance(vhost, str) or not isinstance(arguments, dict):
        return None
    if not _same(arguments.get(SUPER_STREAM_ARGUMENT), True):
        return None
    by_order: dict[int, dict[str, Any]] = {}
    for binding in {json.dumps(binding_identity({**DEFAULTS["binding"], **b}), default=str): b
                    for b in bindings}.values():  # fmt: skip
        binding_arguments = binding.get("arguments")
        order = (
            binding_arguments.get(ORDER_ARGUMENT) if isinstance(binding_arguments, dict) else None
        )
        if not _is_int(order) or order in by_order:
            return None
        by_order[order] = binding
    if not by_order or sorted(by_order) != list(range(len(by_order))):
        return None
    keys = tuple(by_order[i].get("routing_key", "") for i in range(len(by_order)))
    first = queues.get((vhost, f"{name}-{keys[0]}")) if isinstance(keys[0], str) else None
    first_arguments = first.get("arguments") if first is not None else None
    if (
        not isinstance(first_arguments, dict)
        or first_arguments.get(QUEUE_TYPE_ARGUMENT) != "stream"
    ):
        return None
    stream_arguments = {k: v for k, v in first_arguments.items() if k != QUEUE_TYPE_ARGUMENT}
    stream = SuperStream(vhost, name, keys, dict(sorted(stream_arguments.items())))
    if super_stream_problems(stream):
        return None
    for kind, body, _ in super_stream_entities(stream):
        if kind == "exchange":
            actual: dict[str, Any] | None = exchange
        elif kind == "queue":
            actual = queues.get((vhost, body["name"]))
        else:
            actual = by_order[body["arguments"][ORDER_ARGUMENT]]
        if actual is None or not _matches(kind, actual, body):
            return None
    return stream


def _matches(kind: str, actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether a definitions entity is the expected one, field for field (defaults filled in)."""
    defaults = DEFAULTS[kind]
    filled = {key: actual.get(key, defaults.get(key)) for key in expected}
    return not differences(filled, expected)
