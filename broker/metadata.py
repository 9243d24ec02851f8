"""Durable definitions (vhosts, exchanges, queues, bindings) in a compacted log.

Each durable entity is one key of an OffsetsStore in the data directory
(internal/metadata): declaring writes its key, deleting writes a tombstone,
and at start the latest value of every key is replayed. Values are JSON;
AMQP arguments are kept as the encoded field table (hex), so every type a
client can send (decimals, timestamps, byte arrays, nested tables) comes
back exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pamqp import decode, encode

from warrenmq.logstore import LogConfig, LogManager, OffsetsStore

SEP = "\x00"


def encode_arguments(arguments: dict[str, Any] | None) -> str:
    return encode.field_table(arguments or {}).hex()


def decode_arguments(text: str) -> dict[str, Any]:
    return decode.field_table(bytes.fromhex(text))[1]


def _key(kind: str, *parts: str) -> bytes:
    return SEP.join((kind, *parts)).encode("utf-8", "surrogateescape")


class MetadataStore:
    """put/delete/list of durable entities; see the module docstring."""

    def __init__(self, manager: LogManager, fsync: str = "always") -> None:
        self.store: OffsetsStore = manager.offsets_store(
            "metadata", LogConfig(fsync=fsync, segment_bytes=4 * 1024 * 1024)
        )

    def put(self, kind: str, parts: tuple[str, ...], value: dict[str, Any]) -> int:
        return self.store.put(_key(kind, *parts), json.dumps(value, sort_keys=True).encode())

    def delete(self, kind: str, parts: tuple[str, ...]) -> int | None:
        return self.store.delete(_key(kind, *parts))

    def items(self, kind: str) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        prefix = (kind + SEP).encode()
        for key, value in sorted(self.store.items()):
            if key.startswith(prefix):
                parts = tuple(key.decode("utf-8", "surrogateescape").split(SEP)[1:])
                yield parts, json.loads(value)

    async def wait_durable(self, offset: int) -> None:
        await self.store.wait_durable(offset)
