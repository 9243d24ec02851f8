"""The fanout exchange: every binding matches, the routing key is ignored."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from .base import Binding, ExchangeRouter, PropertyGetter, ordered_destinations


class FanoutRouter(ExchangeRouter):
    """One precomputed tuple, rebuilt lazily after the bindings change."""

    type_name = "fanout"

    def __init__(self, arguments: Mapping[str, Any] | None = None) -> None:
        super().__init__(arguments)
        self._entries: dict[int, Hashable] = {}
        self._all: tuple[Any, ...] | None = ()

    def _added(self, seq: int, binding: Binding) -> None:
        self._entries[seq] = binding.destination
        self._all = None

    def _removed(self, seq: int, binding: Binding) -> None:
        del self._entries[seq]
        self._all = None

    def route(
        self,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        properties: PropertyGetter | None = None,
    ) -> tuple[Any, ...]:
        result = self._all
        if result is None:
            # Rebuilding on first use keeps binding N queues O(N), not O(N^2).
            result = self._all = ordered_destinations(self._entries)
        return result
