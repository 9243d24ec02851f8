"""Topologies: exchanges, queues, bindings, users, retry ladders and super streams in YAML.

A topology is, inside, a RabbitMQ definitions document (what
`/api/definitions` exports), so it can be compared with a live broker and
applied through the same API. `load` reads the YAML format of
docs/topology.md (or a definitions export), expands `retry` ladders and
`super-streams`, and checks everything, reporting every problem at once as
`file:line: key: message`.
"""

from .dump import dump_yaml
from .load import Topology, is_definitions_document, load, validate_definitions
from .problems import Problem, TopologyError
from .retry import RetryLadder
from .superstream import SuperStream
from .units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "Problem",
    "RetryLadder",
    "SuperStream",
    "Topology",
    "TopologyError",
    "dump_yaml",
    "format_duration",
    "format_size",
    "is_definitions_document",
    "load",
    "parse_duration",
    "parse_size",
    "validate_definitions",
]
