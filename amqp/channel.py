"""One channel's protocol state: open or closing, and content assembly.

A publish arrives as a method frame, a content header and body frames until
the declared size; any other frame on the channel in between is a 505
UNEXPECTED_FRAME. After a channel error the channel is `closing`: its frames
are dropped until the client's Close-Ok, and then the number is free again.
"""

from __future__ import annotations

AWAIT_METHOD = 0
AWAIT_HEADER = 1
AWAIT_BODY = 2


class Channel:
    """Per-channel state kept by the Connection."""

    __slots__ = ("number", "closing", "expect", "publish", "props", "remaining", "parts")

    def __init__(self, number: int) -> None:
        self.number = number
        self.closing = False
        self.expect = AWAIT_METHOD
        self.publish: tuple[str, str, bool, bool] = ("", "", False, False)
        self.props = b""
        self.remaining = 0
        self.parts: list[bytes] = []

    def begin_content(self, exchange: str, routing_key: str, mandatory: bool, immediate: bool) -> None:
        """A Basic.Publish arrived: its content header comes next."""
        self.publish = (exchange, routing_key, mandatory, immediate)
        self.expect = AWAIT_HEADER

    def reset_content(self) -> None:
        self.expect = AWAIT_METHOD
        self.props = b""
        self.remaining = 0
        self.parts = []

    def start_closing(self) -> None:
        """We sent Channel.Close: drop everything until the client's Close-Ok."""
        self.closing = True
        self.reset_content()
