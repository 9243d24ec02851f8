"""`warrenmq topology graph` and `to_dot`: the DOT a topology draws as, and the command line.

The DOT is read back with a small parser of the subset `to_dot` writes
(node lines, edge lines, clusters), so the tests look at nodes, edges and
labels rather than at exact text. Where Graphviz's `dot` is installed, it
must also accept the text and draw the names exactly as written.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.broker import BrokerProcess

from warrenmq.broker.topology import graph
from warrenmq.broker.topology.graph import RenderError, render, to_dot

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot program is not installed")

_STRING = r'"(?:[^"\\]|\\.)*"'
_NODE = re.compile(rf"^\s*({_STRING}) \[(.*)\];$")
_EDGE = re.compile(rf"^\s*({_STRING}) -> ({_STRING})(?: \[(.*)\])?;$")
_CLUSTER = re.compile(rf"^\s*subgraph ({_STRING}) {{$")
_ATTRIBUTE = re.compile(rf"(\w+)=({_STRING}|[^,\s]+)")


def unquote(text: str) -> str:
    """A DOT quoted string's value, as Graphviz's lexer reads it (only \\" is an escape)."""
    assert text[0] == text[-1] == '"', text
    return re.sub(r'\\"', '"', text[1:-1])


def label_lines(label: str) -> list[str]:
    """What a label shows: escString escapes resolved, split at its \\n line breaks."""
    lines, current, chars = [], [], iter(label)
    for char in chars:
        if char != "\\":
            current.append(char)
            continue
        escaped = next(chars)
        if escaped == "n":
            lines.append("".join(current))
            current = []
        else:
            current.append(escaped)
    lines.append("".join(current))
    return [line.replace("&amp;", "&") for line in lines]


def attributes(text: str | None) -> dict[str, str]:
    found = {}
    for name, value in _ATTRIBUTE.findall(text or ""):
        found[name] = unquote(value) if value.startswith('"') else value
    return found


@dataclass
class Edge:
    source: str  # the node's label's first line: the entity's name
    target: str
    attrs: dict[str, str]

    @property
    def label(self) -> list[str]:
        return label_lines(self.attrs["label"]) if "label" in self.attrs else []


@dataclass
class Dot:
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)  # node ID -> attributes
    edges: list[Edge] = field(default_factory=list)
    clusters: dict[str, list[str]] = field(default_factory=dict)  # cluster label -> node IDs

    def name(self, node_id: str) -> str:
        return self.label(node_id)[0]

    def label(self, node_id: str) -> list[str]:
        return label_lines(self.nodes[node_id]["label"])

    def node(self, name: str, kind: str = "") -> dict[str, str]:
        """The one node drawn for `name` (IDs start with e/ for exchanges, q/ for queues)."""
        found = [attrs for node_id, attrs in self.nodes.items()
                 if self.name(node_id) == name and unquote(node_id).startswith(kind)]  # fmt: skip
        assert len(found) == 1, (name, self.nodes)
        return found[0]

    def edges_between(self, source: str, target: str) -> list[Edge]:
        return [e for e in self.edges if (e.source, e.target) == (source, target)]


def parse(text: str) -> Dot:
    """The subset of DOT `to_dot` writes; any other line than these fails the test."""
    dot, cluster = Dot(), None
    lines = text.splitlines()
    assert lines[0] == "digraph topology {" and lines[-1] == "}", text
    for line in lines[1:-1]:
        if _CLUSTER.match(line):
            cluster = []
        elif cluster is not None and line.strip().startswith("graph [label="):
            heading = label_lines(attributes(line)["label"])
            dot.clusters[" / ".join(heading)] = cluster
        elif (edge := _EDGE.match(line)) is not None:
            dot.edges.append(Edge(edge.group(1), edge.group(2), attributes(edge.group(3))))
        elif (node := _NODE.match(line)) is not None:
            assert node.group(1) not in dot.nodes, f"node drawn twice: {line}"
            dot.nodes[node.group(1)] = attributes(node.group(2))
            assert cluster is not None, f"node outside any vhost cluster: {line}"
            cluster.append(node.group(1))
        elif line.strip() == "}":
            cluster = None
        else:
            assert re.match(r"^\s*(graph|node|edge) \[.*\];$", line), f"unexpected line: {line!r}"
    for edge in dot.edges:
        assert edge.source in dot.nodes and edge.target in dot.nodes, f"edge to no node: {edge}"
        edge.source, edge.target = dot.name(edge.source), dot.name(edge.target)
    return dot


def exchange(name: str, kind: str, vhost: str = "shop", **arguments: Any) -> dict[str, Any]:
    return {"name": name, "vhost": vhost, "type": kind, "durable": True, "auto_delete": False,
            "internal": False, "arguments": arguments}  # fmt: skip


def queue(name: str, vhost: str = "shop", **arguments: Any) -> dict[str, Any]:
    return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False,
            "arguments": arguments}  # fmt: skip


def binding(source: str, destination: str, key: str = "", *, vhost: str = "shop",
            to_exchange: bool = False, **arguments: Any) -> dict[str, Any]:  # fmt: skip
    return {"source": source, "vhost": vhost, "destination": destination,
            "destination_type": "exchange" if to_exchange else "queue", "routing_key": key,
            "arguments": arguments}  # fmt: skip


SHOP = {
    "vhosts": [{"name": "shop", "description": "the shop"}, {"name": "/"}],
    "exchanges": [
        exchange("orders", "topic", **{"alternate-exchange": "orders.unrouted"}),
        exchange("orders.unrouted", "fanout"),
        exchange("tasks", "direct"),
        exchange("documents", "headers"),
        exchange("shards", "x-consistent-hash"),
        exchange("later", "x-delayed-message", **{"x-delayed-type": "topic"}),
        exchange("audit", "fanout") | {"internal": True},
        exchange("", "direct"),  # the default exchange, as some exports list it
        exchange("jobs", "direct", vhost="/"),
    ],
    "queues": [
        queue(
            "orders.created",
            **{
                "x-message-ttl": 30000,
                "x-max-length": 1000,
                "x-dead-letter-exchange": "orders.dead",
                "x-dead-letter-routing-key": "created",
            },
        ),  # fmt: skip
        queue("orders.unrouted"),
        queue("orders.dead"),
        queue("reports", **{"x-max-length-bytes": 1024**3, "x-expires": 90 * 60000}),
        queue("shard.a"),
        queue("shard.b"),
        queue("audit.log", **{"x-queue-type": "quorum"}),
        queue(
            "retry",
            **{
                "x-message-ttl": 1500,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "orders.created",
            },
        ),  # fmt: skip
        queue("jobs", vhost="/"),
    ],
    "bindings": [
        binding("orders", "orders.created", "order.created"),
        binding("orders.unrouted", "orders.unrouted", "ignored"),
        binding("tasks", "orders.created", ""),
        binding(
            "documents", "reports", "", **{"x-match": "all", "format": "pdf", "type": "report"}
        ),
        binding("shards", "shard.a", "1"),
        binding("shards", "shard.b", "2"),
        binding("orders", "audit", "#", to_exchange=True),
        binding("audit", "audit.log"),
        binding("amq.topic", "orders.dead", "dead.#"),
        binding("", "orders.created", "orders.created"),  # the default exchange's implicit binding
        binding("jobs", "jobs", "run", vhost="/"),
    ],
}
SHOP["exchanges"].append(exchange("orders.dead", "direct"))


# ------------------------------------------------------------------ to_dot
def test_one_cluster_per_vhost_with_its_own_nodes() -> None:
    dot = parse(to_dot(SHOP))
    assert set(dot.clusters) == {"vhost /", "vhost shop / the shop"}
    names = {label: sorted(dot.name(n) for n in ids) for label, ids in dot.clusters.items()}
    assert names["vhost /"] == ["jobs", "jobs"]  # an exchange and a queue of the same name
    assert "orders" in names["vhost shop / the shop"]
    assert "jobs" not in names["vhost shop / the shop"]


def test_exchanges_are_drawn_by_type() -> None:
    dot = parse(to_dot(SHOP))
    shapes = {name: dot.node(name, "e/")["shape"] for name in
              ("tasks", "orders.unrouted", "orders", "documents", "shards", "later")}  # fmt: skip
    assert shapes == {"tasks": "box", "orders.unrouted": "trapezium", "orders": "hexagon",
                      "documents": "octagon", "shards": "ellipse", "later": "invhouse"}  # fmt: skip
    assert label_lines(dot.node("orders", "e/")["label"]) == ["orders", "topic"]
    assert label_lines(dot.node("later", "e/")["label"]) == ["later", "x-delayed-message (topic)"]
    assert label_lines(dot.node("audit", "e/")["label"]) == ["audit", "fanout", "internal"]


def test_the_default_exchange_is_left_out() -> None:
    dot = parse(to_dot(SHOP))
    assert "" not in {dot.name(n) for n in dot.nodes}
    # Its implicit binding is no edge; the dead-letter edge through it goes straight to the queue.
    into_created = [e for e in dot.edges if e.target == "orders.created"]
    assert sorted(e.source for e in into_created) == ["orders", "retry", "tasks"]


def test_queue_labels_carry_the_arguments_that_matter() -> None:
    dot = parse(to_dot(SHOP))
    assert label_lines(dot.node("orders.created", "q/")["label"]) == [
        "orders.created", "ttl 30s", "max-length 1000", "DLX orders.dead"]  # fmt: skip
    assert label_lines(dot.node("reports", "q/")["label"]) == [
        "reports", "expires 90m", "max-length-bytes 1GiB"]  # fmt: skip
    assert label_lines(dot.node("retry", "q/")["label"]) == [
        "retry", "ttl 1500ms", "DLX (default exchange)"]  # fmt: skip
    assert label_lines(dot.node("audit.log", "q/")["label"]) == ["audit.log", "quorum"]
    assert dot.node("reports", "q/")["shape"] == "cylinder"


def test_binding_edges_are_labelled_by_what_routes() -> None:
    dot = parse(to_dot(SHOP))
    (topic,) = dot.edges_between("orders", "orders.created")
    assert topic.label == ["order.created"]
    (direct,) = dot.edges_between("tasks", "orders.created")
    assert direct.label == ["(empty key)"]
    (fanout,) = dot.edges_between("orders.unrouted", "orders.unrouted")
    assert fanout.label == [], "a fanout exchange ignores the key"
    (headers,) = dot.edges_between("documents", "reports")
    assert headers.label == ["x-match=all", "format=pdf", "type=report"]
    weights = [e.label for e in dot.edges if e.source == "shards"]
    assert sorted(weights) == [["weight 1"], ["weight 2"]]
    for edge in (topic, direct, fanout, headers):
        assert "style" not in edge.attrs


def test_exchange_to_exchange_dead_letter_and_alternate_edges() -> None:
    dot = parse(to_dot(SHOP))
    (e2e,) = dot.edges_between("orders", "audit")
    assert (e2e.label, e2e.attrs["style"]) == (["#"], "bold")
    (alternate,) = dot.edges_between("orders", "orders.unrouted")
    assert (alternate.label, alternate.attrs["style"]) == (["alternate"], "dotted")
    (dead,) = dot.edges_between("orders.created", "orders.dead")
    assert (dead.label, dead.attrs["style"]) == (["dead-letter", "key created"], "dashed")
    (via_default,) = dot.edges_between("retry", "orders.created")
    assert via_default.label == ["dead-letter", "key orders.created", "via the default exchange"]
    assert via_default.attrs["style"] == "dashed"


def test_names_that_point_nowhere_are_drawn_apart() -> None:
    dot = parse(to_dot(SHOP))
    assert label_lines(dot.node("amq.topic", "e/")["label"]) == ["amq.topic", "topic (built in)"]
    definitions = {"queues": [queue("q", **{"x-dead-letter-exchange": "gone"})]}
    dot = parse(to_dot(definitions))
    assert label_lines(dot.node("gone", "e/")["label"]) == ["gone", "exchange, not defined here"]
    assert "dashed" in dot.node("gone", "e/")["style"]
    assert dot.edges_between("q", "gone")[0].label == ["dead-letter"]


def test_output_is_the_same_whatever_the_order_of_the_input() -> None:
    first = to_dot(SHOP, title="shop")
    shuffled = {key: list(value) for key, value in SHOP.items()}
    rng = random.Random(7)
    for items in shuffled.values():
        rng.shuffle(items)
    assert to_dot(shuffled, title="shop") == first
    assert to_dot(json.loads(json.dumps(SHOP)), title="shop") == first
    # And the order in the text is sorted: exchanges, then queues, by name.
    shop_ids = parse(first).clusters["vhost shop / the shop"]
    exchange_ids = [i for i in shop_ids if unquote(i).startswith("e/")]
    names = [parse(first).name(i) for i in exchange_ids]
    assert names == sorted(names[:-1]) + ["amq.topic"]  # the undefined ones come after


def test_a_title_and_a_definitions_document_without_vhost_fields() -> None:
    export = {"exchanges": [{"name": "x", "type": "fanout"}], "queues": [{"name": "q"}],
              "bindings": [{"source": "x", "destination": "q", "destination_type": "queue",
                            "routing_key": ""}]}  # fmt: skip
    text = to_dot(export, title='the "shop" topology')
    assert 'label="the \\"shop\\" topology"' in text.splitlines()[1]
    dot = parse(text)
    assert list(dot.clusters) == ["vhost /"]
    assert [(e.source, e.target) for e in dot.edges] == [("x", "q")]


HOSTILE = [
    'say "hi"',
    "back\\slash",
    "ends in a backslash\\",
    "\\",
    'mixed \\" quote',
    "naïve ünïcödé 日本語 🐇",
    "a&amp;b <i>x</i>",
    "line\nbreak",
    "\\N \\G \\l",
    "x-match=all",
]


def hostile_definitions() -> dict[str, Any]:
    return {
        "vhosts": [{"name": 'v"h\\ost'}],
        "exchanges": [exchange(name, "topic", vhost='v"h\\ost') for name in HOSTILE],
        "queues": [queue(name, vhost='v"h\\ost') for name in HOSTILE],
        "bindings": [binding(name, name, name, vhost='v"h\\ost') for name in HOSTILE],
    }


def shown(name: str) -> str:
    """How a label shows a name: control characters as \\xNN text."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", name)


def test_hostile_names_are_quoted_so_that_each_reads_back_exactly() -> None:
    text = to_dot(hostile_definitions())
    dot = parse(text)  # every line is well formed: no name broke out of its quotes
    assert len(dot.nodes) == 2 * len(HOSTILE), "every name has its own node, none merged"
    assert list(dot.clusters) == ['vhost v"h\\ost']
    for name in HOSTILE:
        assert dot.node(shown(name), "e/") and dot.node(shown(name), "q/")
        (edge,) = dot.edges_between(shown(name), shown(name))
        assert edge.label == [shown(name)]
    assert "\nbreak" not in text, "a newline in a name never ends a DOT line"


def test_dot_string_is_exact_for_ids() -> None:
    assert graph.dot_string('a"b') == '"a\\"b"'
    assert graph.dot_string("a\\") == '"a\\\\"'
    assert graph.dot_string("a\x1bb") == '"a\\x1bb"'
    assert graph.dot_string("a\\x1bb") == '"a\\\\x1bb"', "a real backslash never meets an escape"


@needs_dot
def test_graphviz_accepts_the_dot_and_draws_the_names_as_written() -> None:
    svg = render(to_dot(hostile_definitions(), title="hostile"), "svg")
    root = ET.fromstring(svg)
    texts = {"".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")}
    for name in HOSTILE:
        assert shown(name) in texts, (name, sorted(texts))
    assert 'vhost v"h\\ost' in texts


@needs_dot
def test_render_png_and_svg() -> None:
    text = to_dot(SHOP)
    assert render(text, "png").startswith(b"\x89PNG\r\n\x1a\n")
    assert b"<svg" in render(text, "svg")
    with pytest.raises(RenderError, match="dot failed"):
        render("digraph { this is not dot", "svg")


def test_render_without_graphviz_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph.shutil, "which", lambda program: None)
    with pytest.raises(
        RenderError, match="Graphviz's `dot` program is not installed.*--format dot"
    ):
        render(to_dot(SHOP), "svg")
    with pytest.raises(ValueError):
        render(to_dot(SHOP), "pdf")


# ------------------------------------------------------------------ the command line
ORDERS_YAML = """\
vhosts: [{name: shop}]
exchanges:
  - {name: orders, vhost: shop, type: topic, alternate-exchange: orders.unrouted}
  - {name: orders.unrouted, vhost: shop, type: fanout}
queues:
  - {name: orders, vhost: shop, ttl: 30s}
  - {name: orders.unrouted, vhost: shop}
bindings:
  - {vhost: shop, from: orders, to: orders, routing-key: order.created}
  - {vhost: shop, from: orders.unrouted, to: orders.unrouted}
retry:
  - {vhost: shop, queue: orders, delays: [1s, 10s], then: orders.parking}
"""


def graph_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warrenmq.broker.cli", "topology", "graph", *args],
                          capture_output=True, timeout=60, env=env)  # fmt: skip


def test_cli_draws_a_file_with_its_retry_ladder_expanded(kit: Any, workdir: Path) -> None:
    path = kit.write(workdir, "orders.yaml", ORDERS_YAML)
    result = kit.topology("graph", str(path))
    assert (result.code, result.err) == (0, "")
    assert 'label="orders.yaml"' in result.lines[1], "the file name is the default title"
    dot = parse(result.out)
    (retry_1,) = [e for e in dot.edges if e.source == "orders.retry.1"]
    assert (retry_1.target, retry_1.label) == (
        "orders.retry.return",
        ["dead-letter", "key orders.retry.1"],
    )
    (last,) = dot.edges_between("orders.retry", "orders.parking")
    assert last.label == ["orders.retry.2"]
    assert dot.edges_between("orders.retry", "orders.retry.first")[0].label == ["alternate"]
    assert label_lines(dot.node("orders.retry.2", "q/")["label"])[:2] == [
        "orders.retry.2",
        "ttl 10s",
    ]


def test_cli_writes_to_a_file_and_takes_a_title(kit: Any, workdir: Path) -> None:
    path = kit.write(workdir, "orders.yaml", ORDERS_YAML)
    out = workdir / "orders.dot"
    result = kit.topology("graph", str(path), "-o", str(out), "--title", "Orders")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert out.read_text() == to_dot(graph.load(path).definitions, title="Orders")


def test_cli_reports_every_problem_of_a_bad_file(kit: Any, workdir: Path) -> None:
    path = kit.write(workdir, "bad.yaml", "queues:\n  - name: q\n    ttl: soon\nbindings:\n"
                                          "  - {from: nowhere, to: q}\n")  # fmt: skip
    result = kit.topology("graph", str(path))
    assert result.code == 1 and result.out == ""
    assert "bad.yaml:3: queues[0].ttl: must be a duration" in result.err
    assert "bad.yaml:5: bindings[0].from: unknown exchange 'nowhere'" in result.err


def test_cli_needs_exactly_one_of_file_and_url(kit: Any) -> None:
    assert kit.topology("graph").code == 2
    assert kit.topology("graph", "x.yaml", "--url", "http://127.0.0.1:1").code == 2


def test_cli_svg_without_graphviz_is_a_clear_error(workdir: Path) -> None:
    path = workdir / "orders.yaml"
    path.write_text(ORDERS_YAML)
    done = graph_command(str(path), "--format", "svg", env={"PATH": str(workdir)})
    assert done.returncode == 1 and done.stdout == b""
    assert b"needs Graphviz's `dot` program, which is not installed" in done.stderr


@needs_dot
def test_cli_svg_and_png_to_a_file_and_to_stdout(workdir: Path) -> None:
    path = workdir / "orders.yaml"
    path.write_text(ORDERS_YAML)
    done = graph_command(str(path), "--format", "png", "-o", str(workdir / "orders.png"))
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    assert (workdir / "orders.png").read_bytes().startswith(b"\x89PNG")
    done = graph_command(str(path), "--format", "svg")
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)
    texts = {"".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"orders.retry.1", "alternate", "order.created"} <= texts


def test_cli_draws_a_running_broker(kit: Any, broker: BrokerProcess) -> None:
    client = kit.client(broker)
    client.request("POST", "/api/definitions", {
        "vhosts": [{"name": "shop"}],
        "exchanges": [exchange("orders", "topic", **{"alternate-exchange": "unrouted"}),
                      exchange("unrouted", "fanout"), exchange("audit", "fanout")],
        "queues": [queue("orders.created", **{"x-message-ttl": 60000,
                                              "x-dead-letter-exchange": "audit"}),
                   queue("trail")],
        "bindings": [binding("orders", "orders.created", "order.*"),
                     binding("orders", "audit", "#", to_exchange=True),
                     binding("audit", "trail")],
    })  # fmt: skip
    result = kit.topology("graph", "--url", broker.management_url)
    assert (result.code, result.err) == (0, "")
    dot = parse(result.out)
    assert "vhost shop" in dot.clusters
    assert label_lines(dot.node("orders.created", "q/")["label"]) == [
        "orders.created", "ttl 1m", "DLX audit"]  # fmt: skip
    assert dot.edges_between("orders", "orders.created")[0].label == ["order.*"]
    assert dot.edges_between("orders", "audit")[0].attrs["style"] == "bold"
    assert dot.edges_between("orders", "unrouted")[0].label == ["alternate"]
    assert dot.edges_between("orders.created", "audit")[0].attrs["style"] == "dashed"
    assert not any(dot.name(n).startswith("amq.") for n in dot.nodes), "built-ins are not exported"

    refused = kit.topology("graph", "--url", broker.management_url, "-p", "wrong")
    assert refused.code == 1 and refused.out == ""
    assert refused.err.startswith("warrenmq topology graph: ")
