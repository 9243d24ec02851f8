"""A virtual host: its exchanges and queues, and routing through them.

Routing is `exchanges/`'s job: an Exchange here wraps a router with the
settings RabbitMQ keeps for it (durable, auto-delete, internal, arguments,
alternate exchange) and the Exchange and Queue objects themselves are the
destinations the routers return. `route` follows exchange-to-exchange
bindings and alternate exchanges with `route_graph`, and decodes the
message headers only when an exchange on the way needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from warrenmq.exchanges import ExchangeRouter, route_graph

if TYPE_CHECKING:
    from .delayed import DelayedStore
    from .queue import Queue

DEFAULT_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)


@dataclass(eq=False)
class Exchange:
    """An exchange: settings plus its router (destinations are Exchange/Queue objects)."""

    vhost: str
    name: str
    type: str
    durable: bool
    auto_delete: bool
    internal: bool
    arguments: dict[str, Any]
    router: ExchangeRouter
    # Exchanges bound to this one as a destination (for delete and auto-delete).
    sources: set[Exchange] = field(default_factory=set)
    # An x-delayed-message exchange's held messages (broker/delayed.py); None for other types.
    delayed: DelayedStore | None = None
    # Messages published to this exchange by clients, and the queue copies they routed to.
    publish_in: int = 0
    publish_out: int = 0
    # The user who declared it through the management API ("" when not known).
    declared_by: str = ""

    @property
    def alternate(self) -> str | None:
        value = self.arguments.get("alternate-exchange")
        return value if isinstance(value, str) and value else None

    @property
    def builtin(self) -> bool:
        return self.name == "" or self.name.startswith("amq.")

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"Exchange({self.vhost!r}, {self.name!r}, {self.type})"


class VirtualHost:
    """Exchanges and queues of one vhost."""

    def __init__(self, name: str, description: str = "", tags: tuple[str, ...] = ()) -> None:
        self.name = name
        self.description = description
        self.tags = list(tags)
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        self.delayed_exchanges = 0  # how many are x-delayed-message (kept by the broker)
        # Message counters of this vhost's closed channels (open ones keep their own).
        self.counters: dict[str, int] = {}

    def route(
        self, exchange: Exchange, routing_key: str, headers_of: Callable[[], dict[str, Any] | None],
        properties_of: Callable[[str], Any], hold: Callable[[Exchange], bool] | None = None,
    ) -> tuple[Queue, ...]:  # fmt: skip
        """The queues a message published to exchange reaches now (each once).

        `hold(x)` is asked for each delayed exchange the walk reaches; when it
        answers True, x keeps the message for later (hold records that) and
        routes nowhere now. Without `hold`, delayed exchanges route at once,
        as their underlying type: that is how a held message is routed when due.
        """
        if exchange.name == "":
            queue = self.queues.get(routing_key)
            return (queue,) if queue is not None else ()
        cache: list[Any] = []

        def headers() -> dict[str, Any] | None:
            if not cache:
                cache.append(headers_of())
            return cache[0]

        def route_one(ex: Exchange) -> tuple[Any, ...] | None:
            if hold is not None and ex.delayed is not None and hold(ex):
                # Held. Answering with the exchange itself (already visited)
                # ends this branch without making it unroutable, so its
                # alternate exchange is not used.
                return (ex,)
            router = ex.router
            return router.route(
                routing_key,
                headers() if router.needs_headers else None,
                properties_of if router.needs_properties else None,
            )

        return route_graph(exchange, route_one, _is_exchange, self._alternate)

    def _alternate(self, exchange: Exchange) -> Exchange | None:
        name = exchange.alternate
        return self.exchanges.get(name) if name is not None else None

    def iter_queues(self) -> Iterator[Queue]:
        return iter(list(self.queues.values()))


def _is_exchange(destination: Any) -> bool:
    return isinstance(destination, Exchange)
