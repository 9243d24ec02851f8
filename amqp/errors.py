"""Protocol errors: each carries its reply code and whether it closes the channel or the connection.

The broker raises these from its handler methods; the connection turns them
into Channel.Close or Connection.Close with RabbitMQ's reply text form,
"NOT_FOUND - no queue 'x' in vhost '/'".
"""

from __future__ import annotations

from .constants import HARD_ERRORS, REPLY_NAMES


class AMQPError(Exception):
    """An error answered on the wire; `hard` means the whole connection closes."""

    hard = False

    def __init__(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def reply_text(self) -> str:
        """RabbitMQ's form: the code's name, a dash, the explanation (at most 255 bytes)."""
        name = REPLY_NAMES.get(self.code, "ERROR")
        text = f"{name} - {self.text}"
        raw = text.encode("utf-8")
        if len(raw) > 255:
            text = raw[:255].decode("utf-8", "ignore")
        return text


class ChannelError(AMQPError):
    """A soft error: the channel is closed, the connection goes on."""


class ConnectionError(AMQPError):  # noqa: A001 - the AMQP name; always used qualified
    """A hard error: the connection is closed."""

    hard = True


def amqp_error(code: int, text: str, class_id: int = 0, method_id: int = 0) -> AMQPError:
    """The right kind of error for code (hard codes close the connection)."""
    cls = ConnectionError if code in HARD_ERRORS else ChannelError
    return cls(code, text, class_id, method_id)
