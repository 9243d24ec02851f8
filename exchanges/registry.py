"""Exchange types by name, and the factory the broker declares exchanges with."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .base import ExchangeRouter, InvalidArguments, UnknownExchangeType
from .consistent_hash import ConsistentHashRouter
from .direct import DirectRouter
from .fanout import FanoutRouter
from .headers import HeadersRouter
from .topic import TopicRouter

EXCHANGE_TYPES: Mapping[str, type[ExchangeRouter]] = MappingProxyType(
    {
        router.type_name: router
        for router in (
            DirectRouter,
            FanoutRouter,
            TopicRouter,
            HeadersRouter,
            ConsistentHashRouter,
        )
    }
)


def make_exchange_type(
    type_name: str, arguments: Mapping[str, Any] | None = None
) -> ExchangeRouter | UnknownExchangeType | InvalidArguments:
    """A fresh router for an exchange of ``type_name``, or the error to answer with.

    Errors are values, not exceptions, so the broker can turn them into the
    channel close RabbitMQ 4.x sends (406 PRECONDITION_FAILED) in one place.
    """
    router_class = EXCHANGE_TYPES.get(type_name)
    if router_class is None:
        return UnknownExchangeType(type_name)
    args = {} if arguments is None else arguments
    error = router_class.validate_arguments(args)
    if error is not None:
        return error
    return router_class(args)
