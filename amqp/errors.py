"""Protocol errors: each carries its reply code and whether it closes the channel or the connection.

The broker raises these from its handler methods; the connection turns them
into Channel.Close or Connection.Close with RabbitMQ's reply text form,
"NOT_FOUND - no queue 'x' in vhost '/'".

The wire layer's own errors quote the offending bytes the way RabbitMQ's
Erlang formatting does ("type 9, all octets = <<"abc">>: unknown_frame"),
so a client sees the same text from either broker.
"""

from __future__ import annotations

from .constants import HARD_ERRORS, REPLY_NAMES

# RabbitMQ cuts a reply text longer than a short string to 252 bytes + "...".
_MAX_REPLY = 255
_CUT_REPLY = 252


class AMQPError(Exception):
    """An error answered on the wire; `hard` means the whole connection closes.

    `text` is the explanation after "CODE_NAME - "; an empty text gives the
    bare name, as RabbitMQ answers a crash ("INTERNAL_ERROR"). Raw bytes a
    client sent may ride in the text as surrogate escapes and go back out
    unchanged.
    """

    hard = False

    def __init__(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def reply_bytes(self) -> bytes:
        """The reply text as sent: at most 255 bytes, cut like RabbitMQ does."""
        name = REPLY_NAMES.get(self.code, "ERROR")
        text = f"{name} - {self.text}" if self.text else name
        raw = text.encode("utf-8", "surrogateescape")
        if len(raw) <= _MAX_REPLY:
            return raw
        return _cut_utf8(raw[:_CUT_REPLY]) + b"..."

    @property
    def reply_text(self) -> str:
        """The reply text as a str (for logs and tests)."""
        return self.reply_bytes.decode("utf-8", "replace")


def _cut_utf8(head: bytes) -> bytes:
    """Drop a UTF-8 sequence the cut split in two (RabbitMQ keeps it; clients then fail to decode)."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(head) - 3:
            return head[: exc.start]
    return head


class ChannelError(AMQPError):
    """A soft error: the channel is closed, the connection goes on."""


class ConnectionError(AMQPError):  # noqa: A001 - the AMQP name; always used qualified
    """A hard error: the connection is closed."""

    hard = True


def amqp_error(code: int, text: str, class_id: int = 0, method_id: int = 0) -> AMQPError:
    """The right kind of error for code (hard codes close the connection)."""
    cls = ConnectionError if code in HARD_ERRORS else ChannelError
    return cls(code, text, class_id, method_id)


# ------------------------------------------------- Erlang's term formatting
# RabbitMQ builds these texts with io_lib:format; clients that match on them
# (and people reading logs of both brokers) see the same characters.
_LINE = 80
_ESCAPES = {8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\e"}


def _printable(data: bytes) -> bool:
    """Erlang's latin-1 printable test, byte by byte."""
    return all(32 <= b <= 126 or b >= 160 or b in _ESCAPES for b in data)


def erl_binary(data: bytes, col: int = 0) -> str:
    """A binary as `~tp` prints it starting at column col: <<"text">> or <<1,2,3>>.

    A printable binary is shown as a string of its raw bytes (latin-1, carried
    here as surrogate escapes); otherwise as integers, broken over lines of
    80 columns and indented under the first one, as the pretty printer does.
    """
    if not data:
        return "<<>>"
    if _printable(data):
        chars = []
        for b in data:
            if b in _ESCAPES:
                chars.append(_ESCAPES[b])
            elif b == 0x22:
                chars.append('\\"')
            elif b == 0x5C:
                chars.append("\\\\")
            else:
                chars.append(bytes((b,)).decode("utf-8", "surrogateescape"))
        return '<<"' + "".join(chars) + '">>'
    flat = erl_binary_w(data)
    if col + len(flat) < _LINE:
        return flat
    items = [str(b) for b in data]
    lines: list[str] = []
    line = "<<"
    pos = col + 2
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else ">>")
        if pos + len(piece) >= _LINE and line not in ("<<", ""):
            lines.append(line)
            line = ""
            pos = col + 2
        line += piece
        pos += len(piece)
    lines.append(line)
    return ("\n" + " " * (col + 2)).join(lines)


def erl_binary_w(data: bytes) -> str:
    """A binary as `~w` prints it: always integers, never broken."""
    return "<<" + ",".join(str(b) for b in data) + ">>"


def erl_tuple(items: tuple[str, ...], col: int) -> str:
    """A tuple of atoms/integers as `~tp` prints it at column col."""
    flat = "{" + ",".join(items) + "}"
    if col + len(flat) < _LINE or len(items) < 2:
        return flat
    return "{" + items[0] + ",\n" + " " * (col + 1) + ",".join(items[1:]) + "}"


def frame_snippet(payload: bytes, prefix: str) -> str:
    """'<prefix>all octets = <<...>>' (up to 16 bytes) or 'first 16 octets = ...'."""
    if len(payload) <= 16:
        head = f"{prefix}all octets = "
        return head + erl_binary(payload, len(head))
    head = f"{prefix}first 16 octets = "
    return head + erl_binary(payload[:16], len(head))


def frame_error_text(ftype: int, payload: bytes, reason: str | tuple[str, ...]) -> str:
    """RabbitMQ's 501 text: "type 1, all octets = <<...>>: {invalid_frame_end_marker,0}"."""
    text = frame_snippet(payload, f"type {ftype}, ") + ": "
    col = len(text) - text.rfind("\n") - 1 if "\n" in text else len(text)
    if isinstance(reason, tuple):
        return text + erl_tuple(reason, col)
    return text + reason


def unexpected_frame_text(ftype: int, payload: bytes) -> str:
    """RabbitMQ's 505 text for a frame the connection state does not take: "type 3, all octets = ..."."""
    return frame_snippet(payload, f"type {ftype}, ")
