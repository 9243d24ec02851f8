"""The topic exchange: dot-separated words, ``*`` for one word, ``#`` for zero or more.

The word model is RabbitMQ's (``split_topic_key`` in rabbit_db_topic_exchange.erl):
the empty key has zero words, any other key is split at every ``.`` and keeps
its empty words (``"a..b"`` is ``a``, ``""``, ``b``; ``"a."`` is ``a``, ``""``).
Only a whole word ``*`` or ``#`` in a binding key is a wildcard.

Bindings live in a trie over the words of their keys, with the two wildcards
kept apart from the literal children, so matching a routing key visits only
the paths the key's own words can take: the cost grows with the key, not with
the number of bindings. Recent results are kept in a bounded cache that any
change to the bindings clears.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from .base import EMPTY, Binding, ExchangeRouter, PropertyGetter, ordered_destinations

DEFAULT_CACHE_SIZE = 4096


def split_words(key: str) -> list[str]:
    """RabbitMQ's split: the empty key is zero words, otherwise split at every dot."""
    return key.split(".") if key else []


def pattern_words(binding_key: str) -> list[str]:
    """The trie path of a binding key: its words with runs of ``#`` collapsed.

    ``#.#`` matches exactly what ``#`` matches, and collapsing keeps the
    matcher from trying every way to split the words between the two.
    """
    words: list[str] = []
    for word in split_words(binding_key):
        if word == "#" and words and words[-1] == "#":
            continue
        words.append(word)
    return words


class _Node:
    __slots__ = ("children", "star", "hash", "entries", "dests")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.hash: _Node | None = None
        # Bindings ending at this node: sequence number -> destination.
        self.entries: dict[int, Hashable] = {}
        self.dests: tuple[Any, ...] = EMPTY

    def is_empty(self) -> bool:
        return not self.entries and not self.children and self.star is None and self.hash is None


def _child(node: _Node, word: str) -> _Node | None:
    if word == "*":
        return node.star
    if word == "#":
        return node.hash
    return node.children.get(word)


def _collect(node: _Node, words: list[str], i: int, n: int, found: list[_Node]) -> None:
    """Append to ``found`` every node whose bindings match ``words[i:]`` from ``node``."""
    while True:
        hash_node = node.hash
        if hash_node is not None:
            if not hash_node.children and hash_node.star is None and hash_node.hash is None:
                # A trailing '#' matches whatever is left, in one step.
                found.append(hash_node)
            else:
                for j in range(i, n + 1):
                    _collect(hash_node, words, j, n, found)
        if i == n:
            if node.entries:
                found.append(node)
            return
        star = node.star
        if star is not None:
            _collect(star, words, i + 1, n, found)
        next_node = node.children.get(words[i])
        if next_node is None:
            return
        node = next_node
        i += 1


class TopicRouter(ExchangeRouter):
    """A word trie plus a bounded cache of routing key -> result."""

    type_name = "topic"

    def __init__(
        self, arguments: Mapping[str, Any] | None = None, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        super().__init__(arguments)
        self._root = _Node()
        self._cache: dict[str, tuple[Any, ...]] = {}
        self._cache_size = cache_size

    def _added(self, seq: int, binding: Binding) -> None:
        node = self._root
        for word in pattern_words(binding.binding_key):
            child = _child(node, word)
            if child is None:
                child = _Node()
                if word == "*":
                    node.star = child
                elif word == "#":
                    node.hash = child
                else:
                    node.children[word] = child
            node = child
        node.entries[seq] = binding.destination
        node.dests = ordered_destinations(node.entries)
        self._cache.clear()

    def _removed(self, seq: int, binding: Binding) -> None:
        path: list[tuple[_Node, str]] = []
        node = self._root
        for word in pattern_words(binding.binding_key):
            child = _child(node, word)
            assert child is not None, "a stored binding always has its trie path"
            path.append((node, word))
            node = child
        del node.entries[seq]
        node.dests = ordered_destinations(node.entries) if node.entries else EMPTY
        # Prune the nodes this binding alone kept alive, deepest first.
        while path and node.is_empty():
            parent, word = path.pop()
            if word == "*":
                parent.star = None
            elif word == "#":
                parent.hash = None
            else:
                del parent.children[word]
            node = parent
        self._cache.clear()

    def route(
        self,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        properties: PropertyGetter | None = None,
    ) -> tuple[Any, ...]:
        cache = self._cache
        result = cache.get(routing_key)
        if result is not None:
            return result
        result = self.match(routing_key)
        if self._cache_size > 0:
            if len(cache) >= self._cache_size:
                # Evict the oldest entry (dicts keep insertion order).
                del cache[next(iter(cache))]
            cache[routing_key] = result
        return result

    def match(self, routing_key: str) -> tuple[Any, ...]:
        """Walk the trie for ``routing_key``, bypassing the cache."""
        words = routing_key.split(".") if routing_key else []
        found: list[_Node] = []
        _collect(self._root, words, 0, len(words), found)
        if not found:
            return EMPTY
        if len(found) == 1:
            return found[0].dests
        merged: dict[int, Hashable] = {}
        for node in found:
            merged.update(node.entries)
        return ordered_destinations(merged)
