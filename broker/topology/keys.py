"""The keys of the YAML format, per section, in the order `dump_yaml` writes them.

One table serves the reader (what is accepted), the writer (in which order)
and the JSON Schema test (that the schema documents exactly these).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .units import parse_duration, parse_size

TOP_LEVEL = (
    "vhosts", "users", "permissions", "exchanges", "queues", "bindings", "retry", "super-streams",
)  # fmt: skip

SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "vhosts": ("name", "description", "tags"),
    "users": ("name", "password", "password_hash", "hashing_algorithm", "tags", "limits"),
    "permissions": ("user", "vhost", "configure", "write", "read"),
    "exchanges": ("name", "vhost", "type", "durable", "auto-delete", "internal",
                  "alternate-exchange", "delayed-type", "arguments"),
    "queues": ("name", "vhost", "type", "durable", "auto-delete", "exclusive", "ttl", "expires",
               "max-length", "max-length-bytes", "overflow", "dead-letter-exchange",
               "dead-letter-routing-key", "max-priority", "single-active-consumer",
               "delivery-limit", "arguments"),
    "bindings": ("vhost", "from", "to", "to-exchange", "routing-key", "arguments"),
    "retry": ("vhost", "queue", "delays", "then", "mode"),
    "super-streams": ("name", "vhost", "partitions", "routing-keys", "max-age", "max-length-bytes",
                      "stream-max-segment-size-bytes", "arguments"),
}  # fmt: skip

# Friendly key -> (argument, converter or None for as-is). `type` is handled apart.
QUEUE_ARGUMENTS: dict[str, tuple[str, Callable[[Any], int] | None]] = {
    "ttl": ("x-message-ttl", parse_duration),
    "expires": ("x-expires", parse_duration),
    "max-length": ("x-max-length", None),
    "max-length-bytes": ("x-max-length-bytes", parse_size),
    "overflow": ("x-overflow", None),
    "dead-letter-exchange": ("x-dead-letter-exchange", None),
    "dead-letter-routing-key": ("x-dead-letter-routing-key", None),
    "max-priority": ("x-max-priority", None),
    "single-active-consumer": ("x-single-active-consumer", None),
    "delivery-limit": ("x-delivery-limit", None),
}
EXCHANGE_ARGUMENTS: dict[str, str] = {
    "alternate-exchange": "alternate-exchange",
    "delayed-type": "x-delayed-type",
}
QUEUE_TYPES = ("classic", "quorum", "stream")
EXCHANGE_TYPE_NAMES = (
    "direct",
    "fanout",
    "topic",
    "headers",
    "x-consistent-hash",
    "x-delayed-message",
)
RETRY_MODES = ("ttl-queues", "delayed-exchange")
DEFAULT_HASHING = "rabbit_password_hashing_sha256"

# Definitions-document keys that are known but not part of a topology (kept out of it).
DEFINITIONS_TOP_LEVEL = (
    "rabbit_version", "rabbitmq_version", "product_name", "product_version", "vhosts", "users",
    "permissions", "topic_permissions", "parameters", "global_parameters", "policies", "queues",
    "exchanges", "bindings",
)  # fmt: skip
DEFINITIONS_KEYS: dict[str, tuple[str, ...]] = {
    "vhosts": ("name", "description", "tags", "metadata", "default_queue_type", "limits"),
    "users": ("name", "password_hash", "password", "hashing_algorithm", "tags", "limits"),
    "permissions": ("user", "vhost", "configure", "write", "read"),
    "exchanges": ("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments"),
    "queues": ("name", "vhost", "durable", "auto_delete", "arguments", "type", "exclusive"),
    "bindings": ("source", "vhost", "destination", "destination_type", "routing_key", "arguments",
                 "properties_key"),
}  # fmt: skip
