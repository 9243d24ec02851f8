"""Following exchange-to-exchange bindings and alternate exchanges, as RabbitMQ does.

rabbit_exchange.erl routes a message by a breadth-first walk: each exchange
reached routes the message with its own type; the exchanges among the
results are walked in turn, each at most once, so cycles end; the queues are
the answer. An exchange whose own routing found nothing (no binding matched)
hands the message to its alternate exchange, if it has one; this holds for
every exchange reached, not only the one published to, and an exchange whose
bindings matched only exchanges (even already visited ones, or ones that then
route nowhere) does not use its alternate. An exchange that no longer exists
is skipped, alternate and all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

D = TypeVar("D", bound=Hashable)


def route_graph(
    start: D,
    route_exchange: Callable[[D], Sequence[D] | None],
    is_exchange: Callable[[D], bool],
    alternate_of: Callable[[D], D | None] | None = None,
) -> tuple[D, ...]:
    """The final (non-exchange) destinations of a message published to ``start``.

    ``route_exchange(x)`` routes the message through exchange ``x`` alone (the
    broker calls that exchange's router), returning its distinct destinations,
    or None when ``x`` does not exist. ``is_exchange(d)`` tells exchanges apart
    from queues among destinations. ``alternate_of(x)`` is ``x``'s alternate
    exchange or None. The result lists each destination once, in the order
    the walk first reached it; it is empty when the message is unroutable.
    """
    first = route_exchange(start)
    if first is None:
        return ()
    if first and not any(is_exchange(dest) for dest in first):
        # The common case: one exchange routing straight to queues.
        return tuple(first)
    seen: set[Any] = {start}
    pending: deque[D] = deque()
    out: dict[D, None] = {}
    dests: Sequence[D] | None = first
    current = start
    while True:
        if dests is not None:
            if dests:
                for dest in dests:
                    if is_exchange(dest):
                        if dest not in seen:
                            seen.add(dest)
                            pending.append(dest)
                    else:
                        out[dest] = None
            elif alternate_of is not None:
                alternate = alternate_of(current)
                if alternate is not None and alternate not in seen:
                    seen.add(alternate)
                    pending.append(alternate)
        if not pending:
            return tuple(out)
        current = pending.popleft()
        dests = route_exchange(current)
