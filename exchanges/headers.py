"""The headers exchange: bindings match on the message's header table, not its key.

Semantics follow rabbit_exchange_type_headers.erl:

* ``x-match`` is ``all`` (the default), ``any``, ``all-with-x`` or ``any-with-x``;
  any other value is refused when binding.
* The binding arguments that take part are those not starting with ``x-``;
  the ``-with-x`` forms also use the ``x-`` ones (never ``x-match`` itself).
* ``all``: every taking-part argument matches. With none, every message matches.
  ``any``: at least one matches. With none, no message matches.
* An argument matches when the header is present and its value equals the
  binding value (see ``fields.match_key``); a void (None) binding value
  matches the mere presence of the header.

Rather than testing every binding against every message, each binding is
indexed under the header (name, value) pairs that can make it match: an
``any`` binding under all of its pairs (one hit is enough), an ``all``
binding under one of them (then checked in full). A message looks up only
its own headers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from .base import EMPTY, Binding, ExchangeRouter, InvalidArguments, PropertyGetter
from .fields import amqp_type_name, erlang_repr, match_key

X_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")

#: Stands for a void binding value: the header only has to be present.
PRESENT: Any = object()


def validate_x_match(arguments: Mapping[str, Any]) -> InvalidArguments | None:
    """Refuse an ``x-match`` that is not one of the four modes, as RabbitMQ does (406)."""
    if "x-match" not in arguments:
        return None
    value = arguments["x-match"]
    if isinstance(value, str | bytes):
        if value in X_MATCH_MODES:
            return None
        return InvalidArguments(
            f"Invalid x-match field value {erlang_repr(value)}; "
            "expected all, any, all-with-x, or any-with-x"
        )
    return InvalidArguments(
        f"Invalid x-match field type {amqp_type_name(value)} "
        f"(value {erlang_repr(value)}); expected longstr"
    )


def binding_terms(arguments: Mapping[str, Any]) -> tuple[bool, tuple[tuple[str, Any], ...]]:
    """(is an ``all`` binding, the (header name, match key or PRESENT) pairs that take part)."""
    mode = arguments.get("x-match", "all")
    with_x = mode in ("all-with-x", "any-with-x")
    pairs = tuple(
        (name, PRESENT if value is None else match_key(value))
        for name, value in arguments.items()
        if name != "x-match" and (with_x or not name.startswith("x-"))
    )
    return mode in ("all", "all-with-x"), pairs


class _AllBinding:
    __slots__ = ("seq", "destination", "pairs")

    def __init__(self, seq: int, destination: Hashable, pairs: tuple[tuple[str, Any], ...]):
        self.seq = seq
        self.destination = destination
        self.pairs = pairs

    def matches(self, keys: Mapping[str, Any]) -> bool:
        for name, wanted in self.pairs:
            if name not in keys:
                return False
            if wanted is not PRESENT and keys[name] != wanted:
                return False
        return True


def _index_add(index: dict[str, dict[Any, dict[int, Any]]], name: str, key: Any, seq: int,
               item: Any) -> None:
    index.setdefault(name, {}).setdefault(key, {})[seq] = item


def _index_remove(index: dict[str, dict[Any, dict[int, Any]]], name: str, key: Any,
                  seq: int) -> None:
    by_key = index[name]
    items = by_key[key]
    del items[seq]
    if not items:
        del by_key[key]
        if not by_key:
            del index[name]


class HeadersRouter(ExchangeRouter):
    """Bindings indexed by the header (name, value) pairs they need."""

    type_name = "headers"
    needs_headers = True

    def __init__(self, arguments: Mapping[str, Any] | None = None) -> None:
        super().__init__(arguments)
        # all-mode bindings with no terms: match every message.
        self._always: dict[int, Hashable] = {}
        self._always_dests: tuple[Any, ...] | None = EMPTY
        # any-mode: header name -> match key (or PRESENT) -> seq -> destination.
        self._any: dict[str, dict[Any, dict[int, Hashable]]] = {}
        # all-mode: header name -> match key (or PRESENT) -> seq -> binding to check.
        self._all: dict[str, dict[Any, dict[int, _AllBinding]]] = {}

    def validate_binding(
        self, binding_key: str, arguments: Mapping[str, Any]
    ) -> InvalidArguments | None:
        return validate_x_match(arguments)

    @staticmethod
    def _anchor(pairs: tuple[tuple[str, Any], ...]) -> tuple[str, Any]:
        # Index an all-binding under a valued pair when it has one: far more selective.
        for name, key in pairs:
            if key is not PRESENT:
                return name, key
        return pairs[0]

    def _added(self, seq: int, binding: Binding) -> None:
        is_all, pairs = binding_terms(binding.arguments)
        if is_all:
            if not pairs:
                self._always[seq] = binding.destination
                self._always_dests = None
                return
            name, key = self._anchor(pairs)
            _index_add(self._all, name, key, seq, _AllBinding(seq, binding.destination, pairs))
        else:
            for name, key in pairs:
                _index_add(self._any, name, key, seq, binding.destination)

    def _removed(self, seq: int, binding: Binding) -> None:
        is_all, pairs = binding_terms(binding.arguments)
        if is_all:
            if not pairs:
                del self._always[seq]
                self._always_dests = None
                return
            name, key = self._anchor(pairs)
            _index_remove(self._all, name, key, seq)
        else:
            for name, key in pairs:
                _index_remove(self._any, name, key, seq)

    def route(
        self,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        properties: PropertyGetter | None = None,
    ) -> tuple[Any, ...]:
        always = self._always_dests
        if always is None:
            always = self._always_dests = tuple(dict.fromkeys(self._always.values()))
        if not headers or (not self._any and not self._all):
            return always
        hits: dict[int, Hashable] = dict(self._always) if self._always else {}
        keys: dict[str, Any] = {}
        any_index = self._any
        all_index = self._all
        candidates: list[_AllBinding] = []
        for name, value in headers.items():
            key = keys[name] = match_key(value)
            by_key = any_index.get(name)
            if by_key is not None:
                found = by_key.get(PRESENT)
                if found:
                    hits.update(found)
                found = by_key.get(key)
                if found:
                    hits.update(found)
            by_key = all_index.get(name)
            if by_key is not None:
                found_all = by_key.get(PRESENT)
                if found_all:
                    candidates.extend(found_all.values())
                found_all = by_key.get(key)
                if found_all:
                    candidates.extend(found_all.values())
        for candidate in candidates:
            if candidate.matches(keys):
                hits[candidate.seq] = candidate.destination
        if not hits:
            return EMPTY
        if len(hits) == 1:
            return tuple(hits.values())
        return tuple(dict.fromkeys(hits[seq] for seq in sorted(hits)))
