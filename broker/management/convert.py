"""AMQP values and message properties to JSON and back, and RabbitMQ's body-field parsing.

JSON has fewer types than AMQP field tables: on the way out byte strings
become text, decimals numbers and timestamps seconds, as the management
plugin shows them; on the way in a JSON number is an integer or a double,
text a long string, an object a table and an array an array.
"""

from __future__ import annotations

import base64
import datetime
import decimal
from typing import Any

from pamqp import commands

from warrenmq.amqp.codec import decode_properties, encode_properties

from .errors import ApiError, bad_request

# Message properties by their JSON names; pamqp calls `type` message_type.
STRING_PROPERTIES = ("content_type", "content_encoding", "correlation_id", "reply_to", "expiration",
                     "message_id", "type", "user_id", "app_id", "cluster_id")  # fmt: skip
INT_PROPERTIES = ("delivery_mode", "priority", "timestamp")


def to_json(value: Any) -> Any:
    """An AMQP field value as the management API shows it."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp())
    return value


def from_json(value: Any) -> Any:
    """A JSON value as an AMQP field value; null is refused, as RabbitMQ refuses it."""
    if value is None:
        raise bad_request("null_not_allowed")
    if isinstance(value, dict):
        return {str(k): from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise bad_request(["out_of_range", value])
    return value


def table(value: Any, key: str) -> dict[str, Any]:
    """A body field that must be a JSON object (arguments, headers); absent means empty."""
    if value is None:
        return {}
    if isinstance(value, list) and not value:  # RabbitMQ takes [] for an empty table
        return {}
    if not isinstance(value, dict):
        raise bad_request(["not_a_table", key])
    return from_json(value)


def parse_bool(value: Any, default: bool) -> bool:
    """rabbit_mgmt_util:parse_bool: true/false or their strings (rabbitmqadmin sends strings)."""
    if value is None:
        return default
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    raise bad_request(["not_boolean", value])


def parse_int(value: Any) -> int:
    """An integer, or its decimal string (rabbitmqadmin sends counts as strings)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise bad_request(["not_integer", value])


def parse_tags(value: Any) -> list[str]:
    """Tags as a list, or RabbitMQ's comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return [t.strip() for t in value if t.strip()]
    raise bad_request(["invalid_tags", value])


def properties_to_json(raw: bytes) -> dict[str, Any]:
    """The properties a message carries, by RabbitMQ's JSON names; unset ones are left out."""
    try:
        props = decode_properties(raw)
    except ValueError:
        return {}
    out: dict[str, Any] = {}
    for name in (*STRING_PROPERTIES, *INT_PROPERTIES, "headers"):
        value = getattr(props, "message_type" if name == "type" else name, None)
        if value is None or (name == "cluster_id" and value == ""):
            continue
        out[name] = to_json(value)
    return out


def properties_from_json(value: Any) -> bytes:
    """Raw property bytes from a publish request's `properties` object."""
    if isinstance(value, list) and not value:
        value = {}
    if not isinstance(value, dict):
        raise bad_request(["not_a_table", "properties"])
    fields: dict[str, Any] = {}
    for name, item in value.items():
        if name in STRING_PROPERTIES:
            if not isinstance(item, str):
                raise bad_request(["not_string", name])
            fields["message_type" if name == "type" else name] = item
        elif name in INT_PROPERTIES:
            if isinstance(item, bool) or not isinstance(item, int):
                raise bad_request(["not_int", name])
            if name == "timestamp":
                item = datetime.datetime.fromtimestamp(item, datetime.UTC)
            fields[name] = item
        elif name == "headers":
            fields["headers"] = table(item, "headers")
        # Other keys are ignored, as RabbitMQ ignores them.
    try:
        return encode_properties(commands.Basic.Properties(**fields))
    except (ValueError, TypeError, OverflowError) as exc:
        raise bad_request(str(exc)) from None


def decode_payload(payload: Any, encoding: Any) -> bytes:
    """A publish request's payload: text sent as UTF-8, or base64."""
    if not isinstance(payload, str):
        raise bad_request(["not_string", "payload"])
    if encoding == "string":
        return payload.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            raise bad_request("invalid_base64") from None
    raise ApiError(400, "bad_request", ["unsupported_encoding", encoding])


def encode_payload(body: bytes, encoding: str, truncate: int | None) -> tuple[str, str]:
    """(payload, payload_encoding) for a message read with /get: text when it is UTF-8 and asked."""
    if truncate is not None:
        body = body[:truncate]
    if encoding == "auto":
        try:
            return body.decode("utf-8"), "string"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), "base64"
