"""The broker's settings: defaults, a YAML file, and command-line overrides.

A YAML error names the file, the line and the key path, as users expect of
a config file ("warrenmq.yaml:4: fsync: must be one of always, interval,
never, not 'sometimes'"). Unknown keys are errors too: a misspelt key that
is silently ignored is the worst kind of config bug.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from warrenmq.logstore.config import FSYNC_POLICIES


class ConfigError(ValueError):
    """A bad config file or value; the message names file, line and key."""


@dataclass(frozen=True)
class Listener:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class BrokerConfig:
    """Everything `warrenmq serve` can be told."""

    listeners: list[Listener] = field(default_factory=lambda: [Listener("127.0.0.1", 5672)])
    data_dir: str = "./data"
    fsync: str = "always"
    fsync_interval_ms: int = 1000
    segment_bytes: int = 64 * 1024 * 1024
    heartbeat: int = 60
    frame_max: int = 131072
    channel_max: int = 2047
    max_message_size: int = 128 * 1024 * 1024
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    loopback_users: list[str] = field(default_factory=lambda: ["guest"])
    log_level: str = "info"
    # Per-logger levels over log_level, e.g. {"warrenmq.connection": "warning"}.
    log_levels: dict[str, str] = field(default_factory=dict)
    # HTTP listeners; None turns one off. The ports are RabbitMQ's.
    management_listener: Listener | None = field(default_factory=lambda: Listener("127.0.0.1", 15672))
    prometheus_listener: Listener | None = field(default_factory=lambda: Listener("127.0.0.1", 15692))
    # A topology file whose entities are created at start (docs/topology.md).
    topology: str | None = None

    def replace(self, **changes: Any) -> BrokerConfig:
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------- checks
def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, not {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"must be at least {minimum}{upper}, not {value}")
        return value

    return check


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, not {value!r}")
    return value


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {value!r}")
        return value

    return check


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, not {value!r}")
    return list(value)


def parse_listener(value: Any) -> Listener:
    """'host:port' or a bare port (then 127.0.0.1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        host, port = "127.0.0.1", value
    elif isinstance(value, str) and value.rpartition(":")[2].isdigit():
        host, _, port_text = value.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        port = int(port_text)
    else:
        raise ValueError(f"must be host:port or a port number, not {value!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, not {port}")
    return Listener(host, port)


def _optional_listener(value: Any) -> Listener | None:
    """host:port, a port, or off (no listener)."""
    if value is None or value is False or value in ("off", "none", ""):
        return None
    return parse_listener(value)


def _levels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of logger name to level, not {value!r}")
    out = {}
    for name, level in value.items():
        if not isinstance(name, str) or level not in _LOG_LEVELS:
            raise ValueError(f"{name}: must be one of {', '.join(_LOG_LEVELS)}, not {level!r}")
        out[name] = level
    return out


def _listeners(value: Any) -> list[Listener]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("must name at least one listener")
    return [parse_listener(v) for v in items]


_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

SCHEMA: dict[str, Callable[[Any], Any]] = {
    "listeners": _listeners,
    "data_dir": _str,
    "fsync": _choice(*FSYNC_POLICIES),
    "fsync_interval_ms": _int(1),
    "segment_bytes": _int(4096),
    "heartbeat": _int(0, 65535),
    "frame_max": _int(4096, 2**32 - 1),
    "channel_max": _int(1, 65535),
    "max_message_size": _int(1, 512 * 1024 * 1024),
    "default_user": _str,
    "default_pass": _str,
    "default_vhost": _str,
    "loopback_users": _str_list,
    "log_level": _choice(*_LOG_LEVELS),
    "log_levels": _levels,
    "management_listener": _optional_listener,
    "prometheus_listener": _optional_listener,
    "topology": _str,
}
# Nested spellings accepted in files, mapped to the flat fields above.
NESTED = {"default_user": {"username": "default_user", "password": "default_pass"}}


# ------------------------------------------------------------------ files
def load_config(path: str, base: BrokerConfig | None = None) -> BrokerConfig:
    """Read a YAML config file over base (defaults); ConfigError names file:line: key."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    return parse_config(text, path, base)


def parse_config(text: str, path: str = "<config>", base: BrokerConfig | None = None) -> BrokerConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    config = base or BrokerConfig()
    if root is None:
        return config
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:{root.start_mark.line + 1}: the config must be a mapping of keys")
    changes: dict[str, Any] = {}
    for key_node, value_node in root.value:
        key = key_node.value
        line = key_node.start_mark.line + 1
        if key in NESTED and isinstance(value_node, yaml.MappingNode):
            for sub_key_node, sub_value_node in value_node.value:
                sub = sub_key_node.value
                target = NESTED[key].get(sub)
                sub_line = sub_key_node.start_mark.line + 1
                if target is None:
                    raise ConfigError(
                        f"{path}:{sub_line}: {key}.{sub}: unknown key"
                        f" (known: {', '.join(NESTED[key])})"
                    )
                changes[target] = _checked(path, sub_line, f"{key}.{sub}", target, sub_value_node)
            continue
        if key not in SCHEMA:
            raise ConfigError(f"{path}:{line}: {key}: unknown key (known: {', '.join(SCHEMA)})")
        changes[key] = _checked(path, value_node.start_mark.line + 1, key, key, value_node)
    return config.replace(**changes)


def _checked(path: str, line: int, key_path: str, field_name: str, node: yaml.Node) -> Any:
    value = yaml.safe_load(yaml.serialize(node))
    try:
        return SCHEMA[field_name](value)
    except ValueError as exc:
        raise ConfigError(f"{path}:{line}: {key_path}: {exc}") from None


def apply_overrides(config: BrokerConfig, overrides: dict[str, Any]) -> BrokerConfig:
    """Command-line values (already strings or numbers) over the config, checked alike."""
    changes = {}
    for key, value in overrides.items():
        if value is None:
            continue
        try:
            changes[key] = SCHEMA[key](value)
        except ValueError as exc:
            raise ConfigError(f"--{key.replace('_', '-')}: {exc}") from None
    return config.replace(**changes)


def log_level(config: BrokerConfig) -> int:
    return getattr(logging, config.log_level.upper())


def configure_logging(config: BrokerConfig) -> None:
    """One line per event, to stderr; log_levels tune single loggers (warrenmq.connection, ...)."""
    logging.basicConfig(
        level=log_level(config), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name, level in config.log_levels.items():
        logging.getLogger(name).setLevel(getattr(logging, level.upper()))
