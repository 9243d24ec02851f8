"""The direct exchange: a message goes to the bindings whose key equals its routing key."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from .base import EMPTY, Binding, ExchangeRouter, PropertyGetter, ordered_destinations


class DirectRouter(ExchangeRouter):
    """A dict from binding key to the ready-made result tuple: one lookup per route."""

    type_name = "direct"

    def __init__(self, arguments: Mapping[str, Any] | None = None) -> None:
        super().__init__(arguments)
        self._entries: dict[str, dict[int, Hashable]] = {}
        self._index: dict[str, tuple[Any, ...]] = {}

    def _added(self, seq: int, binding: Binding) -> None:
        key = binding.binding_key
        entries = self._entries.setdefault(key, {})
        entries[seq] = binding.destination
        self._index[key] = ordered_destinations(entries)

    def _removed(self, seq: int, binding: Binding) -> None:
        key = binding.binding_key
        entries = self._entries[key]
        del entries[seq]
        if entries:
            self._index[key] = ordered_destinations(entries)
        else:
            del self._entries[key]
            del self._index[key]

    def route(
        self,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        properties: PropertyGetter | None = None,
    ) -> tuple[Any, ...]:
        return self._index.get(routing_key, EMPTY)
