"""A message as a queue's log stores it, and the few property reads the broker needs.

Record layout in a queue's partition (docs/storage.md):

    timestamp  publish time, ms
    key        null
    value      the body
    headers    flags u8 | exchange short string | routing key short string | raw properties

The exchange and routing key are kept as the encoded short strings that
Basic.Deliver carries, and the properties as the raw bytes the publisher
sent, so a delivery copies bytes and encodes nothing. Properties are read
without decoding them all: `delivery_mode` walks the property list only as
far as it must.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

FLAG_PERSISTENT = 1
# The x-death header in the properties was written by this broker (so it is
# interpreted when the message is dead-lettered again; a publisher's is not).
FLAG_DEATHS_OURS = 2
# A dead-lettered copy routed with x-dead-letter-routing-key: its next death
# records just that key (RabbitMQ 4.x), not the key plus CC.
FLAG_EXPLICIT_KEY = 4
NO_EXPIRY = 0
TTL_ZERO = -1

_U32 = struct.Struct(">I").unpack_from

# Property flag bits (the first flags word of a Basic content header).
_CONTENT_TYPE = 0x8000
_CONTENT_ENCODING = 0x4000
_HEADERS = 0x2000
_DELIVERY_MODE = 0x1000


class Message(NamedTuple):
    """A message in a queue: its offset, what a delivery needs, and when it expires."""

    offset: int
    flags: int
    exchange_rk: bytes
    properties: bytes
    body: bytes
    expires: int = NO_EXPIRY  # ms since the epoch; TTL_ZERO: deliver now or expire

    @property
    def persistent(self) -> bool:
        return bool(self.flags & FLAG_PERSISTENT)

    @property
    def size(self) -> int:
        return len(self.body)


def record_headers(flags: int, exchange_rk: bytes, properties: bytes) -> bytes:
    return bytes((flags,)) + exchange_rk + properties


def split_record_headers(headers: bytes) -> tuple[int, bytes, bytes]:
    """(flags, exchange + routing key short strings, raw properties)."""
    ex_len = headers[1]
    rk_end = 3 + ex_len + headers[2 + ex_len]
    return headers[0], headers[1:rk_end], headers[rk_end:]


def expires_at(timestamp: int, queue_ttl: int | None, properties: bytes) -> int:
    """When a message published at timestamp expires: the lower of the queue's
    x-message-ttl and its own expiration (NO_EXPIRY without either, TTL_ZERO for 0)."""
    ttl = queue_ttl
    own = expiration(properties)
    if own is not None:
        try:
            value = int(own)
        except ValueError:
            value = None
        if value is not None and value >= 0 and (ttl is None or value < ttl):
            ttl = value
    if ttl is None:
        return NO_EXPIRY
    return TTL_ZERO if ttl == 0 else timestamp + ttl


def routing_key_of(exchange_rk: bytes) -> str:
    ex_len = exchange_rk[0]
    return exchange_rk[2 + ex_len : 2 + ex_len + exchange_rk[1 + ex_len]].decode(
        "utf-8", "surrogateescape"
    )


def exchange_of(exchange_rk: bytes) -> str:
    return exchange_rk[1 : 1 + exchange_rk[0]].decode("utf-8", "surrogateescape")


_CORRELATION_ID = 0x0400
_REPLY_TO = 0x0200
_EXPIRATION = 0x0100
_PRIORITY = 0x0800


# Basic's properties in wire order up to expiration, with their sizes
# (None: a short string, "table": a long-prefixed table).
_WALK = (
    (_CONTENT_TYPE, None),
    (_CONTENT_ENCODING, None),
    (_HEADERS, "table"),
    (_DELIVERY_MODE, 1),
    (_PRIORITY, 1),
    (_CORRELATION_ID, None),
    (_REPLY_TO, None),
    (_EXPIRATION, None),
)


def _property_pos(properties: bytes, target: int) -> int:
    """Where the target property's value starts in raw properties; -1 when absent.

    Walks only the properties before it, so nothing is decoded.
    """
    if len(properties) < 2:
        return -1
    flags = properties[0] << 8 | properties[1]
    if not flags & target or flags & 1:
        return -1
    pos = 2
    try:
        for flag, size in _WALK:
            if flag == target:
                return pos if pos < len(properties) else -1
            if flags & flag:
                if size is None:
                    pos += 1 + properties[pos]
                elif size == "table":
                    pos += 4 + _U32(properties, pos)[0]
                else:
                    pos += size
    except (IndexError, struct.error):
        return -1
    return -1


def expiration(properties: bytes) -> str | None:
    """The expiration property (a string of milliseconds), None when absent."""
    pos = _property_pos(properties, _EXPIRATION)
    if pos < 0:
        return None
    n = properties[pos]
    return properties[pos + 1 : pos + 1 + n].decode("utf-8", "replace")


def priority(properties: bytes) -> int:
    """The priority property (0 when absent or unreadable)."""
    pos = _property_pos(properties, _PRIORITY)
    return properties[pos] if pos >= 0 else 0


def has_expiration(properties: bytes) -> bool:
    """Whether the expiration property is present (a flags check, no parsing)."""
    return len(properties) >= 2 and bool((properties[0] << 8 | properties[1]) & _EXPIRATION)


def delivery_mode(properties: bytes) -> int:
    """The delivery-mode property (2 = persistent), 0 when absent or unreadable."""
    pos = _property_pos(properties, _DELIVERY_MODE)
    return properties[pos] if pos >= 0 else 0
