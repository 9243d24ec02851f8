"""warrenmq.amqp: the AMQP 0-9-1 wire layer, with no broker logic.

`Connection` is a protocol object (bytes in, handler calls out; sends in,
bytes out) with no I/O; `AMQPProtocol` / `start_server` adapt it to asyncio.
The broker implements `ConnectionHandler`.
"""

from . import codec, constants, replies
from .connection import CAPABILITIES, Connection, State, default_server_properties
from .errors import AMQPError, ChannelError, ConnectionError, amqp_error
from .handler import ConnectionHandler
from .transport import AMQPProtocol, start_server

__all__ = [
    "AMQPError",
    "AMQPProtocol",
    "CAPABILITIES",
    "ChannelError",
    "Connection",
    "ConnectionError",
    "ConnectionHandler",
    "State",
    "amqp_error",
    "codec",
    "constants",
    "default_server_properties",
    "replies",
    "start_server",
]
