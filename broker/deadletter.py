"""The properties of a dead-lettered copy of a message, as RabbitMQ 4.x writes them.

Pure functions on raw content-header property bytes (no I/O, no asyncio).
The broker calls them when a message leaves a queue unconsumed:

    keys = death_routing_keys(routing_key, props, explicit_key=...)
    copy = dead_letter_properties(props, ours=bool(flags & FLAG_DEATHS_OURS), queue=...,
                                  reason=..., exchange=..., routing_keys=keys, now_s=...)
    route the copy with dead_letter_routing_keys(routing_key, props, dlx_key, ...)
    drop it for every target queue where is_automatic_cycle(copy, target) is true
    store it with FLAG_DEATHS_OURS set (and whether x-dead-letter-routing-key
    gave its routing key: that is `explicit_key` at its next death)

What changes in the copy (RabbitMQ: deps/rabbit/src/mc.erl `record_death`,
mc_amqpl.erl `death_table` and `protocol_state`, rabbit_dead_letter.erl
`publish`):

- `x-death`: an array of tables, one per (queue, reason), newest first: a
  repeated death adds 1 to its entry's `count` and moves the entry to the
  front; the entry's `time`, `exchange`, `routing-keys` and
  `original-expiration` stay those of the first death for that pair.
- `x-first-death-{reason,queue,exchange}` are written with the first death
  and then left alone; `x-last-death-{reason,queue,exchange}` are written
  on every death.
- the `expiration` property is removed; its value, as an integer, becomes
  the new entry's `original-expiration`.
- A publisher's own `x-death` is never read: when `ours` is false the first
  death starts a fresh history and replaces the publisher's `x-death`,
  `x-first-death-*` and `x-last-death-*`. A message that is not
  dead-lettered keeps them untouched (nothing here is called).

Everything else keeps its bytes: the other properties, and the other header
entries in their order with their exact field types. The death headers take
the place of an entry of the same name (a later duplicate is dropped) or are
appended, in the order RabbitMQ's key sort gives them. (RabbitMQ re-sorts
and de-duplicates the whole headers table of a dead-lettered copy; we keep
the publisher's order.)

Field types written, as RabbitMQ writes them: `x-death` is an array ('A') of
tables ('F'); in each, `count` is 'l' (signed 64-bit), `time` is 'T'
(seconds), `routing-keys` an array of 'S', and `reason`, `queue`,
`exchange`, `original-expiration` are 'S', in RabbitMQ's key order
(`original-expiration` first when present). The six `x-*-death-*` headers
are 'S'.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from warrenmq.amqp.codec import check_properties

REASONS = ("rejected", "expired", "maxlen", "delivery_limit")

_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")

# Basic property flags, in wire order, with their encodings (AMQP 0-9-1 spec).
_SHORT, _TABLE = -1, -2
_HEADERS = 0x2000
_EXPIRATION = 0x0100
_PROPERTY_LAYOUT = (
    (0x8000, _SHORT),  # content-type
    (0x4000, _SHORT),  # content-encoding
    (_HEADERS, _TABLE),
    (0x1000, 1),  # delivery-mode
    (0x0800, 1),  # priority
    (0x0400, _SHORT),  # correlation-id
    (0x0200, _SHORT),  # reply-to
    (_EXPIRATION, _SHORT),
    (0x0080, _SHORT),  # message-id
    (0x0040, 8),  # timestamp
    (0x0020, _SHORT),  # type
    (0x0010, _SHORT),  # user-id
    (0x0008, _SHORT),  # app-id
    (0x0004, _SHORT),  # cluster-id
)

# Sizes of the fixed-size field-table value types, by type octet.
_FIXED_SIZES = {
    **dict.fromkeys(b"btB", 1),
    **dict.fromkeys(b"su", 2),
    **dict.fromkeys(b"Iif", 4),
    **dict.fromkeys(b"lLdT", 8),
    ord("D"): 5,
    ord("V"): 0,
}
_INTS = {
    ord(t): struct.Struct(f">{c}")
    for t, c in (("b", "b"), ("B", "B"), ("s", "h"), ("u", "H"), ("I", "i"), ("i", "I"),
                 ("l", "q"), ("L", "q"), ("T", "Q"))
}  # fmt: skip

_X_DEATH = b"x-death"
_FIRST = (b"x-first-death-exchange", b"x-first-death-queue", b"x-first-death-reason")
_LAST = (b"x-last-death-exchange", b"x-last-death-queue", b"x-last-death-reason")
# The integer forms Erlang's string:to_integer/1 reads from an expiration.
_TTL = re.compile(rb"[+-]?[0-9]+")


class Death(NamedTuple):
    """One `x-death` entry: the deaths of a message in one queue for one reason."""

    queue: str
    reason: str
    count: int
    time: int  # seconds since the epoch, of the first of these deaths
    exchange: str
    routing_keys: tuple[str, ...]
    original_expiration: str | None = None


# ------------------------------------------------------------------ public
def dead_letter_properties(
    properties: bytes,
    *,
    ours: bool,
    queue: str,
    reason: str,
    exchange: str,
    routing_keys: Sequence[str],
    now_s: int,
) -> bytes:
    """The raw properties of the copy of a message dead-lettered from `queue`.

    `ours` says whether the `x-death` in `properties` was written by this
    broker (the stored message's flag); a publisher's is ignored.
    `exchange` and `routing_keys` are those the message had when it died
    (its stored exchange and `death_routing_keys`); `now_s` is the time in
    whole seconds. ValueError for an unknown reason or malformed properties.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}")
    flags, parts = _split_properties(properties)
    entries = list(_table_entries(parts.get(_HEADERS, b"\0\0\0\0")[4:]))
    history = _history(entries, ours)
    ttl = None
    if _EXPIRATION in parts:
        ttl = _original_expiration(parts.pop(_EXPIRATION)[1:])
        flags &= ~_EXPIRATION
    death = Death(queue, reason, 1, now_s, exchange, tuple(routing_keys), ttl)
    new_headers = {_X_DEATH: _x_death(_record(history, death))}
    if not history:
        new_headers.update(zip(_FIRST, _death_names(death), strict=True))
    new_headers.update(zip(_LAST, _death_names(death), strict=True))
    table = _rewrite_table(entries, new_headers)
    parts[_HEADERS] = _U32.pack(len(table)) + table
    flags |= _HEADERS
    return _join_properties(flags, parts)


def set_long_header(properties: bytes, name: str, value: int) -> bytes:
    """Raw properties with one header set to a long ('l'), everything else kept byte for byte.

    Used for x-delivery-count on redeliveries from a queue with a delivery limit.
    """
    flags, parts = _split_properties(properties)
    entries = list(_table_entries(parts.get(_HEADERS, b"\0\0\0\0")[4:]))
    table = _rewrite_table(entries, {name.encode(): b"l" + struct.pack(">q", value)})
    parts[_HEADERS] = _U32.pack(len(table)) + table
    return _join_properties(flags | _HEADERS, parts)


def death_history(properties: bytes, ours: bool) -> list[Death]:
    """The message's deaths, newest first; none when its `x-death` is a publisher's."""
    _flags, parts = _split_properties(properties)
    return _history(_table_entries(parts.get(_HEADERS, b"\0\0\0\0")[4:]), ours)


def death_routing_keys(
    routing_key: str, properties: bytes, *, explicit_key: bool = False
) -> list[str]:
    """The `routing-keys` RabbitMQ records for a death: the routing keys, CC in, BCC out.

    A message's routing keys are its routing key then the 'S' values of its
    CC and BCC array headers (rabbit_basic.erl `header_routes`);
    record_death (mc.erl) takes the BCC values out with Erlang's `--`
    (first occurrence of each). The BCC values are known only if the stored
    properties still hold the BCC header. `explicit_key`: the message is a
    copy dead-lettered with x-dead-letter-routing-key, whose routing keys
    are that one key (rabbit_dead_letter.erl `publish`), whatever its CC says.
    """
    cc, bcc = _header_routes(properties)
    keys = [routing_key] if explicit_key else [routing_key, *cc, *bcc]
    return _erlang_subtract(keys, bcc)


def dead_letter_routing_keys(
    routing_key: str, properties: bytes, dead_letter_key: str | None, *, explicit_key: bool = False
) -> list[str]:
    """The routing keys the dead-lettered copy is routed with through the DLX.

    x-dead-letter-routing-key when the queue has one, else all the message's
    routing keys, CC and BCC included (rabbit_dead_letter.erl `publish`).
    `explicit_key` as in `death_routing_keys`.
    """
    if dead_letter_key is not None:
        return [dead_letter_key]
    if explicit_key:
        return [routing_key]
    cc, bcc = _header_routes(properties)
    return [routing_key, *cc, *bcc]


def is_automatic_cycle(dead_lettered: bytes, target_queue: str) -> bool:
    """True when delivering this dead-lettered copy to `target_queue` closes an automatic cycle.

    `dead_lettered` is what dead_letter_properties returned (the death just
    recorded is its newest). As RabbitMQ 4.x (mc.erl `is_cycle_v2`): take
    the newest death from `target_queue`; the copy cycles when neither it
    nor any newer death is 'rejected'. RabbitMQ drops the copy for such a
    queue and delivers it to the others; a rejection anywhere in the loop
    means a client is in it, so it is not a cycle.
    """
    for death in death_history(dead_lettered, True):
        if death.reason == "rejected":
            return False
        if death.queue == target_queue:
            return True
    return False


# --------------------------------------------------------------- history
def _history(entries: Iterable[tuple[bytes, bytes]], ours: bool) -> list[Death]:
    """The deaths in the first `x-death` header, when ours; unreadable entries are skipped."""
    if not ours:
        return []
    for name, entry in entries:
        if name == _X_DEATH:
            value, _end = _decode_value(entry, 1 + len(name))
            if not isinstance(value, list):
                return []
            return [d for d in map(_death_from_table, value) if d is not None]
    return []


def _record(history: list[Death], death: Death) -> list[Death]:
    """mc.erl record_death (deaths v2): count up the (queue, reason) entry and move it first."""
    for i, old in enumerate(history):
        if (old.queue, old.reason) == (death.queue, death.reason):
            return [old._replace(count=old.count + 1), *history[:i], *history[i + 1 :]]
    return [death, *history]


def _death_from_table(table: Any) -> Death | None:
    if not isinstance(table, dict):
        return None
    queue, reason, count = table.get(b"queue"), table.get(b"reason"), table.get(b"count")
    if not (isinstance(queue, bytes) and isinstance(reason, bytes) and isinstance(count, int)):
        return None
    keys = table.get(b"routing-keys")
    expiration = table.get(b"original-expiration")
    return Death(
        _text(queue),
        _text(reason),
        count,
        _int_or(table.get(b"time"), 0),
        _text(table.get(b"exchange", b"")),
        tuple(_text(k) for k in keys if isinstance(k, bytes)) if isinstance(keys, list) else (),
        _text(expiration) if isinstance(expiration, bytes) else None,
    )


def _original_expiration(raw: bytes) -> str:
    """The TTL as RabbitMQ keeps it: an integer, so "060000" becomes "60000"."""
    if _TTL.fullmatch(raw):
        return str(int(raw))
    return _text(raw)  # RabbitMQ refuses such a publish; keep what there is


# -------------------------------------------------------------- encoding
def _x_death(history: list[Death]) -> bytes:
    """The `x-death` value: 'A' of 'F', in mc_amqpl.erl death_table's key order."""
    return _sized(b"A", b"".join(_sized(b"F", _death_table(d)) for d in history))


def _death_table(d: Death) -> bytes:
    entries = [
        _entry(b"count", b"l" + _I64.pack(d.count)),
        _entry(b"reason", _longstr(d.reason)),
        _entry(b"queue", _longstr(d.queue)),
        _entry(b"time", b"T" + _U64.pack(d.time)),
        _entry(b"exchange", _longstr(d.exchange)),
        _entry(b"routing-keys", _sized(b"A", b"".join(map(_longstr, d.routing_keys)))),
    ]
    if d.original_expiration is not None:
        entries.insert(0, _entry(b"original-expiration", _longstr(d.original_expiration)))
    return b"".join(entries)


def _death_names(d: Death) -> tuple[bytes, bytes, bytes]:
    """(exchange, queue, reason) values, in the order of _FIRST and _LAST."""
    return _longstr(d.exchange), _longstr(d.queue), _longstr(d.reason)


def _rewrite_table(entries: list[tuple[bytes, bytes]], values: dict[bytes, bytes]) -> bytes:
    """The headers table with `values` in place of same-named entries, the rest appended."""
    out = []
    pending = dict(values)
    for name, entry in entries:
        if name not in values:
            out.append(entry)
        elif name in pending:
            out.append(_entry(name, pending.pop(name)))
    out += [_entry(name, pending[name]) for name in sorted(pending)]
    return b"".join(out)


def _entry(name: bytes, value: bytes) -> bytes:
    return bytes((len(name),)) + name + value


def _longstr(value: str) -> bytes:
    return _sized(b"S", value.encode("utf-8", "surrogateescape"))


def _sized(kind: bytes, data: bytes) -> bytes:
    return kind + _U32.pack(len(data)) + data


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else ""


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# ------------------------------------------------------ raw properties
def _split_properties(raw: bytes) -> tuple[int, dict[int, bytes]]:
    """The flags word and each present property's bytes (with its length prefix), by flag."""
    if not check_properties(raw):
        raise ValueError("malformed content header properties")
    flags = raw[0] << 8 | raw[1]
    parts: dict[int, bytes] = {}
    pos = 2
    for flag, size in _PROPERTY_LAYOUT:
        if flags & flag:
            if size == _SHORT:
                size = 1 + raw[pos]
            elif size == _TABLE:
                size = 4 + _U32.unpack_from(raw, pos)[0]
            parts[flag] = raw[pos : pos + size]
            pos += size
    return flags, parts


def _join_properties(flags: int, parts: dict[int, bytes]) -> bytes:
    body = b"".join(parts[flag] for flag, _size in _PROPERTY_LAYOUT if flag in parts)
    return bytes((flags >> 8, flags & 0xFF)) + body


def _table_entries(table: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(name, the entry's bytes) of each entry of a well-formed field table's contents."""
    pos = 0
    while pos < len(table):
        start = pos
        pos += 1 + table[pos]
        name = table[start + 1 : pos]
        pos = _value_end(table, pos)
        yield name, table[start:pos]


def _value_end(data: bytes, pos: int) -> int:
    """Where the field value whose type octet is at `pos` ends."""
    size = _FIXED_SIZES.get(data[pos])
    if size is not None:
        return pos + 1 + size
    return pos + 5 + _U32.unpack_from(data, pos + 1)[0]


def _decode_value(data: bytes, pos: int) -> tuple[Any, int]:
    """A field value as ints, bytes ('S'), lists ('A') and dicts ('F'); None for other types."""
    kind = data[pos]
    end = _value_end(data, pos)
    if kind in _INTS:
        return _INTS[kind].unpack_from(data, pos + 1)[0], end
    body = data[pos + 5 : end]
    if kind == ord("S"):
        return bytes(body), end
    if kind == ord("A"):
        values, p = [], 0
        while p < len(body):
            value, p = _decode_value(body, p)
            values.append(value)
        return values, end
    if kind == ord("F"):
        return {name: _decode_value(entry, 1 + len(name))[0]
                for name, entry in _table_entries(body)}, end  # fmt: skip
    return None, end


def _header_routes(properties: bytes) -> tuple[list[str], list[str]]:
    """The 'S' values of the first CC and BCC headers that are arrays."""
    _flags, parts = _split_properties(properties)
    routes: dict[bytes, list[str]] = {}
    for name, entry in _table_entries(parts.get(_HEADERS, b"\0\0\0\0")[4:]):
        if name in (b"CC", b"BCC") and name not in routes:
            value, _end = _decode_value(entry, 1 + len(name))
            values = value if isinstance(value, list) else []
            routes[name] = [_text(v) for v in values if isinstance(v, bytes)]
    return routes.get(b"CC", []), routes.get(b"BCC", [])


def _erlang_subtract(items: list[str], remove: list[str]) -> list[str]:
    """Erlang's `A -- B`: each element of B removes the first equal element of A."""
    out = list(items)
    for value in remove:
        if value in out:
            out.remove(value)
    return out
