"""Topic routing against a plain reference matcher (binding key -> regular expression)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warrenmq.exchanges import TopicRouter
from warrenmq.exchanges.cache import RecentResults


def words_of(key: str) -> list[str]:
    # RabbitMQ's model (rabbit_db_topic_exchange:split_topic_key): "" has no words.
    return key.split(".") if key else []


def reference_match(binding_key: str, routing_key: str) -> bool:
    """Each word becomes "." + word, so word boundaries are explicit and unambiguous."""
    subject = "".join("." + word for word in words_of(routing_key))
    parts = []
    for word in words_of(binding_key):
        if word == "*":
            parts.append(r"\.[^.]*")
        elif word == "#":
            parts.append(r"(?:\.[^.]*)*")
        else:
            parts.append(r"\." + re.escape(word))
    return re.fullmatch("".join(parts), subject) is not None


def expected_route(bindings: list[tuple[str, str]], routing_key: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(d for d, key in bindings if reference_match(key, routing_key)))


EDGE_CASES = [
    # (binding key, routing key, matches)
    ("#", "", True),
    ("", "", True),
    ("*", "", False),
    ("", "a", False),
    ("#", "a.b.c", True),
    ("#", ".", True),
    ("a.#", "a", True),
    ("#.a", "a", True),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("#.#", "", True),
    ("a.#.#.b", "a.x.y.b", True),
    ("a.*", "a", False),
    ("a.*", "a.", True),  # the trailing empty word is a word
    ("*.a", ".a", True),  # so is a leading one
    ("*", ".", False),
    ("*.*", ".", True),
    ("a..b", "a..b", True),
    ("a.*.b", "a..b", True),
    ("a.b", "a..b", False),
    ("*.*.*", "..", True),
    ("*", "*", True),
    ("a", "*", False),  # a "*" in a routing key is just a word
    ("#", "#", True),
    ("a", "#", False),
    ("a#", "a#", True),  # "#" inside a word is literal
    ("a#", "ab", False),
    ("a*", "ab", False),
    ("#.*", "", False),
    ("#.*", "a", True),
    ("*.#", "a.b.c", True),
    ("#.*.#", "a", True),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "a.c", False),
]


@pytest.mark.parametrize(("binding_key", "routing_key", "matches"), EDGE_CASES)
def test_edge_cases(binding_key: str, routing_key: str, matches: bool) -> None:
    assert reference_match(binding_key, routing_key) is matches  # the reference agrees
    router = TopicRouter()
    router.bind("q", binding_key)
    assert router.route(routing_key) == (("q",) if matches else ())


PATTERN_WORDS = st.sampled_from(["a", "b", "ab", "", "*", "#"])
KEY_WORDS = st.sampled_from(["a", "b", "ab", "", "c", "*", "#"])


def dotted(words: st.SearchStrategy[str], max_words: int = 6) -> st.SearchStrategy[str]:
    return st.lists(words, max_size=max_words).map(".".join)


patterns = st.one_of(dotted(PATTERN_WORDS), st.text(alphabet="ab.*#", max_size=8))
routing_keys = st.one_of(dotted(KEY_WORDS), st.text(alphabet="ab.*#", max_size=8))


@settings(max_examples=1000, deadline=None)
@given(binding_key=patterns, routing_key=routing_keys)
def test_one_binding_matches_like_the_reference(binding_key: str, routing_key: str) -> None:
    router = TopicRouter()
    router.bind("q", binding_key)
    assert router.route(routing_key) == expected_route([("q", binding_key)], routing_key)


destinations = st.sampled_from(["q0", "q1", "q2", "q3", "q4"])


@settings(max_examples=300, deadline=None)
@given(
    bindings=st.lists(st.tuples(destinations, patterns), max_size=30),
    keys=st.lists(routing_keys, max_size=15),
)
def test_many_bindings_route_like_the_reference(
    bindings: list[tuple[str, str]], keys: list[str]
) -> None:
    router = TopicRouter()
    live: list[tuple[str, str]] = []
    for destination, key in bindings:
        added = router.bind(destination, key)
        assert added is ((destination, key) not in live)
        if added:
            live.append((destination, key))
    for key in keys + keys:  # the second pass is served from the cache
        assert router.route(key) == expected_route(live, key)
        assert router.match(key) == expected_route(live, key)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["bind", "unbind", "route"]), destinations, patterns, routing_keys),
        max_size=60,
    )
)
def test_binds_and_unbinds_keep_routing_exact(ops: list[tuple[str, str, str, str]]) -> None:
    router = TopicRouter(cache_size=8)  # small, so eviction happens too
    live: list[tuple[str, str]] = []
    for op, destination, binding_key, routing_key in ops:
        if op == "bind":
            assert router.bind(destination, binding_key) is ((destination, binding_key) not in live)
            if (destination, binding_key) not in live:
                live.append((destination, binding_key))
        elif op == "unbind":
            assert router.unbind(destination, binding_key) is ((destination, binding_key) in live)
            if (destination, binding_key) in live:
                live.remove((destination, binding_key))
        assert router.route(routing_key) == expected_route(live, routing_key)
    assert [(b.destination, b.binding_key) for b in router.bindings()] == live


def test_unbinding_everything_prunes_the_trie() -> None:
    router = TopicRouter()
    keys = ["a.b.c", "a.*.c", "a.#", "#", "#.c", "*.*", "", "a..b"]
    for key in keys:
        router.bind("q", key)
    for key in keys:
        assert router.unbind("q", key)
    assert router.route("a.b.c") == ()
    root = router._root
    assert not root.children and root.star is None and root.hash is None and not root.seqs


def test_cache_is_invalidated_by_bind_and_unbind() -> None:
    router = TopicRouter()
    router.bind("q1", "a.*")
    assert router.route("a.b") == ("q1",)
    router.bind("q2", "#")
    assert router.route("a.b") == ("q1", "q2")
    router.unbind("q1", "a.*")
    assert router.route("a.b") == ("q2",)


def test_cache_stays_bounded() -> None:
    router = TopicRouter(cache_size=16)
    router.bind("q", "#")
    for i in range(100):
        assert router.route(f"k.{i}") == ("q",)
    assert len(router._cache) <= 16


def test_destination_bound_by_two_matching_keys_appears_once_in_first_binding_order() -> None:
    router = TopicRouter()
    router.bind("q2", "a.#")
    router.bind("q1", "*.b")
    router.bind("q2", "a.b")
    router.bind("q1", "#")
    assert router.route("a.b") == ("q2", "q1")
    assert router.route("x.b") == ("q1",)


def test_same_key_different_arguments_are_two_bindings() -> None:
    router = TopicRouter()
    assert router.bind("q", "a.*", {"x-note": 1})
    assert router.bind("q", "a.*", {"x-note": 2})
    assert router.route("a.b") == ("q",)
    assert router.unbind("q", "a.*", {"x-note": 1})
    assert router.route("a.b") == ("q",)
    assert router.unbind("q", "a.*", {"x-note": 2})
    assert router.route("a.b") == ()


def test_deep_hash_patterns_on_long_keys_finish() -> None:
    router = TopicRouter()
    router.bind("q", "#.a.#.a.#.a.#.a.#")
    key = ".".join(["a"] * 40)
    assert router.route(key) == ("q",)
    assert router.route(".".join(["b"] * 40)) == ()


def test_recent_results_keep_keys_in_steady_use() -> None:
    cache = RecentResults(8)
    cache.put("hot", ("q",))
    for i in range(100):
        cache.put(f"cold-{i}", ())
        hit = cache.young.get("hot") or cache.recall("hot")
        assert hit == ("q",)
        assert len(cache) <= 8
    assert cache.recall("cold-0") is None and "cold-0" not in cache.young
    cache.clear()
    assert len(cache) == 0 and cache.recall("hot") is None


def test_a_zero_size_cache_remembers_nothing() -> None:
    router = TopicRouter(cache_size=0)
    router.bind("q", "a")
    assert router.route("a") == ("q",)
    assert len(router._cache) == 0
