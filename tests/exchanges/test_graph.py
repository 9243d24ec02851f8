"""Walking exchange-to-exchange bindings and alternate exchanges."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from warrenmq.exchanges import (
    DirectRouter,
    ExchangeRouter,
    FanoutRouter,
    TopicRouter,
    make_exchange_type,
    route_graph,
)


@dataclass(frozen=True)
class X:
    """An exchange name, as the broker might pass it."""

    name: str


class World:
    """A tiny broker stand-in: exchanges by name, their routers and alternates."""

    def __init__(self) -> None:
        self.routers: dict[X, ExchangeRouter] = {}
        self.alternates: dict[X, X] = {}
        self.calls: list[X] = []

    def add(self, name: str, type_name: str, alternate: str | None = None) -> ExchangeRouter:
        router = make_exchange_type(type_name)
        assert isinstance(router, ExchangeRouter)
        self.routers[X(name)] = router
        if alternate is not None:
            self.alternates[X(name)] = X(alternate)
        return router

    def publish(self, name: str, routing_key: str = "") -> tuple:
        def route_exchange(x: X):
            self.calls.append(x)
            router = self.routers.get(x)
            return None if router is None else router.route(routing_key)

        return route_graph(
            X(name), route_exchange, lambda d: isinstance(d, X), self.alternates.get
        )


def test_straight_to_queues() -> None:
    world = World()
    world.add("x", "fanout").bind("q1")
    world.routers[X("x")].bind("q2")
    assert world.publish("x") == ("q1", "q2")


def test_exchange_to_exchange_chain() -> None:
    world = World()
    world.add("a", "direct").bind(X("b"), "k")
    world.add("b", "topic").bind("q", "#")
    assert world.publish("a", "k") == ("q",)
    assert world.publish("a", "other") == ()


def test_queues_come_in_breadth_first_order_each_once() -> None:
    world = World()
    a = world.add("a", "fanout")
    a.bind("q1")
    a.bind(X("b"))
    a.bind(X("c"))
    world.add("b", "fanout").bind("q2")
    c = world.add("c", "fanout")
    c.bind("q1")
    c.bind("q3")
    world.routers[X("b")].bind(X("d"))
    world.add("d", "fanout").bind("q4")
    assert world.publish("a") == ("q1", "q2", "q3", "q4")


def test_cycles_terminate_and_each_exchange_routes_once() -> None:
    world = World()
    world.add("a", "fanout").bind(X("b"))
    world.add("b", "fanout").bind(X("a"))
    world.routers[X("a")].bind("qa")
    world.routers[X("b")].bind("qb")
    world.routers[X("b")].bind(X("b"))
    assert world.publish("a") == ("qa", "qb")
    assert world.calls == [X("a"), X("b")]


def test_alternate_exchange_takes_unroutable_messages() -> None:
    world = World()
    world.add("main", "direct", alternate="ae").bind("q-main", "known")
    world.add("ae", "fanout").bind("q-unrouted")
    assert world.publish("main", "known") == ("q-main",)
    assert world.publish("main", "unknown") == ("q-unrouted",)


def test_alternate_is_not_used_when_a_binding_matched_an_exchange_that_routes_nowhere() -> None:
    world = World()
    world.add("main", "direct", alternate="ae").bind(X("empty"), "k")
    world.add("empty", "direct")
    world.add("ae", "fanout").bind("q-unrouted")
    assert world.publish("main", "k") == ()


def test_alternate_of_an_exchange_reached_through_a_binding_is_used() -> None:
    world = World()
    world.add("main", "fanout").bind(X("inner"))
    world.add("inner", "direct", alternate="inner-ae").bind("q", "k")
    world.add("inner-ae", "fanout").bind("q-inner-unrouted")
    assert world.publish("main", "k") == ("q",)
    assert world.publish("main", "zzz") == ("q-inner-unrouted",)


def test_alternate_cycles_terminate() -> None:
    world = World()
    world.add("a", "direct", alternate="b")
    world.add("b", "direct", alternate="a")
    assert world.publish("a", "k") == ()
    assert world.calls == [X("a"), X("b")]


def test_alternate_chain() -> None:
    world = World()
    world.add("a", "direct", alternate="b")
    world.add("b", "direct", alternate="c")
    world.add("c", "fanout").bind("q")
    assert world.publish("a", "k") == ("q",)


def test_missing_exchanges_are_skipped_with_their_alternates() -> None:
    world = World()
    world.add("a", "fanout").bind(X("gone"))
    world.routers[X("a")].bind("q")
    world.alternates[X("gone")] = X("a")
    assert world.publish("a") == ("q",)
    assert world.publish("nothing-here") == ()
    world.add("b", "direct", alternate="gone-too")
    assert world.publish("b", "k") == ()


def test_unroutable_without_alternate() -> None:
    world = World()
    world.add("a", "topic").bind("q", "a.*")
    assert world.publish("a", "b.c") == ()


def test_without_alternate_function() -> None:
    router = DirectRouter()
    assert route_graph("x", lambda x: router.route("k"), lambda d: d == "x") == ()


# --- property: the walk agrees with a naive fixpoint over a random graph

NAMES = ["a", "b", "c", "d"]


@settings(max_examples=300, deadline=None)
@given(
    edges=st.lists(
        st.tuples(st.sampled_from(NAMES), st.one_of(st.sampled_from(NAMES).map(X), st.sampled_from(["q1", "q2", "q3"]))),
        max_size=12,
    ),
    alternates=st.dictionaries(st.sampled_from(NAMES), st.sampled_from(NAMES + ["gone"]), max_size=4),
    start=st.sampled_from(NAMES),
)
def test_walk_matches_a_naive_model(edges, alternates, start) -> None:
    routers: dict[X, FanoutRouter] = {X(n): FanoutRouter() for n in NAMES}
    for source, dest in edges:
        routers[X(source)].bind(dest)
    alt = {X(k): X(v) for k, v in alternates.items()}

    # Naive model: which exchanges are reached, then which queues they route to.
    reached = {X(start)}
    changed = True
    while changed:
        changed = False
        for x in list(reached):
            dests = routers[x].route("") if x in routers else ()
            nexts = [d for d in dests if isinstance(d, X)]
            if not dests and x in alt:
                nexts = [alt[x]]
            for n in nexts:
                if n not in reached:
                    reached.add(n)
                    changed = True
    expected = {d for x in reached if x in routers for d in routers[x].route("") if not isinstance(d, X)}

    result = route_graph(
        X(start),
        lambda x: routers[x].route("") if x in routers else None,
        lambda d: isinstance(d, X),
        alt.get,
    )
    assert len(result) == len(set(result))
    assert set(result) == expected


def test_real_routers_together() -> None:
    topic = TopicRouter()
    fan = FanoutRouter()
    topic.bind("audit", "#")
    topic.bind("eu-fan", "eu.*")
    fan.bind("eu-1")
    fan.bind("eu-2")
    fan.bind("audit")
    routers = {"topic": topic, "eu-fan": fan}
    result = route_graph(
        "topic",
        lambda x: routers[x].route("eu.orders"),
        lambda d: d in routers,
    )
    assert result == ("audit", "eu-1", "eu-2")
