"""`warrenmq ctl`: operate a running broker through its management HTTP API.

The API is RabbitMQ's (same paths, JSON shapes, status codes and basic
auth), so this client speaks nothing but that API: the same commands work
against warrenmq and against a RabbitMQ node with the management plugin.
It uses the standard library's urllib, so an operator's machine needs
nothing but this package to run it.

Options common to every command (--url, --user, --vhost, --json ...) are
accepted both before and after the command, as operators type them in
either place.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

PROG = "warrenmq ctl"
DEFAULT_URL = "http://127.0.0.1:15672"
DEFAULT_EXCHANGE_LABEL = "(AMQP default)"  # what RabbitMQ's web UI calls the "" exchange
REQUEST_TIMEOUT = 30.0  # seconds; an API call is a read of broker state, never long
ACK_MODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")
# Basic properties the publish endpoint accepts, and which of them are integers.
_PROPERTIES = (
    "content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
    "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id",
)  # fmt: skip
_INTEGER_PROPERTIES = frozenset({"delivery_mode", "priority", "timestamp"})


# ------------------------------------------------------------------ HTTP
class CtlError(Exception):
    """A failure to report on one line of stderr; the command exits 1."""


class ApiError(CtlError):
    """The API answered 4xx/5xx; RabbitMQ's body is {"error": ..., "reason": ...}."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(f"{error}: {reason}")
        self.status = status


class ManagementClient:
    """JSON over HTTP basic auth to one management API base URL."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._auth = f"Basic {token}"

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Any:  # fmt: skip
        """Send one request; the decoded JSON answer, or None for an empty one (204)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", self._auth)
        # No Accept header: RabbitMQ answers 406 to one on endpoints with no body (purge).
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CtlError(f"{self.url} did not answer JSON: is it a management API?") from None

    def _unreachable(self, reason: object) -> CtlError:
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused (is the broker running, with its management listener on?)"
        elif isinstance(reason, TimeoutError):
            why = f"no answer within {REQUEST_TIMEOUT:g} seconds"
        else:
            why = str(getattr(reason, "strerror", None) or reason or type(reason).__name__)
        return CtlError(f"cannot reach the management API at {self.url}: {why}")


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    raw = exc.read() or b""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        reason = body.get("reason", "")
        text = reason if isinstance(reason, str) else json.dumps(reason)
        return ApiError(exc.code, str(body["error"]), text)
    detail = raw.decode("utf-8", "replace").strip().splitlines()
    return ApiError(exc.code, f"HTTP {exc.code} {exc.reason}", detail[0] if detail else "")


def api_path(*segments: str) -> str:
    """/api/seg1/seg2...: every segment percent-encoded, so vhost "/" becomes %2F."""
    return "/api/" + "/".join(quote(segment, safe="") for segment in segments)


# ------------------------------------------------------------------ tables
@dataclass(frozen=True)
class Column:
    header: str
    path: tuple[str, ...]  # keys into the API's object; nested objects by several keys
    blank: str = ""  # what to show for an empty string (the default exchange's name)


def _column(spec: str, blank: str = "") -> Column:
    """Parse a spec: `queue.name as queue` is header "queue", path ("queue", "name")."""
    path, _, header = spec.partition(" as ")
    keys = tuple(path.split("."))
    return Column(header or keys[-1], keys, blank)


@dataclass(frozen=True)
class Listing:
    everywhere: tuple[str, ...]  # path segments for every vhost
    in_vhost: Callable[[str], tuple[str, ...]] | None  # path segments for one vhost
    columns: tuple[Column, ...]


def _columns(*specs: str | Column) -> tuple[Column, ...]:
    return tuple(spec if isinstance(spec, Column) else _column(spec) for spec in specs)


LISTINGS: dict[str, Listing] = {
    "queues": Listing(("queues",), lambda vhost: ("queues", vhost), _columns(
        "vhost", "name", "type", "durable", "auto_delete", "exclusive", "messages_ready",
        "messages_unacknowledged", "messages", "consumers", "state",
    )),
    "exchanges": Listing(("exchanges",), lambda vhost: ("exchanges", vhost), _columns(
        "vhost", _column("name", DEFAULT_EXCHANGE_LABEL), "type", "durable", "auto_delete",
        "internal", "arguments",
    )),
    "bindings": Listing(("bindings",), lambda vhost: ("bindings", vhost), _columns(
        "vhost", _column("source", DEFAULT_EXCHANGE_LABEL), "destination", "destination_type",
        "routing_key", "arguments",
    )),
    "connections": Listing(("connections",), lambda vhost: ("vhosts", vhost, "connections"),
                           _columns("name", "user", "vhost", "state", "channels", "protocol",
                                    "user_provided_name")),
    "channels": Listing(("channels",), lambda vhost: ("vhosts", vhost, "channels"), _columns(
        "name", "user", "vhost", "number", "state", "consumer_count", "prefetch_count",
        "messages_unacknowledged", "confirm", "transactional",
    )),
    "consumers": Listing(("consumers",), lambda vhost: ("consumers", vhost), _columns(
        "queue.vhost as vhost", "queue.name as queue", "consumer_tag", "ack_required",
        "exclusive", "prefetch_count", "active", "channel_details.name as channel",
    )),
    "vhosts": Listing(("vhosts",), None, _columns(
        "name", "messages_ready", "messages_unacknowledged", "messages", "tracing",
    )),
    "users": Listing(("users",), None, _columns("name", "tags")),
}  # fmt: skip


def cell(value: Any, blank: str = "") -> str:
    """One value as rabbitmqctl shows it: true/false, lists comma-joined, maps as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(cell(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = str(value).replace("\n", " ")
    return text if text else blank


def _lookup(item: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


def format_table(columns: Sequence[Column], items: Sequence[Any]) -> str:
    """An aligned table, header first; fields the API did not report are left empty."""
    rows = [[column.header for column in columns]]
    rows += [[cell(_lookup(item, c.path), c.blank) for c in columns] for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# ------------------------------------------------------------------ commands
def _print_json(data: Any) -> None:
    if data is not None:
        print(json.dumps(data, indent=2, ensure_ascii=False))


def _exchange_label(name: str) -> str:
    return DEFAULT_EXCHANGE_LABEL if name == "" else repr(name)


def cmd_list(client: ManagementClient, args: argparse.Namespace) -> None:
    listing = LISTINGS[args.kind]
    scoped = listing.in_vhost is not None and not args.all_vhosts
    path = api_path(*(listing.in_vhost(args.vhost) if scoped else listing.everywhere))
    items = client.request("GET", path) or []
    if args.json:
        _print_json(items)
    else:
        print(format_table(listing.columns, items))


def cmd_purge(client: ManagementClient, args: argparse.Namespace) -> None:
    client.request("DELETE", api_path("queues", args.vhost, args.queue, "contents"))
    if not args.json:
        print(f"purged queue {args.queue!r} in vhost {args.vhost!r}")


def cmd_delete(client: ManagementClient, args: argparse.Namespace) -> None:
    conditions = [name for name, wanted in (("if-empty", getattr(args, "if_empty", False)),
                                            ("if-unused", args.if_unused)) if wanted]  # fmt: skip
    query = "&".join(f"{name}=true" for name in conditions)
    path = api_path(f"{args.kind}s", args.vhost, args.name) + (f"?{query}" if query else "")
    client.request("DELETE", path)
    if not args.json:
        print(f"deleted {args.kind} {args.name!r} in vhost {args.vhost!r}")


def cmd_close(client: ManagementClient, args: argparse.Namespace) -> None:
    # RabbitMQ takes the reason the client will see from the X-Reason header.
    headers = {"X-Reason": args.reason} if args.reason else None
    client.request("DELETE", api_path("connections", args.name), headers=headers)
    if not args.json:
        print(f"closed connection {args.name!r}")


def cmd_publish(client: ManagementClient, args: argparse.Namespace) -> None:
    body = sys.stdin.buffer.read() if args.body == "-" else (args.body or "").encode()
    try:
        payload, encoding = body.decode("utf-8"), "string"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(body).decode("ascii"), "base64"
    properties: dict[str, Any] = dict(args.properties or [])
    if args.headers:
        properties["headers"] = dict(args.headers)
    # The default exchange has no name in a path; RabbitMQ's API calls it amq.default.
    exchange = args.exchange or "amq.default"
    answer = client.request("POST", api_path("exchanges", args.vhost, exchange, "publish"), {
        "properties": properties, "routing_key": args.routing_key,
        "payload": payload, "payload_encoding": encoding,
    })  # fmt: skip
    if args.json:
        _print_json(answer)
        return
    routed = bool(answer and answer.get("routed"))
    where = f"exchange {_exchange_label(args.exchange)} with routing key {args.routing_key!r}"
    print(f"published to {where}: " + ("routed" if routed else "NOT routed (no queue matched)"))


def cmd_get(client: ManagementClient, args: argparse.Namespace) -> None:
    messages = client.request("POST", api_path("queues", args.vhost, args.queue, "get"), {
        "count": args.count, "ackmode": args.ackmode, "encoding": args.encoding,
    }) or []  # fmt: skip
    if args.json:
        _print_json(messages)
        return
    if not messages:
        print(f"no messages in queue {args.queue!r}")
    for number, message in enumerate(messages, 1):
        if number > 1:
            print()
        print(format_message(number, message))


def cmd_replay(client: ManagementClient, args: argparse.Namespace) -> None:
    """Publish records of a queue's log again (a warrenmq endpoint; RabbitMQ has none)."""
    body: dict[str, Any] = {"all": args.all}
    if args.from_offset is not None:
        body["from_offset"] = args.from_offset
    else:  # epoch ms as a number, anything else for the broker to read as ISO 8601
        text = args.from_time.strip()
        body["from_time"] = int(text) if text.isdigit() else text
    for key, value in (("to_offset", args.to_offset), ("limit", args.limit), ("to_queue", args.to)):
        if value is not None:
            body[key] = value
    if args.to_origin:
        body["to_origin"] = True
    counts = client.request("POST", api_path("queues", args.vhost, args.queue, "replay"), body)
    if args.json:
        _print_json(counts)
        return
    counts = counts or {}
    where = ("each record's origin exchange" if args.to_origin
             else f"queue {(args.to or args.queue)!r}")  # fmt: skip
    print(f"replayed {counts.get('replayed', 0)} records of queue {args.queue!r} into {where}: "
          f"skipped {counts.get('skipped', 0)}, unroutable {counts.get('unroutable', 0)}, "
          f"refused {counts.get('refused', 0)}; next offset {counts.get('next_offset', '')}")  # fmt: skip


def cmd_offsets(client: ManagementClient, args: argparse.Namespace) -> None:
    """A queue's log offsets and each committed offset's lag (a warrenmq endpoint; RabbitMQ has none)."""
    answer = client.request("GET", api_path("queues", args.vhost, args.queue, "offsets")) or {}
    if args.json:
        _print_json(answer)
        return
    print(format_table(_columns("partition", "log_start", "log_end", "messages"),
                       answer.get("partitions") or []))  # fmt: skip
    consumers = answer.get("consumers") or []
    if consumers:
        print()
        print(format_table(_columns("name", "group", "partition", "committed", "lag"), consumers))


def format_message(number: int, message: dict[str, Any]) -> str:
    """One fetched message as "field: value" lines, the payload last (it may span lines)."""
    exchange = message.get("exchange", "")
    fields = [
        ("exchange", DEFAULT_EXCHANGE_LABEL if exchange == "" else exchange),
        ("routing_key", message.get("routing_key", "")),
        ("redelivered", cell(message.get("redelivered"))),
        ("message_count", cell(message.get("message_count"))),  # left in the queue
        ("properties", json.dumps(message.get("properties") or {}, sort_keys=True)),
        ("payload_bytes", cell(message.get("payload_bytes"))),
        ("payload_encoding", cell(message.get("payload_encoding"))),
        ("payload", message.get("payload", "")),
    ]
    width = max(len(name) for name, _ in fields) + 1
    return f"message {number}\n" + "\n".join(
        f"  {(name + ':').ljust(width)} {value}" for name, value in fields
    )


# ------------------------------------------------------------------ argument parsing
def _url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def _property(text: str) -> tuple[str, Any]:
    key, value = _key_value(text)
    key = key.replace("-", "_")
    if key not in _PROPERTIES:
        hint = (
            "use --header for headers" if key == "headers" else f"one of {', '.join(_PROPERTIES)}"
        )
        raise argparse.ArgumentTypeError(f"unknown property {key!r} ({hint})")
    if key in _INTEGER_PROPERTIES:
        try:
            return key, int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"property {key} must be an integer") from None
    return key, value


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def _non_negative(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return number


def _add_common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every command takes; suppress leaves unset ones to the ctl level."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    env = os.environ
    parser.add_argument("--url", type=_url,
                        default=default(env.get("WARRENMQ_MANAGEMENT_URL") or DEFAULT_URL),
                        help="management API base URL (env WARRENMQ_MANAGEMENT_URL; "
                             f"default {DEFAULT_URL})")  # fmt: skip
    parser.add_argument(
        "-u",
        "--user",
        default=default(env.get("WARRENMQ_USER") or "guest"),
        help="user name (env WARRENMQ_USER; default guest)",
    )
    parser.add_argument("-p", "--password",
                        default=default(env.get("WARRENMQ_PASSWORD") or "guest"),
                        help="password (env WARRENMQ_PASSWORD; default guest)")  # fmt: skip
    parser.add_argument("--vhost", default=default("/"), help="virtual host (default /)")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="print the API's JSON instead of a table")  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `ctl` and its commands on the top-level subcommands."""
    ctl = sub.add_parser("ctl", help="operate a running broker through its management API",
                         description="Operate a running broker (or any RabbitMQ-compatible "
                                     "node) through its management HTTP API.")  # fmt: skip
    _add_common_options(ctl, suppress=False)
    ctl.set_defaults(run=run)
    commands = ctl.add_subparsers(dest="ctl_command", required=True, metavar="COMMAND")

    def command(parent: argparse._SubParsersAction, name: str, handler: Callable[..., None],
                help_text: str) -> argparse.ArgumentParser:  # fmt: skip
        parser = parent.add_parser(name, help=help_text, description=help_text)
        _add_common_options(parser, suppress=True)
        parser.set_defaults(handler=handler)
        return parser

    listing = command(commands, "list", cmd_list, "list objects as a table")
    listing.add_argument("kind", choices=list(LISTINGS))
    listing.add_argument("--all-vhosts", action="store_true",
                         help="every vhost, not only --vhost")  # fmt: skip

    purge = command(commands, "purge", cmd_purge, "remove every ready message from a queue")
    purge.add_argument("queue")

    delete = commands.add_parser("delete", help="delete a queue or an exchange")
    kinds = delete.add_subparsers(dest="kind", required=True, metavar="queue|exchange")
    queue = command(kinds, "queue", cmd_delete, "delete a queue")
    queue.add_argument("name")
    queue.add_argument("--if-empty", action="store_true", help="only if it holds no messages")
    queue.add_argument("--if-unused", action="store_true", help="only if it has no consumers")
    exchange = command(kinds, "exchange", cmd_delete, "delete an exchange")
    exchange.add_argument("name")
    exchange.add_argument("--if-unused", action="store_true", help="only if it has no bindings")

    close = commands.add_parser("close", help="close a client connection")
    close_kinds = close.add_subparsers(dest="kind", required=True, metavar="connection")
    connection = command(close_kinds, "connection", cmd_close, "close a client connection")
    connection.add_argument("name", help="the connection's name, as `list connections` shows it")
    connection.add_argument("--reason", help="the text the client sees in connection.close")

    publish = command(commands, "publish", cmd_publish, "publish one message to an exchange")
    publish.add_argument("--exchange", "-e", default="",
                         help="exchange name (default: the default exchange)")  # fmt: skip
    publish.add_argument("--routing-key", "-k", default="", help="routing key")
    publish.add_argument("--property", dest="properties", action="append", type=_property,
                         metavar="KEY=VALUE", help="a basic property, e.g. content_type="
                         "text/plain or delivery_mode=2 (repeatable)")  # fmt: skip
    publish.add_argument("--header", dest="headers", action="append", type=_key_value,
                         metavar="KEY=VALUE", help="a header, sent as a string (repeatable)")  # fmt: skip
    publish.add_argument("body", nargs="?", default="", metavar="BODY",
                         help="the payload; - reads it from stdin (default: empty)")  # fmt: skip

    get = command(commands, "get", cmd_get, "fetch messages from a queue")
    get.add_argument("queue")
    get.add_argument(
        "--count", "-c", type=_positive, default=1, help="at most this many (default 1)"
    )
    get.add_argument("--ackmode", choices=ACK_MODES, default="ack_requeue_true",
                     help="what happens to them afterwards (default ack_requeue_true)")  # fmt: skip
    get.add_argument("--encoding", choices=("auto", "base64"), default="auto",
                     help="auto: text as is, binary as base64 (default auto)")  # fmt: skip

    replay = command(commands, "replay", cmd_replay,
                     "publish records of a queue's log again (settled ones unless --all)")  # fmt: skip
    replay.add_argument("queue")
    start = replay.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-offset", type=_non_negative, metavar="N", help="start at offset N")
    start.add_argument("--from-time", metavar="T",
                       help="start at the first record published at or after T "
                            "(ISO 8601, or ms since the epoch)")  # fmt: skip
    replay.add_argument("--to-offset", type=_non_negative, metavar="N", help="stop before offset N")
    replay.add_argument("--limit", type=_positive, metavar="K", help="at most K records")
    target = replay.add_mutually_exclusive_group()
    target.add_argument("--to", metavar="QUEUE", help="into this queue (default: the same queue)")
    target.add_argument("--to-origin", action="store_true",
                        help="dead-lettered records back to the exchange and routing key "
                             "of their first x-death entry")  # fmt: skip
    replay.add_argument("--all", action="store_true",
                        help="unsettled records too (default: only settled ones)")  # fmt: skip

    offsets = command(commands, "offsets", cmd_offsets,
                      "show a queue's log offsets and its consumers' committed offsets and lag")  # fmt: skip
    offsets.add_argument("queue")


def run(args: argparse.Namespace) -> int:
    """Run one ctl command; 1 on an API or connection error, reported on stderr."""
    client = ManagementClient(args.url, args.user, args.password)
    try:
        args.handler(client, args)
    except CtlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (`| head`) has gone: stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
