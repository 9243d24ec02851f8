"""The factory, the binding table every type shares, and the package's purity."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from warrenmq.exchanges import (
    EXCHANGE_TYPES,
    PRECONDITION_FAILED,
    ConsistentHashRouter,
    DirectRouter,
    ExchangeRouter,
    FanoutRouter,
    HeadersRouter,
    InvalidArguments,
    TopicRouter,
    UnknownExchangeType,
    make_exchange_type,
)

EXCHANGES_DIR = Path(__file__).resolve().parents[2] / "exchanges"


@pytest.mark.parametrize(
    ("type_name", "router_class"),
    [
        ("direct", DirectRouter),
        ("fanout", FanoutRouter),
        ("topic", TopicRouter),
        ("headers", HeadersRouter),
        ("x-consistent-hash", ConsistentHashRouter),
    ],
)
def test_factory_makes_each_type(type_name: str, router_class: type) -> None:
    router = make_exchange_type(type_name, {"alternate-exchange": "ae"})
    assert type(router) is router_class
    assert router.type_name == type_name
    assert router.arguments == {"alternate-exchange": "ae"}
    assert EXCHANGE_TYPES[type_name] is router_class


@pytest.mark.parametrize("type_name", ["x-unknown", "Direct", "", "topic ", "x-delayed-message"])
def test_unknown_type_is_an_error_value_naming_it(type_name: str) -> None:
    error = make_exchange_type(type_name)
    assert error == UnknownExchangeType(type_name)
    assert error.reply_code == PRECONDITION_FAILED == 406
    assert error.reply_text == f"unknown exchange type '{type_name}'"


# Binding keys every type accepts (the consistent-hash one wants a weight).
KEY = {"direct": "k", "fanout": "k", "topic": "k", "headers": "k", "x-consistent-hash": "3"}
ALL_TYPES = sorted(KEY)


def fresh(type_name: str) -> ExchangeRouter:
    router = make_exchange_type(type_name)
    assert isinstance(router, ExchangeRouter)
    return router


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_binding_twice_is_a_no_op_and_unbinding_a_missing_one_is_reported(type_name: str) -> None:
    router = fresh(type_name)
    key = KEY[type_name]
    assert router.bind("q", key) is True
    assert router.bind("q", key) is False
    assert router.bind("q", key, {}) is False
    assert len(router) == 1
    assert router.route("k") == ("q",)
    assert router.unbind("q", key) is True
    assert router.unbind("q", key) is False
    assert router.unbind("never", key) is False
    assert len(router) == 0
    assert router.route("k") == ()


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_arguments_are_part_of_a_bindings_identity(type_name: str) -> None:
    router = fresh(type_name)
    key = KEY[type_name]
    assert router.bind("q", key, {"x-a": 1, "x-b": "s"})
    assert not router.bind("q", key, {"x-b": "s", "x-a": 1})  # key order does not matter
    assert router.bind("q", key, {"x-a": 1.0, "x-b": "s"})  # a float is not an int
    assert router.bind("q", key, {"x-a": True, "x-b": "s"})  # nor is a bool
    assert router.bind("q", key, {"x-a": 1, "x-b": b"s"})  # nor bytes a string
    assert len(router) == 4
    assert not router.unbind("q", key, {"x-a": 2, "x-b": "s"})
    assert router.unbind("q", key, {"x-b": "s", "x-a": 1.0})
    assert len(router) == 3


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_bindings_are_listed_oldest_first_and_rebinding_moves_to_the_end(type_name: str) -> None:
    router = fresh(type_name)
    key = KEY[type_name]
    for queue in ("q3", "q1", "q2"):
        router.bind(queue, key)
    assert [b.destination for b in router.bindings()] == ["q3", "q1", "q2"]
    router.unbind("q3", key)
    router.bind("q3", key)
    assert [b.destination for b in router.bindings()] == ["q1", "q2", "q3"]
    assert router.bindings()[0].binding_key == key
    assert router.bindings()[0].arguments == {}


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_unbind_destination_removes_every_binding_to_it(type_name: str) -> None:
    router = fresh(type_name)
    key = KEY[type_name]
    router.bind("q", key)
    router.bind("q", key, {"x-other": 1})
    router.bind("keep", key)
    removed = router.unbind_destination("q")
    assert [b.destination for b in removed] == ["q", "q"]
    assert [b.destination for b in router.bindings()] == ["keep"]
    assert router.unbind_destination("q") == ()
    assert router.route("k") == ("keep",)


@pytest.mark.parametrize("type_name", ["direct", "fanout", "topic", "headers"])
def test_a_destination_matched_twice_is_routed_once_as_a_tuple(type_name: str) -> None:
    router = fresh(type_name)
    router.bind("q1", "k")
    router.bind("q2", "k")
    router.bind("q1", "k", {"x-second": True})
    result = router.route("k", {})
    assert result == ("q1", "q2")
    assert isinstance(result, tuple)


def test_destinations_are_opaque_hashables() -> None:
    router = TopicRouter()
    queue = ("vhost", "queue", "orders")
    exchange = frozenset({"exchange"})
    router.bind(queue, "orders.*")
    router.bind(exchange, "#")
    assert router.route("orders.eu") == (queue, exchange)


def test_errors_are_plain_values() -> None:
    assert InvalidArguments("x") == InvalidArguments("x")
    assert InvalidArguments("x").reply_code == 406


# --- purity: no I/O, no asyncio, nothing else of ours

ALLOWED_IMPORTS = {
    "__future__", "bisect", "collections", "dataclasses", "datetime", "decimal",
    "re", "types", "typing", "zlib",
}


@pytest.mark.parametrize("path", sorted(EXCHANGES_DIR.glob("*.py")), ids=lambda p: p.name)
def test_module_imports_only_pure_stdlib(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:  # relative: a sibling in exchanges/
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in ALLOWED_IMPORTS, f"{path.name} imports {name}"
            assert name.split(".")[0] in sys.stdlib_module_names or name == "__future__"


def test_package_is_flat() -> None:
    assert not [p for p in EXCHANGES_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"]
