"""One channel's protocol state: opening, open or closing, and content assembly.

A channel number comes into being with its first frame, as in RabbitMQ: a
Channel.Open opens it; any other first command is a 504. A method with
content (Basic.Publish) is followed by a content header and body frames up
to the declared size; any other frame on the channel in between is a 505
UNEXPECTED_FRAME. Assembly goes on while the channel is closing (after a
channel error), so a client's pipelined publishes are taken apart frame by
frame and dropped, not mistaken for protocol errors; everything but
Close / Close-Ok is dropped until the client's Close-Ok frees the number.
"""

from __future__ import annotations

AWAIT_METHOD = 0
AWAIT_HEADER = 1
AWAIT_BODY = 2


class Channel:
    """Per-channel state kept by the Connection."""

    __slots__ = (
        "number",
        "opened",
        "closing",
        "expect",
        "method_index",
        "publish",
        "props",
        "remaining",
        "parts",
        "discard",
        "too_large",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        self.opened = False
        self.closing = False
        self.expect = AWAIT_METHOD
        # The content-bearing method being assembled (class << 16 | method).
        self.method_index = 0
        self.publish: tuple[str, str, bool, bool] = ("", "", False, False)
        self.props = b""
        self.remaining = 0
        self.parts: list[bytes] = []
        # Body frames are counted but not kept (the message will be dropped).
        self.discard = False
        # The declared size of a publish over max_message_size (refused when complete).
        self.too_large = 0

    @property
    def running(self) -> bool:
        """Open and not closing: its commands reach the handler."""
        return self.opened and not self.closing

    def begin_content(
        self,
        method_index: int,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
    ) -> None:
        """A method with content arrived: its content header comes next."""
        self.method_index = method_index
        self.publish = (exchange, routing_key, mandatory, immediate)
        self.expect = AWAIT_HEADER

    def reset_content(self) -> None:
        self.expect = AWAIT_METHOD
        self.props = b""
        self.remaining = 0
        self.parts = []
        self.discard = False
        self.too_large = 0

    def start_closing(self) -> None:
        """We sent Channel.Close: drop its commands until the client's Close-Ok."""
        self.closing = True
