"""The arguments of a partitioned queue, and which partition a message goes to.

`x-partitions: N` (1..1024) splits a queue into N partitions of its log
topic. A message goes to partition crc32(key) % N, so every message with
the same key lands in the same partition and keeps its order there. The
key is the message's routing key, or, with `x-partition-key: HEADER`, the
string form of that header's value (the routing key again when the
message lacks the header). One CRC over a few bytes per publish: the
header is decoded only when a queue asks for one.

Declare-time checks follow RabbitMQ's style for integer arguments
(`{value_zero,0}`, `{max_value_exceeded,N}`); the broker's
`_check_queue_arguments` asks `partition_argument_error` after its own
type checks.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from zlib import crc32

from warrenmq.amqp.codec import decode_properties

PARTITIONS_ARG = "x-partitions"
PARTITION_KEY_ARG = "x-partition-key"
MAX_PARTITIONS = 1024
# The AMQP content-header flag saying the property list carries a headers table.
_HEADERS_FLAG = 0x2000


def is_partitioned(arguments: dict[str, Any]) -> bool:
    """Whether a (checked) declare asks for a partitioned queue."""
    return PARTITIONS_ARG in arguments


def partition_count(arguments: dict[str, Any]) -> int:
    """How many partitions the queue's log topic has: x-partitions, or 1."""
    value = arguments.get(PARTITIONS_ARG)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def partition_argument_error(key: str, value: Any, arguments: dict[str, Any]) -> str | None:
    """The reason a partitioning argument (or its combination) is refused, None when fine.

    Called once the argument's type is known to be right. A reject-publish
    overflow is refused with partitions: a publish is admitted before the
    partition it goes to is chosen, so it could only be refused for all of
    them at once.
    """
    if key == PARTITIONS_ARG:
        if value == 0:
            return "{value_zero,0}"
        if value > MAX_PARTITIONS:
            return f"{{max_value_exceeded,{value}}}"
    elif key == PARTITION_KEY_ARG and PARTITIONS_ARG not in arguments:
        return "partition_key_but_no_partitions"
    elif key == "x-overflow" and PARTITIONS_ARG in arguments and value != "drop-head":
        return f"{{overflow_not_supported_with_partitions,{value}}}"
    return None


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a message key: the same key, the same partition, always."""
    return crc32(key) % partitions


def routing_key_bytes(exchange_rk: bytes) -> bytes:
    """The routing key's bytes out of a record's exchange/routing-key field (two shortstrs)."""
    return exchange_rk[2 + exchange_rk[0] :]


def header_key(properties: bytes, header: str) -> bytes | None:
    """The bytes of a header's string form, None when the message has no such header."""
    if len(properties) < 2 or not properties[0] << 8 & _HEADERS_FLAG:
        return None
    try:
        headers = decode_properties(properties).headers
    except Exception:  # undecodable properties: placed by routing key
        return None
    if not headers or header not in headers:
        return None
    return key_bytes(headers[header])


def key_bytes(value: Any) -> bytes | None:
    """A header value as the bytes of its string form (text as UTF-8, bytes as they are)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, int | float | Decimal):
        return str(value).encode()
    return str(value).encode("utf-8", "surrogateescape")
