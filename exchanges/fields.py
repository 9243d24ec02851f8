"""AMQP field values as pamqp decodes them, reduced to hashable comparison keys.

Two different notions of equality are needed, both taken from how RabbitMQ
compares the Erlang terms its decoder produces:

* ``match_key``: a header value against a headers-exchange binding value, at
  the top level of the table. RabbitMQ compares the bare values with Erlang's
  ``==`` and ignores the field types, so an integer equals a float of the same
  value and a timestamp equals an integer of the same number of seconds. A
  boolean only equals a boolean, a decimal only a decimal of the same scale and
  digits. We add one rule of our own: a string never equals a byte array.
* ``strict_key``: everything else (values nested in tables and arrays, and the
  identity of a binding's arguments). There RabbitMQ's terms carry the field
  type, so an integer never equals a float.

pamqp decodes every integer width to ``int``, both float widths to ``float``,
a long string to ``str`` (or ``bytes`` when it is not valid UTF-8), a byte
array to ``bytearray``, a timestamp to an aware ``datetime``, void to None.
Integer widths cannot be told apart after decoding, so they compare equal.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Hashable, Mapping
from decimal import Decimal
from typing import Any

_UTC = _dt.UTC


def timestamp_seconds(value: _dt.datetime) -> int | float:
    """Seconds since the epoch; a naive datetime is taken as UTC (AMQP timestamps are)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    seconds = value.timestamp()
    return int(seconds) if seconds.is_integer() else seconds


def _decimal_key(value: Decimal) -> tuple[Any, ...]:
    # AMQP carries a decimal as (scale, unscaled integer): 1.0 and 1.00 differ.
    if not value.is_finite():
        return ("d", str(value))
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return ("d", exponent, int(value.scaleb(-exponent)))


def strict_key(value: Any) -> Hashable:
    """A hashable key equal for two values only when their type class and value are equal."""
    kind = type(value)
    if kind is str:
        return ("s", value)
    if kind is int:
        return ("i", value)
    if kind is bool:
        return ("b", value)
    if kind is float:
        return ("f", value)
    if value is None:
        return ("v",)
    if isinstance(value, bytes | bytearray | memoryview):
        return ("x", bytes(value))
    if isinstance(value, Mapping):
        return ("t", tuple((key, strict_key(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("a", tuple(strict_key(item) for item in value))
    if isinstance(value, Decimal):
        return _decimal_key(value)
    if isinstance(value, _dt.datetime):
        return ("T", timestamp_seconds(value))
    # Subclasses of the basic types (an IntEnum, a str subclass) compare as their base.
    if isinstance(value, bool):
        return ("b", bool(value))
    if isinstance(value, int):
        return ("i", int(value))
    if isinstance(value, float):
        return ("f", float(value))
    if isinstance(value, str):
        return ("s", str(value))
    return ("?", type(value).__name__, repr(value))


def match_key(value: Any) -> Hashable:
    """The key a top-level header value is compared by (see the module docstring).

    Strings and numbers are their own key, which keeps the common case free of
    allocations; every other class is a tagged tuple, so it can never collide
    with them.
    """
    kind = type(value)
    if kind is str or kind is int or kind is float:
        return value
    if kind is bool:
        return ("b", value)
    if isinstance(value, _dt.datetime):
        return timestamp_seconds(value)
    if isinstance(value, bool):
        return ("b", bool(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return strict_key(value)


def freeze_table(table: Mapping[str, Any]) -> tuple[Any, ...]:
    """A binding's arguments as a hashable identity, independent of key order."""
    if not table:
        return ()
    return tuple(sorted((key, strict_key(value)) for key, value in table.items()))


def amqp_type_name(value: Any) -> str:
    """The AMQP field type a value would be sent as, named as RabbitMQ names it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, str | bytes):
        return "longstr"
    if isinstance(value, bytearray | memoryview):
        return "binary"
    if isinstance(value, _dt.datetime):
        return "timestamp"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    if value is None:
        return "void"
    return type(value).__name__


def erlang_repr(value: Any) -> str:
    """Render a value roughly as RabbitMQ's ``~tp`` would, for reply texts."""
    if isinstance(value, str):
        return '<<"' + value.replace("\\", "\\\\").replace('"', '\\"') + '">>'
    if isinstance(value, bytes | bytearray):
        return "<<" + ",".join(str(byte) for byte in value) + ">>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "undefined"
    return repr(value)
