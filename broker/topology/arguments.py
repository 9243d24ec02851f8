"""Checks of queue and exchange arguments: the broker's own declare-time checks.

The rules are those of `Broker._check_queue_arguments` and of Exchange.Declare
(both RabbitMQ's), so a topology that passes here is not refused by the
broker; the messages say what to write instead of quoting Erlang terms.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from warrenmq.broker.partitioning import MAX_PARTITIONS, PARTITION_KEY_ARG, PARTITIONS_ARG
from warrenmq.broker.server import MAX_EXPIRY, OVERFLOW_MODES, QUEUE_ARGUMENT_TYPES, RETRY_TYPES
from warrenmq.exchanges import EXCHANGE_TYPES, InvalidArguments, make_exchange_type

from .reader import type_name

DELAYED_TYPE = "x-delayed-message"
EXCHANGE_TYPES_ACCEPTED = tuple(sorted({*EXCHANGE_TYPES, DELAYED_TYPE}))


def queue_argument_problems(arguments: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(argument, message) for each argument the broker would refuse at declare time."""
    for key, value in arguments.items():
        types = QUEUE_ARGUMENT_TYPES.get(key)
        if types is None:
            continue
        if types == (int,):
            message = _integer_problem(key, value)
        elif types == (bool,):
            message = None if isinstance(value, bool) else f"must be true or false, not {value!r}"
        elif not isinstance(value, str):
            message = f"must be a string, not {type_name(value)} ({value!r})"
        elif key == "x-overflow" and value not in OVERFLOW_MODES:
            message = f"must be one of {', '.join(OVERFLOW_MODES)}, not {value!r}"
        elif key == "x-delayed-retry-type" and value not in RETRY_TYPES:
            message = f"must be one of {', '.join(RETRY_TYPES)}, not {value!r}"
        elif key == "x-dead-letter-routing-key" and "x-dead-letter-exchange" not in arguments:
            message = "needs a dead-letter-exchange (a routing key alone is refused by the broker)"
        elif key == PARTITION_KEY_ARG and PARTITIONS_ARG not in arguments:
            message = f"needs {PARTITIONS_ARG} (a partition key alone is refused by the broker)"
        elif key == "x-overflow" and PARTITIONS_ARG in arguments and value != "drop-head":
            message = f"must be drop-head on a queue with {PARTITIONS_ARG}, not {value!r}"
        else:
            message = None
        if message is not None:
            yield key, message


def _integer_problem(key: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number, not {type_name(value)} ({value!r})"
    if key == "x-expires" and value == 0:
        return "must be at least 1 millisecond"
    if value < 0:
        return f"must not be negative, not {value}"
    if key in ("x-message-ttl", "x-expires") and value > MAX_EXPIRY:
        return f"must be at most {MAX_EXPIRY} milliseconds (ten years), not {value}"
    if key == "x-max-priority" and value > 255:
        return f"must be at most 255, not {value}"
    if key == PARTITIONS_ARG and not 0 < value <= MAX_PARTITIONS:
        return f"must be from 1 to {MAX_PARTITIONS}, not {value}"
    return None


def exchange_problem(type_name_: Any, arguments: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, message) when the broker would refuse an exchange of this type and arguments."""
    if type_name_ not in EXCHANGE_TYPES_ACCEPTED:
        return "type", f"must be one of {', '.join(EXCHANGE_TYPES_ACCEPTED)}, not {type_name_!r}"
    ae = arguments.get("alternate-exchange")
    if ae is not None and not isinstance(ae, str):
        return "arguments.alternate-exchange", f"must be an exchange name, not {ae!r}"
    underlying = type_name_
    if type_name_ == DELAYED_TYPE:
        underlying = arguments.get("x-delayed-type")
        if underlying is None:
            return "arguments.x-delayed-type", "an x-delayed-message exchange needs a delayed-type"
        if underlying not in EXCHANGE_TYPES:
            return "arguments.x-delayed-type", (
                f"must be one of {', '.join(sorted(EXCHANGE_TYPES))}, not {underlying!r}"
            )
    router = make_exchange_type(underlying, arguments)
    if isinstance(router, InvalidArguments):
        return "arguments", router.reply_text
    return None


def router_for(type_name_: str, arguments: Mapping[str, Any]) -> Any:
    """The router of a valid exchange (a delayed one routes as its x-delayed-type)."""
    underlying = arguments.get("x-delayed-type") if type_name_ == DELAYED_TYPE else type_name_
    return make_exchange_type(underlying, arguments)
