"""Client-given names (vhosts, queues) as safe, distinct, reversible directory names.

A name becomes one path component that cannot climb out of its parent or
hide: bytes outside [A-Za-z0-9_.-] (and a leading '.') are written as %XX of
the UTF-8 encoding, so '../x', 'a/b', NUL and non-ASCII names are all plain
components and two different names never share a directory. An escaped name
longer than 200 bytes is cut and given a '~' and a SHA-256 suffix ('~' is
always escaped otherwise, so the forms cannot collide); the full name is then
read back from the metadata the directory holds (see LogManager).
"""

from __future__ import annotations

import hashlib
import string

_SAFE = frozenset((string.ascii_letters + string.digits + "_.-").encode("ascii"))
MAX_COMPONENT = 200


def escape_name(name: str) -> str:
    """The directory name for name."""
    raw = name.encode("utf-8", "surrogatepass")
    out = []
    for i, byte in enumerate(raw):
        if byte in _SAFE and not (i == 0 and byte == 0x2E):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    escaped = "".join(out) or "%"
    if len(escaped) <= MAX_COMPONENT:
        return escaped
    digest = hashlib.sha256(raw).hexdigest()[:32]
    head = escaped[:150]
    cut = head.rfind("%", len(head) - 2)
    if cut >= 0:
        head = head[:cut]
    return f"{head}~{digest}"


def unescape_name(directory: str) -> str | None:
    """The name a directory stands for, or None when it was shortened with a hash."""
    if "~" in directory:
        return None
    if directory == "%":
        return ""
    raw = bytearray()
    i = 0
    while i < len(directory):
        ch = directory[i]
        if ch == "%":
            raw.append(int(directory[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(ch))
            i += 1
    return raw.decode("utf-8", "surrogatepass")
