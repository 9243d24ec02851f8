"""What every exchange type shares: the binding table, the error values, the route contract.

A router owns the bindings of one exchange. The broker binds and unbinds
destinations (opaque hashable objects: queues or exchanges) and calls
``route`` for every published message; each type keeps an index shaped for
its own matching rule so that ``route`` does as little as possible.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from .fields import freeze_table

#: AMQP reply code RabbitMQ 4.x uses for every refusal made here (a channel error).
PRECONDITION_FAILED = 406

#: The shared "routes nowhere" result.
EMPTY: tuple[Any, ...] = ()

#: Looks up one basic property by its name ("message_id", "correlation_id",
#: "timestamp", ...), returning None when the message does not carry it.
PropertyGetter = Callable[[str], Any]


class Binding(NamedTuple):
    """One binding as the broker declared it."""

    destination: Hashable
    binding_key: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UnknownExchangeType:
    """Exchange.Declare named a type this broker does not have."""

    type_name: str
    reply_code: ClassVar[int] = PRECONDITION_FAILED

    @property
    def reply_text(self) -> str:
        return f"unknown exchange type '{self.type_name}'"


@dataclass(frozen=True, slots=True)
class InvalidArguments:
    """Exchange arguments or a binding that the exchange type refuses."""

    reply_text: str
    reply_code: ClassVar[int] = PRECONDITION_FAILED


ExchangeError = UnknownExchangeType | InvalidArguments


class BindingRejected(ValueError):
    """Raised by ``bind`` when ``validate_binding`` would have refused the binding."""

    def __init__(self, error: InvalidArguments) -> None:
        super().__init__(error.reply_text)
        self.error = error


class ExchangeRouter:
    """The bindings of one exchange, and routing over them.

    Subclasses keep their index up to date in ``_added`` / ``_removed`` and
    implement ``route``. Every binding gets a sequence number when it is
    added; ``route`` returns destinations ordered by the sequence number of
    the first binding that matched, each destination once, as a tuple that
    may be shared between calls (never mutate it).
    """

    type_name: ClassVar[str] = ""
    #: Whether ``route`` reads ``headers``: when False the broker may pass None
    #: and skip decoding the message properties.
    needs_headers: bool = False
    #: Whether ``route`` calls the ``properties`` getter.
    needs_properties: bool = False

    def __init__(self, arguments: Mapping[str, Any] | None = None) -> None:
        self.arguments: Mapping[str, Any] = dict(arguments or {})
        self._bindings: dict[tuple[Any, ...], tuple[int, Binding]] = {}
        self._by_destination: dict[Hashable, dict[tuple[Any, ...], None]] = {}
        self._next_seq = 0

    # -- validation ---------------------------------------------------------------

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any]) -> InvalidArguments | None:
        """The exchange's declare-time arguments; None when acceptable."""
        return None

    def validate_binding(
        self, binding_key: str, arguments: Mapping[str, Any]
    ) -> InvalidArguments | None:
        """A binding this exchange would refuse (406), or None when acceptable."""
        return None

    # -- the binding table --------------------------------------------------------

    def bind(
        self,
        destination: Hashable,
        binding_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> bool:
        """Add a binding; False when the same binding already exists.

        Raises BindingRejected when ``validate_binding`` refuses it.
        """
        args = {} if arguments is None else arguments
        error = self.validate_binding(binding_key, args)
        if error is not None:
            raise BindingRejected(error)
        identity = (destination, binding_key, freeze_table(args))
        if identity in self._bindings:
            return False
        seq = self._next_seq
        self._next_seq = seq + 1
        binding = Binding(destination, binding_key, dict(args))
        self._bindings[identity] = (seq, binding)
        self._by_destination.setdefault(destination, {})[identity] = None
        self._added(seq, binding)
        return True

    def unbind(
        self,
        destination: Hashable,
        binding_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> bool:
        """Remove a binding; False when there was no such binding."""
        identity = (destination, binding_key, freeze_table({} if arguments is None else arguments))
        return self._drop(identity)

    def unbind_destination(self, destination: Hashable) -> tuple[Binding, ...]:
        """Remove every binding to ``destination`` (a deleted queue or exchange)."""
        identities = self._by_destination.get(destination)
        if not identities:
            return ()
        removed = tuple(self._bindings[identity][1] for identity in identities)
        for identity in list(identities):
            self._drop(identity)
        return removed

    def bindings(self) -> tuple[Binding, ...]:
        """All bindings, oldest first."""
        return tuple(binding for _, binding in self._bindings.values())

    def __len__(self) -> int:
        return len(self._bindings)

    def _drop(self, identity: tuple[Any, ...]) -> bool:
        entry = self._bindings.pop(identity, None)
        if entry is None:
            return False
        seq, binding = entry
        same_destination = self._by_destination[binding.destination]
        del same_destination[identity]
        if not same_destination:
            del self._by_destination[binding.destination]
        self._removed(seq, binding)
        return True

    # -- per type -------------------------------------------------------------------

    def _added(self, seq: int, binding: Binding) -> None:
        raise NotImplementedError

    def _removed(self, seq: int, binding: Binding) -> None:
        raise NotImplementedError

    def route(
        self,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        properties: PropertyGetter | None = None,
    ) -> tuple[Any, ...]:
        """The destinations of one message, in a stable order, each once."""
        raise NotImplementedError


def ordered_destinations(entries: Mapping[int, Hashable]) -> tuple[Any, ...]:
    """Destinations of ``entries`` (sequence number -> destination), oldest first, once each."""
    if len(entries) == 1:
        return tuple(entries.values())
    return tuple(dict.fromkeys(entries[seq] for seq in sorted(entries)))
