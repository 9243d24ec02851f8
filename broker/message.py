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

_U32 = struct.Struct(">I").unpack_from

# Property flag bits (the first flags word of a Basic content header).
_CONTENT_TYPE = 0x8000
_CONTENT_ENCODING = 0x4000
_HEADERS = 0x2000
_DELIVERY_MODE = 0x1000


class Message(NamedTuple):
    """A message in a queue: its offset and what a delivery needs."""

    offset: int
    flags: int
    exchange_rk: bytes
    properties: bytes
    body: bytes

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


def message_from_record(offset: int, headers: bytes, body: bytes | None) -> Message:
    flags, exrk, props = split_record_headers(headers)
    return Message(offset, flags, exrk, props, body or b"")


def routing_key_of(exchange_rk: bytes) -> str:
    ex_len = exchange_rk[0]
    return exchange_rk[2 + ex_len : 2 + ex_len + exchange_rk[1 + ex_len]].decode(
        "utf-8", "surrogateescape"
    )


def exchange_of(exchange_rk: bytes) -> str:
    return exchange_rk[1 : 1 + exchange_rk[0]].decode("utf-8", "surrogateescape")


def delivery_mode(properties: bytes) -> int:
    """The delivery-mode property (2 = persistent), 0 when absent or unreadable."""
    if len(properties) < 2:
        return 0
    flags = properties[0] << 8 | properties[1]
    if not flags & _DELIVERY_MODE:
        return 0
    pos = 2
    if flags & 1:  # a continuation flags word (never for Basic, but be safe)
        return 0
    try:
        if flags & _CONTENT_TYPE:
            pos += 1 + properties[pos]
        if flags & _CONTENT_ENCODING:
            pos += 1 + properties[pos]
        if flags & _HEADERS:
            pos += 4 + _U32(properties, pos)[0]
        return properties[pos]
    except (IndexError, struct.error):
        return 0
