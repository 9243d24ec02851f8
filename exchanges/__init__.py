"""warrenmq.exchanges: pure routing (exchange types and their binding tables), no I/O."""

from .base import (
    EMPTY,
    PRECONDITION_FAILED,
    Binding,
    BindingRejected,
    ExchangeError,
    ExchangeRouter,
    InvalidArguments,
    PropertyGetter,
    UnknownExchangeType,
)
from .consistent_hash import ConsistentHashRouter
from .direct import DirectRouter
from .fanout import FanoutRouter
from .graph import route_graph
from .headers import HeadersRouter, validate_x_match
from .registry import EXCHANGE_TYPES, make_exchange_type
from .topic import TopicRouter

__all__ = [
    "EMPTY",
    "EXCHANGE_TYPES",
    "PRECONDITION_FAILED",
    "Binding",
    "BindingRejected",
    "ConsistentHashRouter",
    "DirectRouter",
    "ExchangeError",
    "ExchangeRouter",
    "FanoutRouter",
    "HeadersRouter",
    "InvalidArguments",
    "PropertyGetter",
    "TopicRouter",
    "UnknownExchangeType",
    "make_exchange_type",
    "route_graph",
    "validate_x_match",
]
