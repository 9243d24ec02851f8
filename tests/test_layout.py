"""The install layout: our folders import as warrenmq.*, and py-amqp stays importable."""

import importlib


def test_subpackages_import_under_warrenmq() -> None:
    for name in ("amqp", "broker", "exchanges", "logstore"):
        module = importlib.import_module(f"warrenmq.{name}")
        assert module.__file__.replace("\\", "/").endswith(f"{name}/__init__.py")


def test_py_amqp_is_not_shadowed() -> None:
    import amqp  # py-amqp, which kombu uses

    assert hasattr(amqp, "Connection"), amqp.__file__
