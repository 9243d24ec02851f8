"""The `x-stream-offset` header a stream delivery carries, added to the raw property bytes.

A message from a stream is delivered with its offset in the header
`x-stream-offset` (a long, `l`), after the publisher's own headers, as
RabbitMQ does. This runs once per delivered message, so it edits bytes
instead of decoding the properties: it walks past content-type and
content-encoding (the only properties before headers), appends one entry
to the headers table (or adds a table), and fixes the table's length.
Everything else stays byte for byte. A publisher's own `x-stream-offset`
is replaced in place, by the slower table rewrite of deadletter.py.
"""

from __future__ import annotations

import struct

from .deadletter import set_long_header

HEADER = "x-stream-offset"
_NAME = HEADER.encode()
_ENTRY = struct.Struct(f">B{len(_NAME)}sc" + "q")
_U32 = struct.Struct(">I")
_CONTENT_TYPE, _CONTENT_ENCODING, _HEADERS = 0x8000, 0x4000, 0x2000


def with_offset_header(properties: bytes, offset: int) -> bytes:
    """The raw properties with `x-stream-offset: offset` added to the headers."""
    entry = _ENTRY.pack(len(_NAME), _NAME, b"l", offset)
    if len(properties) < 2:
        return bytes((_HEADERS >> 8, 0)) + _U32.pack(len(entry)) + entry
    flags = properties[0] << 8 | properties[1]
    pos = 2
    if flags & _CONTENT_TYPE:
        pos += 1 + properties[pos]
    if flags & _CONTENT_ENCODING:
        pos += 1 + properties[pos]
    if not flags & _HEADERS:
        flags |= _HEADERS
        return (
            bytes((flags >> 8, flags & 0xFF)) + properties[2:pos]
            + _U32.pack(len(entry)) + entry + properties[pos:]
        )  # fmt: skip
    size = _U32.unpack_from(properties, pos)[0]
    end = pos + 4 + size
    if _NAME in properties[pos + 4 : end]:  # perhaps the publisher's own: rewrite the table
        return set_long_header(properties, HEADER, offset)
    return properties[:pos] + _U32.pack(size + len(entry)) + properties[pos + 4 : end] + entry + properties[end:]
