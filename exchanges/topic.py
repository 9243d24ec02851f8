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

from .base import EMPTY, Binding, ExchangeRouter, PropertyGetter
from .cache import RecentResults

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
    __slots__ = ("children", "star", "hash", "leaf", "seqs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.hash: _Node | None = None
        self.leaf = True  # no children, no star, no hash: matching stops here
        # Sequence numbers of the bindings whose key ends at this node.
        self.seqs: tuple[int, ...] = ()

    def update_leaf(self) -> None:
        self.leaf = not self.children and self.star is None and self.hash is None


def _child(node: _Node, word: str) -> _Node | None:
    if word == "*":
        return node.star
    if word == "#":
        return node.hash
    return node.children.get(word)


def _collect(node: _Node, words: list[str], i: int, n: int, found: list[int]) -> None:
    """Add to ``found`` the binding numbers at every node matching ``words[i:]`` from ``node``.

    A binding may be added more than once; the caller removes repeats.
    Leaves are handled where they are found rather than by a call, which
    is most of the trie in practice (keys ending in a literal, '*' or '#').
    """
    while True:
        hash_node = node.hash
        if hash_node is not None:
            # '#' absorbs zero or more of the remaining words: its own bindings
            # match whatever is left, its subtrie continues at every position.
            found += hash_node.seqs
            if not hash_node.leaf:
                after = hash_node.children
                star = hash_node.star
                for j in range(i, n):
                    if after:
                        child = after.get(words[j])
                        if child is not None:
                            if child.leaf:
                                if j + 1 == n:
                                    found += child.seqs
                            else:
                                _collect(child, words, j + 1, n, found)
                    if star is not None:
                        if star.leaf:
                            if j + 1 == n:
                                found += star.seqs
                        else:
                            _collect(star, words, j + 1, n, found)
        if i == n:
            found += node.seqs
            return
        star = node.star
        if star is not None:
            if star.leaf:
                if i + 1 == n:
                    found += star.seqs
            else:
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
        self._destination_of: dict[int, Hashable] = {}
        self._cache = RecentResults(cache_size)

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
                node.leaf = False
            node = child
        node.seqs += (seq,)
        self._destination_of[seq] = binding.destination
        self._cache.clear()

    def _removed(self, seq: int, binding: Binding) -> None:
        path: list[tuple[_Node, str]] = []
        node = self._root
        for word in pattern_words(binding.binding_key):
            child = _child(node, word)
            assert child is not None, "a stored binding always has its trie path"
            path.append((node, word))
            node = child
        node.seqs = tuple(s for s in node.seqs if s != seq)
        del self._destination_of[seq]
        # Prune the nodes this binding alone kept alive, deepest first.
        while path and node.leaf and not node.seqs:
            parent, word = path.pop()
            if word == "*":
                parent.star = None
            elif word == "#":
                parent.hash = None
            else:
                del parent.children[word]
            parent.update_leaf()
            node = parent
        self._cache.clear()

    def route(
        self,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        properties: PropertyGetter | None = None,
    ) -> tuple[Any, ...]:
        result = self._cache.young.get(routing_key)
        if result is not None:
            return result
        result = self._cache.recall(routing_key)
        if result is None:
            result = self.match(routing_key)
            self._cache.put(routing_key, result)
        return result

    def match(self, routing_key: str) -> tuple[Any, ...]:
        """Walk the trie for ``routing_key``, bypassing the cache."""
        words = routing_key.split(".") if routing_key else []
        found: list[int] = []
        _collect(self._root, words, 0, len(words), found)
        if not found:
            return EMPTY
        # Oldest binding first; all in C: sort ints, map to destinations, drop repeats.
        found.sort()
        return tuple(dict.fromkeys(map(self._destination_of.__getitem__, found)))
