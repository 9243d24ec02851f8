"""A bounded memo of recent routing results, cheap on hits and on eviction."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class RecentResults:
    """Key -> result in two generations of at most ``size // 2`` entries each.

    New results go into ``young``; when it is full it becomes ``old`` and the
    previous ``old`` is dropped whole. A hit in ``old`` is copied back into
    ``young``, so keys in steady use survive. Unlike evicting one entry at a
    time from the front of a dict (which scans past the deleted slots), every
    operation is O(1). Routers read ``young`` directly on their fast path.
    """

    __slots__ = ("young", "old", "_half")

    def __init__(self, size: int) -> None:
        self.young: dict[Hashable, Any] = {}
        self.old: dict[Hashable, Any] = {}
        self._half = max(size // 2, 1) if size > 0 else 0

    def recall(self, key: Hashable) -> Any:
        """The result from the older generation, or None; refreshes it on a hit."""
        result = self.old.get(key)
        if result is not None:
            self.put(key, result)
        return result

    def put(self, key: Hashable, result: Any) -> None:
        if not self._half:
            return
        young = self.young
        young[key] = result
        if len(young) >= self._half:
            self.old = young
            self.young = {}

    def clear(self) -> None:
        self.young = {}
        self.old = {}

    def __len__(self) -> int:
        return len(self.young) + len(self.old)
