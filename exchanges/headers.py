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
    __slots__ = ("seq", "pairs")

    def __init__(self, seq: int, pairs: tuple[tuple[str, Any], ...]) -> None:
        self.seq = seq
        self.pairs = pairs

    def matches(self, keys: Mapping[str, Any]) -> bool:
        for name, wanted in self.pairs:
            if name not in keys:
                return False
            if wanted is not PRESENT and keys[name] != wanted:
                return False
        return True


class _Slot:
    """Everything indexed under one header name."""

    __slots__ = ("any_present", "any_values", "all_present", "all_values", "size")

    def __init__(self) -> None:
        # any-bindings satisfied by the header's presence / by one of its values
        self.any_present: tuple[int, ...] = ()
        self.any_values: dict[Any, tuple[int, ...]] = {}
        # all-bindings anchored on this header, still to be checked in full
        self.all_present: tuple[_AllBinding, ...] = ()
        self.all_values: dict[Any, tuple[_AllBinding, ...]] = {}
        self.size = 0


def _without(items: tuple[Any, ...], item: Any) -> tuple[Any, ...]:
    return tuple(x for x in items if x != item)


class HeadersRouter(ExchangeRouter):
    """Bindings indexed by the header (name, value) pairs they need."""

    type_name = "headers"
    needs_headers = True

    def __init__(self, arguments: Mapping[str, Any] | None = None) -> None:
        super().__init__(arguments)
        self._destination_of: dict[int, Hashable] = {}
        self._all_of: dict[int, _AllBinding] = {}
        self._always: tuple[int, ...] = ()  # all-bindings with no terms: match everything
        self._always_dests: tuple[Any, ...] = EMPTY
        self._slots: dict[str, _Slot] = {}

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

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = _Slot()
        return slot

    def _release(self, name: str, slot: _Slot) -> None:
        slot.size -= 1
        if not slot.size:
            del self._slots[name]

    def _added(self, seq: int, binding: Binding) -> None:
        self._destination_of[seq] = binding.destination
        is_all, pairs = binding_terms(binding.arguments)
        if is_all and not pairs:
            self._always += (seq,)
            self._always_dests = self._destinations(list(self._always))
        elif is_all:
            name, key = self._anchor(pairs)
            slot = self._slot(name)
            entry = self._all_of[seq] = _AllBinding(seq, pairs)
            if key is PRESENT:
                slot.all_present += (entry,)
            else:
                slot.all_values[key] = slot.all_values.get(key, ()) + (entry,)
            slot.size += 1
        else:
            for name, key in pairs:
                slot = self._slot(name)
                if key is PRESENT:
                    slot.any_present += (seq,)
                else:
                    slot.any_values[key] = slot.any_values.get(key, ()) + (seq,)
                slot.size += 1

    def _removed(self, seq: int, binding: Binding) -> None:
        is_all, pairs = binding_terms(binding.arguments)
        if is_all and not pairs:
            self._always = _without(self._always, seq)
            self._always_dests = self._destinations(list(self._always))
        elif is_all:
            name, key = self._anchor(pairs)
            slot = self._slots[name]
            entry = self._all_of.pop(seq)
            if key is PRESENT:
                slot.all_present = _without(slot.all_present, entry)
            else:
                rest = _without(slot.all_values[key], entry)
                if rest:
                    slot.all_values[key] = rest
                else:
                    del slot.all_values[key]
            self._release(name, slot)
        else:
            for name, key in pairs:
                slot = self._slots[name]
                if key is PRESENT:
                    slot.any_present = _without(slot.any_present, seq)
                else:
                    rest = _without(slot.any_values[key], seq)
                    if rest:
                        slot.any_values[key] = rest
                    else:
                        del slot.any_values[key]
                self._release(name, slot)
        del self._destination_of[seq]

    def _destinations(self, seqs: list[int]) -> tuple[Any, ...]:
        # Oldest binding first, each destination once, all in C.
        seqs.sort()
        return tuple(dict.fromkeys(map(self._destination_of.__getitem__, seqs)))

    def route(
        self,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        properties: PropertyGetter | None = None,
    ) -> tuple[Any, ...]:
        slots = self._slots
        if not headers or not slots:
            return self._always_dests
        found = list(self._always)
        keys: dict[str, Any] = {}
        candidates: list[_AllBinding] = []
        for name, value in headers.items():
            kind = type(value)
            key = value if kind is str or kind is int or kind is float else match_key(value)
            keys[name] = key
            slot = slots.get(name)
            if slot is None:
                continue
            found += slot.any_present
            hit = slot.any_values.get(key)
            if hit:
                found += hit
            candidates += slot.all_present
            maybe = slot.all_values.get(key)
            if maybe:
                candidates += maybe
        for candidate in candidates:
            if candidate.matches(keys):
                found.append(candidate.seq)
        if not found:
            return EMPTY
        return self._destinations(found)
