"""Declaring a stream queue (`x-queue-type: stream`): RabbitMQ's checks, texts and order.

A stream is always durable, never exclusive, never auto-deleted, and never
server-named. It takes its own arguments (retention, segment size, and a few
cluster settings accepted and ignored on a single node) and refuses those of
the other queue types, as RabbitMQ 4.x does, in RabbitMQ's order:

1. a server-named declare;
2. the stream's own arguments, each validated (in RabbitMQ's validator order);
3. an argument of another queue type (in the order the table lists them);
4. the properties: auto-delete, exclusive, non-durable;
5. the segment size's upper bound.

Every refusal is a 406 on Queue.Declare. Where RabbitMQ crashes on an
`x-max-age` it cannot parse (`h`, `-1h`, `' 1h'`: a 541 INTERNAL_ERROR), we
answer the 406 `invalid_max_age` it gives for the other bad values.

The stream's log gets its retention from its arguments: `x-max-age` and
`x-max-length-bytes` become the topic's `retention_ms` and `retention_bytes`,
and `x-stream-max-segment-size-bytes` its `segment_bytes`.
"""

from __future__ import annotations

import decimal
import re
from typing import Any

from warrenmq.amqp import ChannelError
from warrenmq.amqp.constants import PRECONDITION_FAILED
from warrenmq.logstore import LogConfig

from .partitioning import MAX_PARTITIONS

STREAM_TYPE = "stream"
QUEUE_TYPE_ARG = "x-queue-type"
QUEUE_TYPE_MODULE = "rabbit_stream_queue"  # how RabbitMQ names the type in its texts
MAX_SEGMENT_SIZE = 3_000_000_000  # ?MAX_STREAM_MAX_SEGMENT_SIZE
MIN_SEGMENT_SIZE = 64  # the smallest segment LogConfig allows
LEADER_LOCATORS = ("client-local", "balanced", "random", "least-leaders")

# The stream's own arguments, in RabbitMQ's validator order (declare_args()).
STREAM_ARGUMENTS = (
    "x-max-length-bytes",
    QUEUE_TYPE_ARG,
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-stream-filter-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
    "x-partitions",  # a partitioned stream (partitioned_stream.py)
    "x-partition-key",
)
# Arguments of the other queue types: a stream refuses them.
REFUSED_ARGUMENTS = frozenset({
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-max-length", "x-max-priority", "x-overflow", "x-queue-mode", "x-queue-version",
    "x-queue-master-locator", "x-single-active-consumer", "x-delivery-limit",
    "x-dead-letter-strategy", "x-quorum-initial-group-size", "x-quorum-target-group-size",
    "x-max-in-memory-length", "x-max-in-memory-bytes",
    # warrenmq's own arguments of ordinary queues
    "x-delayed-retry-type", "x-delayed-retry-min", "x-delayed-retry-max", "x-retain-settled",
})  # fmt: skip

_MAX_AGE = re.compile(r"([0-9]*)(.*)", re.DOTALL)
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "D": 86_400_000,
            "M": 30 * 86_400_000, "Y": 365 * 86_400_000}  # fmt: skip


def is_stream(arguments: dict[str, Any]) -> bool:
    """Whether a declare's arguments ask for a stream (the type's name, exactly)."""
    return arguments.get(QUEUE_TYPE_ARG) == STREAM_TYPE


def parse_max_age(value: str) -> int | None:
    """An `x-max-age` in milliseconds (`7D`, `1h`, `30m`, `10s`, `1M`, `1Y`); None when invalid.

    As rabbit_amqqueue:check_max_age: digits then exactly one unit, more than zero.
    """
    digits, unit = _MAX_AGE.fullmatch(value).groups()
    if not digits or unit not in _UNIT_MS or int(digits) <= 0:
        return None
    return int(digits) * _UNIT_MS[unit]


def check_stream_declare(vhost: str, name: str, arguments: dict[str, Any], *, durable: bool,
                         exclusive: bool, auto_delete: bool, server_named: bool) -> None:  # fmt: skip
    """Refuse a stream declare as RabbitMQ does (406, its texts); see the module docstring."""
    resource = f"queue '{name}' in vhost '{vhost}'"
    if server_named:
        _refuse(f"Cannot declare a server-named queue for type {QUEUE_TYPE_MODULE}")
    for key in STREAM_ARGUMENTS:
        if key in arguments:
            error = _argument_error(key, arguments[key], arguments)
            if error is not None:
                _refuse(f"invalid arg '{key}' for {resource}: {error}")
    for key in arguments:
        if key in REFUSED_ARGUMENTS:
            _refuse(f"invalid arg '{key}' for {resource} of queue type {QUEUE_TYPE_MODULE}")
    for refused, prop in ((auto_delete, "auto-delete"), (exclusive, "exclusive-owner"),
                          (not durable, "non-durable")):  # fmt: skip
        if refused:
            _refuse(f"invalid property '{prop}' for {resource}")
    segment = arguments.get("x-stream-max-segment-size-bytes")
    if isinstance(segment, int) and segment > MAX_SEGMENT_SIZE:
        _refuse("Exceeded max value for x-stream-max-segment-size-bytes")
    filter_size = arguments.get("x-stream-filter-size-bytes")
    if isinstance(filter_size, int) and not 16 <= filter_size <= 255:
        _refuse("Invalid value for  x-stream-filter-size-bytes")  # sic: two spaces


def stream_log_config(base: LogConfig, arguments: dict[str, Any]) -> LogConfig:
    """The topic settings of a stream: the broker's, with the stream's retention and segment size."""
    segment = arguments.get("x-stream-max-segment-size-bytes")
    max_bytes = arguments.get("x-max-length-bytes")
    max_age = arguments.get("x-max-age")
    return base.replace(
        segment_bytes=max(MIN_SEGMENT_SIZE, segment) if _is_int(segment) else base.segment_bytes,
        retention_bytes=max_bytes if _is_int(max_bytes) else -1,
        retention_ms=(parse_max_age(max_age) or -1) if isinstance(max_age, str) else -1,
    )


def _argument_error(key: str, value: Any, arguments: dict[str, Any]) -> str | None:
    """RabbitMQ's reason for a bad value of one of the stream's arguments, None when fine."""
    if key == QUEUE_TYPE_ARG:
        return None  # only "stream" reaches here
    if key == "x-max-age":
        if not isinstance(value, str):
            return f"{{unacceptable_type,{type_name(value)}}}"
        return None if parse_max_age(value) is not None else "invalid_max_age"
    if key == "x-partition-key":
        if not isinstance(value, str):
            return f"{{unacceptable_type,{type_name(value)}}}"
        return None if "x-partitions" in arguments else "partition_key_but_no_partitions"
    if key == "x-partitions" and _is_int(value):
        if value == 0:
            return "{value_zero,0}"
        if value > MAX_PARTITIONS:
            return f"{{max_value_exceeded,{value}}}"
    if key == "x-queue-leader-locator":
        if not isinstance(value, str):
            return f"{{unacceptable_type,{type_name(value)}}}"
        return None if value in LEADER_LOCATORS else "invalid_queue_locator_arg"
    if not _is_int(value):
        return f'"expected integer, got {type_name(value)}"'
    if key == "x-initial-cluster-size" and value == 0:
        return "{value_zero,0}"
    if value < 0:
        return f"{{value_negative,{value}}}"
    return None


def type_name(value: Any) -> str:
    """The field-table type RabbitMQ names for a decoded value (as pika encodes it)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, bytes | bytearray):
        return "binary"
    if isinstance(value, str):
        return "longstr"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, list | tuple):
        return "array"
    return "void" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse(text: str) -> None:
    raise ChannelError(PRECONDITION_FAILED, text, 50, 10)
