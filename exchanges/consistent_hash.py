"""The ``x-consistent-hash`` exchange, as RabbitMQ's rabbitmq_consistent_hash_exchange plugin.

Each message goes to exactly one destination, picked by a hash of its
routing key, or of a header (exchange argument ``hash-header``) or one of
the properties ``message_id``, ``correlation_id``, ``timestamp``
(``hash-property``). The binding key is the destination's weight, a
positive integer.

Like the plugin (rabbit_exchange_type_consistent_hash.erl), the ring is a
row of buckets: each destination owns ``weight`` consecutive buckets,
appended in the order the destinations were bound, and a message's bucket is
chosen by jump consistent hashing (Lamping and Veach, 2014). Growing the row
moves a key only to the new buckets, so binding one more destination moves
about weight / total of the keys and leaves all others where they were.
Removing a destination closes the gap by shifting the later buckets down,
exactly as the plugin does.

A destination takes part once, with the weight of its oldest binding: the
plugin ignores a second binding of the same destination, and so do we for
routing (the binding is still listed, and takes over if the first goes).

The hash is CRC-32 of the value's bytes: stable across processes and
restarts, which Python's ``hash`` is not. It is not bit-compatible with the
plugin's ``erlang:phash2``; weights and stability are what clients rely on.
A message without the chosen header or property hashes like every other
such message, so all of them go to one destination, as the plugin documents.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Hashable, Mapping
from typing import Any
from zlib import crc32

from .base import EMPTY, Binding, ExchangeRouter, InvalidArguments, PropertyGetter
from .cache import RecentResults
from .fields import erlang_repr, strict_key, timestamp_seconds

HASH_PROPERTIES = ("correlation_id", "message_id", "timestamp")
DEFAULT_CACHE_SIZE = 4096

_MASK64 = 0xFFFF_FFFF_FFFF_FFFF
# What Erlang's list_to_integer/1 accepts: an optional sign, then ASCII digits.
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def jump_consistent_hash(key: int, buckets: int) -> int:
    """The bucket in ``range(buckets)`` for a 64-bit ``key`` (Lamping and Veach)."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & _MASK64
        jump = int((bucket + 1) * (2147483648.0 / ((key >> 33) + 1)))
    return bucket


def parse_weight(binding_key: str) -> int | InvalidArguments:
    """The weight a binding key stands for, or the 406 RabbitMQ gives for it."""
    if not isinstance(binding_key, str) or not _INTEGER.fullmatch(binding_key):
        return InvalidArguments(
            f"The binding key must be an integer: {erlang_repr(binding_key)}"
        )
    weight = int(binding_key)
    if weight < 1:
        return InvalidArguments("The binding key must be greater than 0")
    return weight


def hash_input(value: Any) -> bytes:
    """The bytes a header or property value is hashed by; a missing value is b""."""
    if value is None:
        return b""
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes | bytearray | memoryview):
        return b"x" + bytes(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b"i" + str(value).encode()
    if hasattr(value, "tzinfo"):  # a timestamp hashes as its seconds, like the plugin's
        return b"i" + str(int(timestamp_seconds(value))).encode()
    return b"?" + repr(strict_key(value)).encode("utf-8", "surrogatepass")


class ConsistentHashRouter(ExchangeRouter):
    """Weighted buckets, jump consistent hashing, and a bounded result cache."""

    type_name = "x-consistent-hash"

    def __init__(
        self, arguments: Mapping[str, Any] | None = None, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        super().__init__(arguments)
        error = self.validate_arguments(self.arguments)
        if error is not None:
            raise ValueError(error.reply_text)
        self.hash_header: str | None = self.arguments.get("hash-header")
        self.hash_property: str | None = self.arguments.get("hash-property")
        self.needs_headers = self.hash_header is not None
        self.needs_properties = self.hash_property is not None
        self._ends: list[int] = []  # cumulative bucket counts, one per destination
        self._owners: list[tuple[Any, ...]] = []  # the result tuple of each destination
        self._total = 0
        self._stale = False
        self._cache = RecentResults(cache_size)

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any]) -> InvalidArguments | None:
        header = arguments.get("hash-header")
        prop = arguments.get("hash-property")
        if header is not None and prop is not None:
            return InvalidArguments("hash-header and hash-property are mutually exclusive")
        if header is not None and not isinstance(header, str):
            return InvalidArguments(f"hash-header must be a string: {erlang_repr(header)}")
        if prop is not None and (not isinstance(prop, str) or prop not in HASH_PROPERTIES):
            shown = prop if isinstance(prop, str) else erlang_repr(prop)
            return InvalidArguments(f"Unsupported property: {shown}")
        return None

    def validate_binding(
        self, binding_key: str, arguments: Mapping[str, Any]
    ) -> InvalidArguments | None:
        weight = parse_weight(binding_key)
        return weight if isinstance(weight, InvalidArguments) else None

    def _added(self, seq: int, binding: Binding) -> None:
        self._stale = True
        self._cache.clear()

    _removed = _added

    def _rebuild(self) -> None:
        ends: list[int] = []
        owners: list[tuple[Any, ...]] = []
        seen: set[Hashable] = set()
        total = 0
        for _, binding in self._bindings.values():  # oldest first
            if binding.destination in seen:
                continue
            seen.add(binding.destination)
            total += int(binding.binding_key)
            ends.append(total)
            owners.append((binding.destination,))
        self._ends, self._owners, self._total = ends, owners, total
        self._stale = False

    def buckets(self) -> tuple[tuple[Any, int], ...]:
        """(destination, number of buckets) in ring order, for inspection."""
        if self._stale:
            self._rebuild()
        start = 0
        out = []
        for end, owner in zip(self._ends, self._owners, strict=True):
            out.append((owner[0], end - start))
            start = end
        return tuple(out)

    def route(
        self,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        properties: PropertyGetter | None = None,
    ) -> tuple[Any, ...]:
        if self._stale:
            self._rebuild()
        total = self._total
        if total == 0:
            return EMPTY
        if self.hash_header is not None:
            value = headers.get(self.hash_header) if headers else None
            cache_key: Any = crc32(hash_input(value))
        elif self.hash_property is not None:
            value = properties(self.hash_property) if properties is not None else None
            cache_key = crc32(hash_input(value))
        else:
            cache_key = routing_key
        result = self._cache.young.get(cache_key)
        if result is not None:
            return result
        result = self._cache.recall(cache_key)
        if result is None:
            digest = cache_key if type(cache_key) is int else crc32(routing_key.encode())
            bucket = jump_consistent_hash(digest, total)
            result = self._owners[bisect_right(self._ends, bucket)]
            self._cache.put(cache_key, result)
        return result
