"""Direct and fanout routing against a model made of plain lists and sets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from warrenmq.exchanges import DirectRouter, FanoutRouter

destinations = st.sampled_from(["q0", "q1", "q2", "q3"])
keys = st.sampled_from(["", "a", "b", "a.b", "A", "a ", "é"])
arguments = st.sampled_from([{}, {"x-tag": 1}, {"x-tag": 1.0}, {"x-tag": True}])
ops = st.lists(
    st.tuples(st.sampled_from(["bind", "bind", "unbind", "drop"]), destinations, keys, arguments, keys),
    max_size=60,
)


def run_model(router, ops, expected):
    live: list[tuple[str, str, tuple]] = []
    for op, destination, key, args, routing_key in ops:
        identity = (destination, key, tuple(sorted((k, type(v), v) for k, v in args.items())))
        if op == "bind":
            assert router.bind(destination, key, args) is (identity not in live)
            if identity not in live:
                live.append(identity)
        elif op == "unbind":
            assert router.unbind(destination, key, args) is (identity in live)
            if identity in live:
                live.remove(identity)
        else:
            removed = router.unbind_destination(destination)
            assert len(removed) == sum(1 for b in live if b[0] == destination)
            live = [b for b in live if b[0] != destination]
        result = router.route(routing_key)
        assert isinstance(result, tuple)
        assert result == expected(live, routing_key)
        assert len(set(result)) == len(result)
    assert len(router) == len(live)


@settings(max_examples=500, deadline=None)
@given(ops=ops)
def test_direct_routes_exactly_the_equal_keys(ops) -> None:
    def expected(live, routing_key):
        return tuple(dict.fromkeys(d for d, k, _ in live if k == routing_key))

    run_model(DirectRouter(), ops, expected)


@settings(max_examples=500, deadline=None)
@given(ops=ops)
def test_fanout_routes_every_destination_and_ignores_the_key(ops) -> None:
    def expected(live, routing_key):
        return tuple(dict.fromkeys(d for d, _, _ in live))

    run_model(FanoutRouter(), ops, expected)


@settings(max_examples=300, deadline=None)
@given(bindings=st.lists(st.tuples(destinations, keys), max_size=20), routing_key=keys)
def test_direct_result_is_the_set_of_matching_destinations(bindings, routing_key) -> None:
    router = DirectRouter()
    for destination, key in bindings:
        router.bind(destination, key)
    assert set(router.route(routing_key)) == {d for d, k in bindings if k == routing_key}


def test_direct_is_case_and_space_sensitive() -> None:
    router = DirectRouter()
    router.bind("q", "Key")
    assert router.route("Key") == ("q",)
    assert router.route("key") == ()
    assert router.route("Key ") == ()


def test_fanout_ignores_binding_keys_too() -> None:
    router = FanoutRouter()
    router.bind("q1", "x")
    router.bind("q2", "")
    router.bind("q1", "y")
    assert router.route("anything") == ("q1", "q2")
