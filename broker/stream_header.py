"""The `x-stream-offset` header a stream delivery carries, added to the raw property bytes.

A message from a stream is delivered with its offset in the header
`x-stream-offset` (a long, `l`), after the publisher's own headers, as
RabbitMQ does. This runs once per delivered message, so it edits bytes
instead of decoding the properties: it walks past content-type and
content-encoding (the only properties before headers), appends one entry
to the headers table (or adds a table), and fixes the table's length.
Everything else stays byte for byte. A publisher's own `x-stream-offset`
is replaced in place, by the slower table rewrite of deadletter.py.

The edit differs from message to message only in the offset's 8 bytes, and
a stream's messages mostly share their properties. So the bytes before and
after those 8 are kept per distinct properties of up to 512 B (a bounded cache); a hit
costs one `Struct.pack`, where the walk costs six times as much.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .deadletter import set_long_header

HEADER = "x-stream-offset"
_NAME = HEADER.encode()
_ENTRY_HEAD = bytes((len(_NAME),)) + _NAME + b"l"  # the entry without its 8 value bytes
_ENTRY_SIZE = len(_ENTRY_HEAD) + 8
_U32 = struct.Struct(">I")
_Q = struct.Struct(">q").pack
_CONTENT_TYPE, _CONTENT_ENCODING, _HEADERS = 0x8000, 0x4000, 0x2000
CACHE_LIMIT = 1024  # distinct properties kept
CACHE_MAX_BYTES = 512  # larger properties are edited without the cache: it stays under 2 MB

# properties -> (pack, before, after), or None when the publisher set the header itself
_Packer = tuple[Callable[[bytes, int, bytes], bytes], bytes, bytes]
_packers: dict[bytes, _Packer | None] = {}
_structs: dict[tuple[int, int], struct.Struct] = {}


def with_offset_header(properties: bytes, offset: int) -> bytes:
    """The raw properties with `x-stream-offset: offset` added to the headers."""
    try:
        packer = _packers[properties]
    except KeyError:
        if len(properties) > CACHE_MAX_BYTES:
            parts = _around_offset(properties)
            if parts is None:
                return set_long_header(properties, HEADER, offset)
            return parts[0] + _Q(offset) + parts[1]
        packer = _new_packer(properties)
    if packer is None:
        return set_long_header(properties, HEADER, offset)
    pack, before, after = packer
    return pack(before, offset, after)


def _new_packer(properties: bytes) -> _Packer | None:
    """Split the edit of properties around the offset's 8 bytes, and keep that for next time."""
    parts = _around_offset(properties)
    packer = None
    if parts is not None:
        before, after = parts
        shape = (len(before), len(after))
        st = _structs.get(shape)
        if st is None:
            if len(_structs) >= CACHE_LIMIT:
                _structs.clear()
            st = _structs[shape] = struct.Struct(f">{shape[0]}sq{shape[1]}s")
        packer = (st.pack, before, after)
    if len(_packers) >= CACHE_LIMIT:  # properties unique per message: start over, stay bounded
        _packers.clear()
    _packers[properties] = packer
    return packer


def _around_offset(properties: bytes) -> tuple[bytes, bytes] | None:
    """The edited properties before and after the offset's 8 bytes; None for a publisher's own header."""
    if len(properties) < 2:
        return bytes((_HEADERS >> 8, 0)) + _U32.pack(_ENTRY_SIZE) + _ENTRY_HEAD, b""
    flags = properties[0] << 8 | properties[1]
    pos = 2
    if flags & _CONTENT_TYPE:
        pos += 1 + properties[pos]
    if flags & _CONTENT_ENCODING:
        pos += 1 + properties[pos]
    if not flags & _HEADERS:
        flags |= _HEADERS
        before = bytes((flags >> 8, flags & 0xFF)) + properties[2:pos] + _U32.pack(_ENTRY_SIZE)
        return before + _ENTRY_HEAD, properties[pos:]
    size = _U32.unpack_from(properties, pos)[0]
    end = pos + 4 + size
    if _NAME in properties[pos + 4 : end]:  # perhaps the publisher's own: rewrite the table
        return None
    before = properties[:pos] + _U32.pack(size + _ENTRY_SIZE) + properties[pos + 4 : end]
    return before + _ENTRY_HEAD, properties[end:]


PARTITION_HEADER = "x-stream-partition"
_PARTITION_NAME = PARTITION_HEADER.encode()
_PARTITION_ENTRY_HEAD = bytes((len(_PARTITION_NAME),)) + _PARTITION_NAME + b"l"


def with_partition_header(properties: bytes, partition: int) -> bytes:
    """Properties that carry a headers table (with_offset_header's) with `x-stream-partition` added.

    The entry goes at the end of the table, after `x-stream-offset`; a
    publisher's own `x-stream-partition` is replaced by the table rewrite.
    """
    flags = properties[0] << 8 | properties[1]
    pos = 2
    if flags & _CONTENT_TYPE:
        pos += 1 + properties[pos]
    if flags & _CONTENT_ENCODING:
        pos += 1 + properties[pos]
    size = _U32.unpack_from(properties, pos)[0]
    end = pos + 4 + size
    if _PARTITION_NAME in properties[pos + 4 : end]:
        return set_long_header(properties, PARTITION_HEADER, partition)
    entry = _PARTITION_ENTRY_HEAD + _Q(partition)
    return b"".join((properties[:pos], _U32.pack(size + len(entry)), properties[pos + 4 : end], entry,
                     properties[end:]))  # fmt: skip
