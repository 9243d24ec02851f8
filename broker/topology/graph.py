"""Draw a topology (a definitions document) as a Graphviz graph.

A routing topology is easier to review as a picture than as a list: where
an unroutable message goes, which queue dead-letters into which exchange,
what a retry ladder really expands into. `to_dot` writes DOT text with no
outside help; `render` hands it to Graphviz's `dot` program for SVG or PNG,
which is optional, so DOT always works.

The output is deterministic (everything sorted), so a graph kept under
version control only changes when the topology does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..ctl import CtlError, ManagementClient, _url
from .load import load
from .problems import TopologyError
from .units import format_duration, format_size

FORMATS = ("dot", "svg", "png")
RENDER_TIMEOUT = 60.0  # seconds; a large topology takes dot a second or two

# Graphviz shapes, one per exchange type, so a type can be told at a glance.
EXCHANGE_SHAPES = {
    "direct": "box",
    "fanout": "trapezium",
    "topic": "hexagon",
    "headers": "octagon",
    "x-consistent-hash": "ellipse",
    "x-delayed-message": "invhouse",
}
OTHER_EXCHANGE_SHAPE = "diamond"
QUEUE_SHAPE = "cylinder"
# The exchanges every vhost has, which an export leaves out; their types are fixed.
BUILTIN_EXCHANGES = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
    "amq.rabbitmq.trace": "topic",
}
EXCHANGE_FILL = "#fdebd0"
QUEUE_FILL = "#d6eaf8"
MISSING_FILL = "#f2f3f4"
DEAD_LETTER_COLOR = "#b03a2e"
ALTERNATE_COLOR = "#7d3c98"


class RenderError(RuntimeError):
    """Graphviz could not draw the graph (not installed, or it refused the DOT)."""


# ------------------------------------------------------------------ quoting
def _escape(text: str, control: str) -> str:
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif ord(char) < 32 or ord(char) == 127:
            out.append(control.format(ord(char)))
        else:
            out.append(char)
    return "".join(out)


def dot_string(text: str) -> str:
    """A DOT quoted string that stands for `text` exactly: for IDs and plain attributes.

    Inside quotes DOT only unescapes `\\"`; doubling every backslash keeps a
    name that ends in one from escaping the closing quote. A control
    character becomes the text `\\xNN` (a single backslash: a real one is
    always doubled, so two names never meet in one ID).
    """
    return '"' + _escape(text, "\\x{:02x}") + '"'


def dot_label(lines: Iterable[str]) -> str:
    """A DOT label of centred lines, each shown exactly as written.

    A label is an escString, where a backslash starts an escape (`\\N` is
    the node's name, `\\n` a line break), so a backslash in the text is
    doubled, and a control character is shown as the text `\\xNN`. Graphviz
    also decodes HTML entities in labels (`&lt;`), so `&` is written `&amp;`.
    """
    escaped = (_escape(line.replace("&", "&amp;"), "\\\\x{:02x}") for line in lines)
    return '"' + "\\n".join(escaped) + '"'


# ------------------------------------------------------------------ labels
def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def _duration(value: Any) -> str:
    is_count = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return format_duration(value) if is_count else _text(value)


def _size(value: Any) -> str:
    is_count = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return _text(format_size(value)) if is_count else _text(value)


def queue_lines(queue: dict[str, Any]) -> list[str]:
    """A queue's label: its name, then the arguments that decide what happens to its messages."""
    args = queue.get("arguments") or {}
    lines = [str(queue.get("name", ""))]
    kind = args.get("x-queue-type")
    if kind not in (None, "classic"):
        lines.append(_text(kind))
    if "x-message-ttl" in args:
        lines.append(f"ttl {_duration(args['x-message-ttl'])}")
    if "x-expires" in args:
        lines.append(f"expires {_duration(args['x-expires'])}")
    if "x-max-length" in args:
        lines.append(f"max-length {_text(args['x-max-length'])}")
    if "x-max-length-bytes" in args:
        lines.append(f"max-length-bytes {_size(args['x-max-length-bytes'])}")
    if "x-overflow" in args:
        lines.append(f"overflow {_text(args['x-overflow'])}")
    if "x-dead-letter-exchange" in args:
        dlx = _text(args["x-dead-letter-exchange"])
        lines.append(f"DLX {dlx}" if dlx else "DLX (default exchange)")
    if "x-max-priority" in args:
        lines.append(f"max-priority {_text(args['x-max-priority'])}")
    if "x-delivery-limit" in args:
        lines.append(f"delivery-limit {_text(args['x-delivery-limit'])}")
    if args.get("x-single-active-consumer"):
        lines.append("single active consumer")
    lines.extend(_lifetime(queue))
    return lines


def exchange_lines(exchange: dict[str, Any]) -> list[str]:
    """An exchange's label: its name and type (with how a delayed exchange routes once due)."""
    args = exchange.get("arguments") or {}
    kind = str(exchange.get("type") or "direct")
    if kind == "x-delayed-message" and "x-delayed-type" in args:
        kind = f"{kind} ({_text(args['x-delayed-type'])})"
    lines = [str(exchange.get("name", "")), kind]
    for key in ("hash-header", "hash-property"):
        if key in args:
            lines.append(f"{key} {_text(args[key])}")
    if exchange.get("internal"):
        lines.append("internal")
    lines.extend(_lifetime(exchange))
    return lines


def _lifetime(entity: dict[str, Any]) -> list[str]:
    lines = []
    if entity.get("durable") is False:
        lines.append("transient")
    if entity.get("auto_delete"):
        lines.append("auto-delete")
    return lines


def binding_lines(binding: dict[str, Any], source_type: str | None) -> list[str]:
    """A binding edge's label: its routing key, or what takes the key's place for the type."""
    key = str(binding.get("routing_key") or "")
    args = binding.get("arguments") or {}
    if source_type == "fanout":
        return []  # a fanout exchange ignores the key
    if source_type == "x-consistent-hash":
        return [f"weight {key}"]
    if source_type == "headers" or (source_type is None and args):
        lines = [key] if key else []
        match = args.get("x-match")
        if match is not None:
            lines.append(f"x-match={_text(match)}")
        lines.extend(f"{name}={_text(value)}" for name, value in sorted(args.items())
                     if name != "x-match")  # fmt: skip
        return lines
    return [key if key else "(empty key)"]


# ------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Node:
    kind: str  # "exchange" or "queue"
    vhost: str
    name: str

    @property
    def id(self) -> str:
        """Unique in the graph: the vhost is percent-encoded, so the second '/' ends it."""
        return dot_string(f"{self.kind[0]}/{quote(self.vhost, safe='')}/{self.name}")


@dataclass(frozen=True)
class Edge:
    order: int  # bindings first, then exchange-to-exchange, alternates, dead-letters
    source: Node
    target: Node
    attributes: tuple[tuple[str, str], ...]

    @property
    def sort_key(self) -> tuple[Any, ...]:
        return (self.order, self.source.name, self.target.kind, self.target.name, self.attributes)

    def line(self) -> str:
        attrs = ", ".join(f"{name}={value}" for name, value in self.attributes)
        return f"{self.source.id} -> {self.target.id}" + (f" [{attrs}]" if attrs else "") + ";"


class _Vhost:
    """One vhost's nodes and edges while the graph is built."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.exchanges: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.missing: set[Node] = set()  # referenced, but not in the definitions
        self.edges: list[Edge] = []

    def exchange_type(self, name: str) -> str | None:
        if name in self.exchanges:
            return str(self.exchanges[name].get("type") or "direct")
        return BUILTIN_EXCHANGES.get(name)

    def node(self, kind: str, name: str) -> Node:
        node = Node(kind, self.name, name)
        known = self.exchanges if kind == "exchange" else self.queues
        if name not in known:
            self.missing.add(node)
        return node


def _vhosts(definitions: dict[str, Any]) -> dict[str, _Vhost]:
    vhosts: dict[str, _Vhost] = {}

    def vhost(name: Any) -> _Vhost:
        name = "/" if name is None else str(name)
        if name not in vhosts:
            vhosts[name] = _Vhost(name, "")
        return vhosts[name]

    for item in definitions.get("vhosts") or []:
        metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        vhost(item.get("name")).description = str(item.get("description") or
                                                   metadata.get("description") or "")  # fmt: skip
    for item in definitions.get("exchanges") or []:
        if item.get("name"):  # the default exchange is implied, never drawn
            vhost(item.get("vhost")).exchanges[str(item["name"])] = item
    for item in definitions.get("queues") or []:
        vhost(item.get("vhost")).queues[str(item.get("name", ""))] = item
    for item in definitions.get("bindings") or []:
        if item.get("source"):
            _bind(vhost(item.get("vhost")), item)
    for v in vhosts.values():
        _arguments_edges(v)
    return vhosts


def _bind(vhost: _Vhost, binding: dict[str, Any]) -> None:
    source_name = str(binding["source"])
    source = vhost.node("exchange", source_name)
    to_exchange = binding.get("destination_type") == "exchange"
    target = vhost.node("exchange" if to_exchange else "queue", str(binding.get("destination")))
    lines = binding_lines(binding, vhost.exchange_type(source_name))
    attributes = [("label", dot_label(lines))] if lines else []
    if to_exchange:
        attributes.append(("style", "bold"))
    vhost.edges.append(Edge(1 if to_exchange else 0, source, target, tuple(attributes)))


def _arguments_edges(vhost: _Vhost) -> None:
    """Edges that arguments make: alternate exchanges, and dead-lettering."""
    for name, exchange in list(vhost.exchanges.items()):
        alternate = (exchange.get("arguments") or {}).get("alternate-exchange")
        if alternate:
            vhost.edges.append(Edge(2, vhost.node("exchange", name),
                                    vhost.node("exchange", str(alternate)), (
                ("label", dot_label(["alternate"])), ("style", "dotted"),
                ("color", dot_string(ALTERNATE_COLOR)), ("fontcolor", dot_string(ALTERNATE_COLOR)),
            )))  # fmt: skip
    for name, queue in list(vhost.queues.items()):
        args = queue.get("arguments") or {}
        if "x-dead-letter-exchange" not in args:
            continue
        dlx, key = str(args["x-dead-letter-exchange"] or ""), args.get("x-dead-letter-routing-key")
        lines = ["dead-letter"] + ([f"key {_text(key)}"] if key is not None else [])
        if dlx:
            target = vhost.node("exchange", dlx)
        elif key:  # the default exchange delivers to the queue the key names
            target = vhost.node("queue", str(key))
            lines.append("via the default exchange")
        else:
            continue  # to whichever queue the message's own key names: nothing to draw
        vhost.edges.append(Edge(3, vhost.node("queue", name), target, (
            ("label", dot_label(lines)), ("style", "dashed"),
            ("color", dot_string(DEAD_LETTER_COLOR)), ("fontcolor", dot_string(DEAD_LETTER_COLOR)),
        )))  # fmt: skip


# ------------------------------------------------------------------ DOT
def _node_line(node: Node, label: list[str], attributes: list[tuple[str, str]]) -> str:
    attrs = ", ".join(f"{name}={value}" for name, value in [("label", dot_label(label)),
                                                           *attributes])  # fmt: skip
    return f"{node.id} [{attrs}];"


def _exchange_line(vhost: _Vhost, name: str) -> str:
    exchange = vhost.exchanges[name]
    shape = EXCHANGE_SHAPES.get(str(exchange.get("type") or "direct"), OTHER_EXCHANGE_SHAPE)
    style = "filled,dashed" if exchange.get("internal") else "filled"
    return _node_line(Node("exchange", vhost.name, name), exchange_lines(exchange), [
        ("shape", shape), ("style", dot_string(style)), ("fillcolor", dot_string(EXCHANGE_FILL)),
    ])  # fmt: skip


def _queue_line(vhost: _Vhost, name: str) -> str:
    return _node_line(Node("queue", vhost.name, name), queue_lines(vhost.queues[name]), [
        ("shape", QUEUE_SHAPE), ("style", dot_string("filled")),
        ("fillcolor", dot_string(QUEUE_FILL)),
    ])  # fmt: skip


def _missing_line(node: Node) -> str:
    builtin = BUILTIN_EXCHANGES.get(node.name) if node.kind == "exchange" else None
    if builtin:
        label = [node.name, f"{builtin} (built in)"]
        shape = EXCHANGE_SHAPES[builtin]
    else:
        label = [node.name, f"{node.kind}, not defined here"]
        shape = EXCHANGE_SHAPES["direct"] if node.kind == "exchange" else QUEUE_SHAPE
    return _node_line(node, label, [
        ("shape", shape), ("style", dot_string("filled,dashed")),
        ("fillcolor", dot_string(MISSING_FILL)),
    ])  # fmt: skip


def to_dot(definitions: dict[str, Any], *, title: str | None = None) -> str:
    """The topology as DOT: one cluster per vhost, exchanges, queues and every kind of edge.

    Bindings are solid edges labelled with their key (bold between two
    exchanges), alternate exchanges dotted, dead-lettering dashed. The
    default exchange, which every queue is bound to implicitly, is left out.
    """
    lines = ["digraph topology {"]
    graph_attrs = ["rankdir=LR", 'fontname="Helvetica"']
    if title:
        graph_attrs += [f"label={dot_label([title])}", "labelloc=t", "fontsize=16"]
    lines.append(f"  graph [{', '.join(graph_attrs)}];")
    lines.append('  node [fontname="Helvetica", fontsize=10];')
    lines.append('  edge [fontname="Helvetica", fontsize=9];')
    vhosts = _vhosts(definitions)
    for index, name in enumerate(sorted(vhosts)):
        vhost = vhosts[name]
        if not (vhost.exchanges or vhost.queues or vhost.missing):
            continue  # Graphviz draws no empty cluster
        heading = [f"vhost {name}"] + ([vhost.description] if vhost.description else [])
        lines.append(f"  subgraph {dot_string(f'cluster_{index}')} {{")
        lines.append(f'    graph [label={dot_label(heading)}, style=rounded, color="#808b96"];')
        lines += [f"    {_exchange_line(vhost, x)}" for x in sorted(vhost.exchanges)]
        lines += [f"    {_queue_line(vhost, q)}" for q in sorted(vhost.queues)]
        for node in sorted(vhost.missing, key=lambda n: (n.kind, n.name)):
            lines.append(f"    {_missing_line(node)}")
        lines += [f"    {edge.line()}" for edge in sorted(vhost.edges, key=lambda e: e.sort_key)]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, fmt: str) -> bytes:
    """The graph drawn by Graphviz's `dot` as svg or png bytes; RenderError when it cannot."""
    if fmt not in ("svg", "png"):
        raise ValueError(f"render draws svg or png, not {fmt!r}")
    program = shutil.which("dot")
    if program is None:
        raise RenderError(
            "Graphviz's `dot` program is not installed, and it draws svg and png: install "
            "Graphviz (e.g. apt-get install graphviz), or use --format dot"
        )
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(),
                              capture_output=True, timeout=RENDER_TIMEOUT, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"dot failed: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip()
        raise RenderError(f"dot failed (exit {done.returncode}): {detail}")
    return done.stdout


# ------------------------------------------------------------------ CLI
def add_graph_parser(topology_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `graph` on the `warrenmq topology` subcommands."""
    description = ("Draw a topology as a Graphviz graph: from a file (YAML or definitions JSON) "
                   "or from a running broker's management API.")  # fmt: skip
    parser = topology_subparsers.add_parser("graph", help="draw a topology as a Graphviz graph",
                                            description=description)  # fmt: skip
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", metavar="FILE", help="a topology file")
    source.add_argument("--url", metavar="URL", type=_url,
                        help="a management API base URL, e.g. http://127.0.0.1:15672; "
                             "draws its /api/definitions")  # fmt: skip
    env = os.environ
    parser.add_argument("-u", "--user", default=env.get("WARRENMQ_USER") or "guest",
                        help="user name for --url (env WARRENMQ_USER; default guest)")  # fmt: skip
    parser.add_argument("-p", "--password", default=env.get("WARRENMQ_PASSWORD") or "guest",
                        help="password for --url (env WARRENMQ_PASSWORD; default guest)")  # fmt: skip
    parser.add_argument("--format", "-f", choices=FORMATS, default="dot",
                        help="dot (text, the default), or svg or png (need Graphviz's dot)")  # fmt: skip
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="write to this file instead of stdout")  # fmt: skip
    parser.add_argument("--title", help="a title above the graph (default: the file or URL)")
    parser.set_defaults(run=run_graph)
    return parser


def _fail(text: str) -> int:
    print(f"warrenmq topology graph: {text}", file=sys.stderr)
    return 1


def _definitions(args: argparse.Namespace) -> dict[str, Any]:
    if args.url:
        document = ManagementClient(args.url, args.user, args.password).request(
            "GET", "/api/definitions")  # fmt: skip
        if not isinstance(document, dict):
            raise ValueError(f"{args.url} answered something other than a definitions document")
        return document
    return load(args.file).definitions


def run_graph(args: argparse.Namespace) -> int:
    """`warrenmq topology graph`: print or write the graph; 1 with a message on failure."""
    if args.format != "dot" and shutil.which("dot") is None:
        return _fail(f"--format {args.format} needs Graphviz's `dot` program, which is not "
                     "installed: install Graphviz, or use --format dot")  # fmt: skip
    try:
        definitions = _definitions(args)
    except TopologyError as exc:  # every problem, one a line, each naming file and line
        print(exc, file=sys.stderr)
        return 1
    except (CtlError, ValueError) as exc:
        return _fail(str(exc))
    dot_text = to_dot(definitions, title=args.title or args.url or Path(args.file).name)
    try:
        data = dot_text.encode() if args.format == "dot" else render(dot_text, args.format)
    except RenderError as exc:
        return _fail(str(exc))
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            return _fail(f"cannot write {args.output}: {exc}")
    elif args.format == "dot":
        sys.stdout.write(dot_text)
    else:
        sys.stdout.flush()  # what is buffered as text goes first
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0
