"""The interface the broker implements: what the wire layer asks and reports.

The connection calls these methods synchronously, in the order the frames
arrived. Any of them may raise an AMQPError: a ChannelError closes the
channel the frame came on, a ConnectionError closes the connection; the wire
layer fills in the class and method ids of the frame being handled. The
defaults refuse logins and ignore everything else, so a test handler only
overrides what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection


class ConnectionHandler:
    """Base class for the broker's per-connection handler."""

    connection: Connection | None = None

    # --- handshake
    def authenticate(self, mechanism: str, username: str, password: str) -> bool:
        """True when the credentials are good (403 ACCESS_REFUSED otherwise)."""
        return False

    def open_vhost(self, vhost: str) -> None:
        """Raise a ConnectionError (530 NOT_ALLOWED) to refuse the vhost."""

    def connection_opened(self) -> None:
        """Connection.Open-Ok was sent: channels may open now."""

    def connection_lost(self, exc: BaseException | None) -> None:
        """The socket is gone (after a close in either direction, or a drop)."""

    # --- channels
    def channel_opened(self, channel: int) -> None:
        """Channel.Open arrived; Open-Ok follows unless this raises."""

    def channel_closed(self, channel: int) -> None:
        """The channel is closed (either side); its number may be reused."""

    # --- methods and content
    def on_method(self, channel: int, method: Any) -> None:
        """Every other method from the client, decoded by pamqp."""

    def on_publish(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        mandatory: bool,
        immediate: bool,
        properties: bytes,
        body: bytes,
    ) -> None:
        """A whole Basic.Publish with its content; properties are the raw bytes."""

    def on_ack(self, channel: int, delivery_tag: int, multiple: bool) -> None:
        """Basic.Ack from a consumer."""

    def on_nack(self, channel: int, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        """Basic.Nack from a consumer."""

    def on_reject(self, channel: int, delivery_tag: int, requeue: bool) -> None:
        """Basic.Reject from a consumer."""

    def on_writable(self, writable: bool) -> None:
        """The socket's write buffer filled up (False) or drained (True)."""

    def before_write(self) -> None:
        """Called just before queued output goes to the socket.

        The broker finishes its pending work here (appends, state writes), so
        what a client is told (a delivery, a confirm) never runs ahead of what
        the broker has written down.
        """
