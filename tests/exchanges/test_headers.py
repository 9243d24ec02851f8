"""Headers exchange: x-match modes, AMQP value comparison, validation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warrenmq.exchanges import (
    PRECONDITION_FAILED,
    BindingRejected,
    HeadersRouter,
    make_exchange_type,
    validate_x_match,
)

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
T0_SECONDS = int(T0.timestamp())

# (id, binding arguments, message headers, routed)
CASES = [
    # --- x-match modes
    ("all-default-all-present", {"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
    ("all-default-one-missing", {"a": 1, "b": "x"}, {"a": 1}, False),
    ("all-default-one-differs", {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, False),
    ("all-explicit", {"x-match": "all", "a": 1}, {"a": 1}, True),
    ("any-one-of-two", {"x-match": "any", "a": 1, "b": 2}, {"b": 2}, True),
    ("any-none-of-two", {"x-match": "any", "a": 1, "b": 2}, {"a": 2, "b": 1}, False),
    ("any-no-headers", {"x-match": "any", "a": 1}, {}, False),
    ("all-no-headers", {"a": 1}, {}, False),
    ("all-no-terms-matches-anything", {}, {"z": 1}, True),
    ("all-no-terms-matches-no-headers", {"x-match": "all"}, {}, True),
    ("any-no-terms-matches-nothing", {"x-match": "any"}, {"z": 1}, False),
    # --- x- arguments take part only in the -with-x modes
    ("all-ignores-x-args", {"x-match": "all", "x-k": 1, "a": 1}, {"a": 1}, True),
    ("all-only-x-args-matches-all", {"x-k": 1}, {"a": 2}, True),
    ("any-only-x-args-matches-none", {"x-match": "any", "x-k": 1}, {"x-k": 1}, False),
    ("all-with-x-needs-x-arg", {"x-match": "all-with-x", "x-k": 1, "a": 1}, {"a": 1}, False),
    ("all-with-x-has-x-arg", {"x-match": "all-with-x", "x-k": 1, "a": 1}, {"a": 1, "x-k": 1}, True),
    ("any-with-x-by-x-arg", {"x-match": "any-with-x", "x-k": 1, "a": 1}, {"x-k": 1}, True),
    ("any-with-x-none", {"x-match": "any-with-x", "x-k": 1, "a": 1}, {"x-k": 2, "a": 2}, False),
    ("all-with-x-no-terms", {"x-match": "all-with-x"}, {}, True),
    ("any-with-x-no-terms", {"x-match": "any-with-x"}, {"x-match": "any-with-x"}, False),
    ("x-match-itself-never-compared", {"x-match": "all-with-x", "a": 1}, {"a": 1}, True),
    ("x-header-in-message-irrelevant-for-all", {"a": 1}, {"a": 1, "x-k": 9}, True),
    # --- integers: every width decodes to int
    ("int-equal", {"a": 5}, {"a": 5}, True),
    ("int-differs", {"a": 5}, {"a": 6}, False),
    ("long-equal", {"a": 2**40}, {"a": 2**40}, True),
    ("negative-int", {"a": -3}, {"a": -3}, True),
    # --- numbers compare by value across int and float (Erlang ==)
    ("int-vs-float-same-value", {"a": 1}, {"a": 1.0}, True),
    ("float-vs-int-same-value", {"a": 2.0}, {"a": 2}, True),
    ("int-vs-float-other-value", {"a": 1}, {"a": 1.5}, False),
    ("float-equal", {"a": 1.5}, {"a": 1.5}, True),
    # --- booleans are not numbers
    ("bool-true-vs-int-1", {"a": True}, {"a": 1}, False),
    ("int-1-vs-bool-true", {"a": 1}, {"a": True}, False),
    ("bool-false-vs-int-0", {"a": False}, {"a": 0}, False),
    ("bool-false-vs-float-0", {"a": False}, {"a": 0.0}, False),
    ("bool-equal", {"a": True}, {"a": True}, True),
    ("bool-differs", {"a": True}, {"a": False}, False),
    # --- decimals: same scale and digits only
    ("decimal-equal", {"a": Decimal("1.50")}, {"a": Decimal("1.50")}, True),
    ("decimal-other-scale", {"a": Decimal("1.5")}, {"a": Decimal("1.50")}, False),
    ("decimal-vs-int", {"a": Decimal("1")}, {"a": 1}, False),
    ("decimal-vs-float", {"a": Decimal("1.5")}, {"a": 1.5}, False),
    ("decimal-vs-string", {"a": Decimal("1.5")}, {"a": "1.5"}, False),
    # --- strings and bytes
    ("string-equal", {"a": "x"}, {"a": "x"}, True),
    ("string-case", {"a": "x"}, {"a": "X"}, False),
    ("string-vs-bytes", {"a": "x"}, {"a": b"x"}, False),
    ("bytes-vs-string", {"a": b"x"}, {"a": "x"}, False),
    ("string-vs-bytearray", {"a": "x"}, {"a": bytearray(b"x")}, False),
    ("bytes-equal", {"a": b"\xff"}, {"a": b"\xff"}, True),
    ("bytes-vs-bytearray", {"a": b"\xff"}, {"a": bytearray(b"\xff")}, True),
    ("string-vs-int", {"a": "1"}, {"a": 1}, False),
    ("empty-string", {"a": ""}, {"a": ""}, True),
    ("empty-string-vs-void", {"a": ""}, {"a": None}, False),
    # --- void: presence only
    ("void-matches-any-value", {"a": None}, {"a": "anything"}, True),
    ("void-matches-void", {"a": None}, {"a": None}, True),
    ("void-matches-false", {"a": None}, {"a": False}, True),
    ("void-needs-presence", {"a": None}, {"b": 1}, False),
    ("void-any-presence", {"x-match": "any", "a": None, "b": 1}, {"a": 0}, True),
    ("value-vs-void-header", {"a": 1}, {"a": None}, False),
    # --- timestamps: seconds, equal to an integer of the same value
    ("timestamp-equal", {"a": T0}, {"a": T0}, True),
    ("timestamp-vs-seconds", {"a": T0}, {"a": T0_SECONDS}, True),
    ("timestamp-differs", {"a": T0}, {"a": T0 + dt.timedelta(seconds=1)}, False),
    ("naive-timestamp-is-utc", {"a": T0.replace(tzinfo=None)}, {"a": T0}, True),
    # --- nested tables and arrays: types inside must match exactly
    ("table-equal", {"a": {"k": 1, "s": "v"}}, {"a": {"k": 1, "s": "v"}}, True),
    ("table-differs", {"a": {"k": 1}}, {"a": {"k": 2}}, False),
    ("table-int-vs-float-inside", {"a": {"k": 1}}, {"a": {"k": 1.0}}, False),
    ("table-key-order-matters", {"a": {"k": 1, "j": 2}}, {"a": {"j": 2, "k": 1}}, False),
    ("table-extra-key", {"a": {"k": 1}}, {"a": {"k": 1, "j": 2}}, False),
    ("table-nested-deeper", {"a": {"k": {"z": [1, "x"]}}}, {"a": {"k": {"z": [1, "x"]}}}, True),
    ("table-vs-array", {"a": {}}, {"a": []}, False),
    ("array-equal", {"a": [1, "x", None]}, {"a": [1, "x", None]}, True),
    ("array-order", {"a": [1, 2]}, {"a": [2, 1]}, False),
    ("array-int-vs-float-inside", {"a": [1]}, {"a": [1.0]}, False),
    ("array-bool-vs-int-inside", {"a": [True]}, {"a": [1]}, False),
    ("array-string-vs-bytes-inside", {"a": ["x"]}, {"a": [b"x"]}, False),
    ("array-vs-scalar", {"a": [1]}, {"a": 1}, False),
    # --- mixed
    ("all-mixed-types", {"i": 1, "s": "x", "b": True, "v": None}, {"i": 1.0, "s": "x", "b": True, "v": 0}, True),
    ("any-mixed-one-hit", {"x-match": "any", "i": 1, "s": "x"}, {"i": True, "s": "x"}, True),
    ("any-mixed-no-hit", {"x-match": "any", "i": 1, "s": "x"}, {"i": True, "s": b"x"}, False),
]


@pytest.mark.parametrize(
    ("binding", "headers", "routed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_headers_matching(binding: dict, headers: dict, routed: bool) -> None:
    router = HeadersRouter()
    router.bind("q", "", binding)
    assert router.route("", headers) == (("q",) if routed else ())
    # The same answer when the binding shares the table with others.
    router.bind("other", "", {"x-match": "any", "unrelated": "zzz"})
    router.bind("q2", "", {"x-match": "any"})
    assert router.route("", headers) == (("q",) if routed else ())


def test_no_headers_at_all() -> None:
    router = HeadersRouter()
    router.bind("q-all", "", {"a": 1})
    router.bind("q-any", "", {"x-match": "any", "a": 1})
    router.bind("q-everything", "", {})
    assert router.route("", None) == ("q-everything",)
    assert router.route("", {}) == ("q-everything",)


def test_routing_key_is_ignored() -> None:
    router = HeadersRouter()
    router.bind("q", "some-key", {"a": 1})
    assert router.route("another-key", {"a": 1}) == ("q",)


def test_order_and_duplicates() -> None:
    router = HeadersRouter()
    router.bind("q2", "", {"x-match": "any", "a": 1, "b": 1})
    router.bind("q1", "", {"a": 1})
    router.bind("q2", "", {"b": 1})
    router.bind("q3", "", {})
    assert router.route("", {"a": 1, "b": 1}) == ("q2", "q1", "q3")
    router.unbind("q2", "", {"x-match": "any", "a": 1, "b": 1})
    assert router.route("", {"a": 1, "b": 1}) == ("q1", "q2", "q3")


@pytest.mark.parametrize("mode", ["all", "any", "all-with-x", "any-with-x"])
def test_valid_x_match_values(mode: str) -> None:
    assert validate_x_match({"x-match": mode}) is None
    assert HeadersRouter().bind("q", "", {"x-match": mode})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("some", 'Invalid x-match field value <<"some">>; expected all, any, all-with-x, or any-with-x'),
        ("ALL", 'Invalid x-match field value <<"ALL">>; expected all, any, all-with-x, or any-with-x'),
        ("", 'Invalid x-match field value <<"">>; expected all, any, all-with-x, or any-with-x'),
        (1, "Invalid x-match field type long (value 1); expected longstr"),
        (True, "Invalid x-match field type bool (value true); expected longstr"),
        (None, "Invalid x-match field type void (value undefined); expected longstr"),
        (bytearray(b"all"), "Invalid x-match field type binary (value <<97,108,108>>); expected longstr"),
    ],
)
def test_invalid_x_match_is_refused_naming_the_value(value, text: str) -> None:
    error = validate_x_match({"x-match": value})
    assert error is not None
    assert error.reply_code == PRECONDITION_FAILED == 406
    assert error.reply_text == text
    router = HeadersRouter()
    with pytest.raises(BindingRejected) as raised:
        router.bind("q", "", {"x-match": value})
    assert raised.value.error == error
    assert len(router) == 0


def test_factory_gives_a_headers_router() -> None:
    router = make_exchange_type("headers")
    assert isinstance(router, HeadersRouter)
    assert router.needs_headers and not router.needs_properties


# --- property: the index agrees with a transcription of RabbitMQ's merge algorithm


def erlang_equal(pattern, data) -> bool:
    """Erlang == on the terms RabbitMQ decodes, top level (types ignored, except ours)."""

    def number(v):
        if isinstance(v, dt.datetime):
            return v.timestamp()
        if isinstance(v, int | float) and not isinstance(v, bool):
            return v
        return None

    if number(pattern) is not None and number(data) is not None:
        return number(pattern) == number(data)
    return strict_equal(pattern, data)


def strict_equal(a, b) -> bool:
    """Equality of values that keep their field type (nested ones)."""

    def kind(v):
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int):
            return "int"
        if isinstance(v, bytes | bytearray):
            return "bytes"
        return type(v).__name__

    if kind(a) != kind(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    return a == b


def reference_match(args: dict, headers: dict) -> bool:
    """rabbit_exchange_type_headers:headers_match/2, with dicts instead of sorted lists."""
    mode = args.get("x-match", "all")
    with_x = mode.endswith("-with-x")
    all_match, any_match = True, False
    for key in sorted(args):
        if key == "x-match" or (key.startswith("x-") and not with_x):
            continue
        if key not in headers:
            all_match = False
        elif args[key] is None or erlang_equal(args[key], headers[key]):
            any_match = True
        else:
            all_match = False
    return all_match if mode.startswith("all") else any_match


VALUES = [
    1, 2, 1.0, 0, True, False, "1", "x", b"x", bytearray(b"x"), None,
    Decimal("1.0"), Decimal("1.00"), {"k": 1}, {"k": 1.0}, [1], [True], T0, T0_SECONDS,
]
values = st.sampled_from(VALUES)
names = st.sampled_from(["a", "b", "c", "x-d", "x-match"])
binding_args = st.builds(
    lambda table, mode: {**table, **({"x-match": mode} if mode else {})},
    st.dictionaries(st.sampled_from(["a", "b", "c", "x-d"]), values, max_size=3),
    st.sampled_from([None, "all", "any", "all-with-x", "any-with-x"]),
)
header_tables = st.dictionaries(names, values, max_size=4)


@settings(max_examples=500, deadline=None)
@given(
    bindings=st.lists(st.tuples(st.sampled_from(["q0", "q1", "q2"]), binding_args), max_size=12),
    messages=st.lists(header_tables, max_size=6),
)
def test_index_agrees_with_reference(bindings, messages) -> None:
    router = HeadersRouter()
    live = []
    for destination, args in bindings:
        if router.bind(destination, "", args):
            live.append((destination, args))
    for headers in messages:
        expected = tuple(dict.fromkeys(d for d, a in live if reference_match(a, headers)))
        assert router.route("", headers) == expected
    for destination, args in live[::2]:
        assert router.unbind(destination, "", args)
    live = live[1::2]
    for headers in messages:
        expected = tuple(dict.fromkeys(d for d, a in live if reference_match(a, headers)))
        assert router.route("", headers) == expected
