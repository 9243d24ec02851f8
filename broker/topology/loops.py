"""Dead-letter loops that drop messages: queues that expire into each other, round and round.

A queue with a message TTL dead-letters what nobody consumed to its
dead-letter exchange. When that leads (through the exchange's bindings,
exchange-to-exchange bindings and alternate exchanges) to a queue that
also expires into the same circle, a message goes round without a
consumer ever rejecting it, and the broker drops it at the second visit
as a dead-letter cycle: silently lost. (A retry ladder is no such loop:
its work queue has no TTL, so a message comes back only when a consumer
rejects it.)

We follow routing keys where we can: a message keeps its routing key
unless a queue sets `x-dead-letter-routing-key`, and a direct binding
tells which key went through it. A key we cannot know is "any", so the
check finds every loop some message could take.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from warrenmq.broker.vhost import DEFAULT_EXCHANGES

from .arguments import DELAYED_TYPE
from .entries import Entry

ANY: Any = None  # a routing key we cannot know
State = tuple[str, str | None]  # (queue, routing key or ANY)


@dataclass
class _Vhost:
    exchanges: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    bindings: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    queues: dict[str, Entry] = field(default_factory=dict)


def _topic_matches(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_topic_matches(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _topic_matches(rest, words[1:])


def _has_wildcard(pattern: str) -> bool:
    return any(word in ("*", "#") for word in pattern.split("."))


class _Router:
    def __init__(self, vhost: _Vhost) -> None:
        self.vhost = vhost

    def expiring(self, queue: str) -> bool:
        """A queue whose messages expire to an exchange that exists."""
        entry = self.vhost.queues.get(queue)
        if entry is None:
            return False
        arguments = entry.body.get("arguments", {})
        ttl, dlx = arguments.get("x-message-ttl"), arguments.get("x-dead-letter-exchange")
        known = dlx == "" or dlx in self.vhost.exchanges
        return isinstance(ttl, int) and not isinstance(ttl, bool) and isinstance(dlx, str) and known

    def dead_letter(self, state: State) -> set[State]:
        """Where a message expiring from state's queue can go next."""
        arguments = self.vhost.queues[state[0]].body["arguments"]
        dlrk = arguments.get("x-dead-letter-routing-key")
        key = dlrk if isinstance(dlrk, str) else state[1]
        return self.route(arguments["x-dead-letter-exchange"], key)

    def route(self, start: str, key: str | None) -> set[State]:
        out: set[State] = set()
        pending, seen = [(start, key)], {(start, key)}
        while pending:
            exchange, key = pending.pop()
            if exchange != "" and exchange not in self.vhost.exchanges:
                continue
            for kind, dest, dest_key in self._route_one(exchange, key):
                if kind == "queue":
                    out.add((dest, dest_key))
                elif (dest, dest_key) not in seen:
                    seen.add((dest, dest_key))
                    pending.append((dest, dest_key))
        return out

    def _route_one(self, exchange: str, key: str | None) -> Iterator[tuple[str, str, str | None]]:
        """(kind, destination, the key it carries) for one exchange, alternate included."""
        if exchange == "":
            if key is ANY:
                yield from (("queue", name, name) for name in self.vhost.queues)
            elif key in self.vhost.queues:
                yield "queue", key, key
            return
        type_name, arguments = self.vhost.exchanges[exchange]
        if type_name == DELAYED_TYPE:
            type_name = arguments.get("x-delayed-type", "direct")
        bindings = self.vhost.bindings.get(exchange, [])
        matched, unmatched_possible = [], False
        if type_name == "direct":
            if key is ANY:
                matched = [(kind, dest, rk) for kind, dest, rk in bindings]
                unmatched_possible = True
            else:
                matched = [(kind, dest, key) for kind, dest, rk in bindings if rk == key]
        elif type_name == "topic":
            if key is ANY:
                matched = [
                    (kind, dest, ANY if _has_wildcard(rk) else rk) for kind, dest, rk in bindings
                ]
                unmatched_possible = not any(rk == "#" for _, _, rk in bindings)
            else:
                words = key.split(".") if key else []
                matched = [(kind, dest, key) for kind, dest, rk in bindings
                           if _topic_matches(rk.split(".") if rk else [], words)]  # fmt: skip
        else:  # fanout, and the types whose matching we do not follow (headers, hashing)
            matched = [(kind, dest, key) for kind, dest, _ in bindings]
            unmatched_possible = type_name != "fanout"
        yield from matched
        alternate = arguments.get("alternate-exchange")
        if (
            (not matched or unmatched_possible)
            and isinstance(alternate, str)
            and alternate in self.vhost.exchanges
        ):
            yield "exchange", alternate, key


def _vhosts(entries: list[Entry]) -> dict[str, _Vhost]:
    vhosts: dict[str, _Vhost] = {}

    def of(name: str) -> _Vhost:
        if name not in vhosts:
            vhosts[name] = _Vhost({x: (t, {}) for x, t in DEFAULT_EXCHANGES})
        return vhosts[name]

    for e in entries:
        body = e.body
        if e.kind == "exchange":
            of(body["vhost"]).exchanges[body["name"]] = (
                body.get("type", "direct"),
                body.get("arguments", {}),
            )
        elif e.kind == "queue":
            of(body["vhost"]).queues[body["name"]] = e
    for e in entries:
        body = e.body
        if e.kind == "binding":
            of(body["vhost"]).bindings.setdefault(body["source"], []).append(
                (
                    body.get("destination_type", "queue"),
                    body["destination"],
                    body.get("routing_key", ""),
                )
            )
    return vhosts


def _cycles(graph: dict[State, set[State]]) -> Iterator[list[State]]:
    """One cycle of each strongly connected component that has one (Tarjan, iteratively)."""
    index: dict[State, int] = {}
    low: dict[State, int] = {}
    stack: list[State] = []
    on_stack: set[State] = set()
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root], key=str)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt], key=str))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    members = set(component)
                    if len(component) > 1 or node in graph[node]:
                        yield _walk(graph, node, members)


def _walk(graph: dict[State, set[State]], start: State, members: set[State]) -> list[State]:
    """A cycle inside one component, starting from start."""
    path, position = [start], {start: 0}
    while True:
        successors = sorted((s for s in graph[path[-1]] if s in members), key=str)
        fresh = [s for s in successors if s not in position]
        back = [s for s in successors if s in position]
        if back:
            return path[position[back[0]] :]
        position[fresh[0]] = len(path)
        path.append(fresh[0])


def dead_letter_loops(entries: list[Entry]) -> list[tuple[Entry, str]]:
    """(the queue to report at, message) for each dead-letter loop of expiring queues."""
    found: list[tuple[Entry, str]] = []
    reported: set[tuple[str, frozenset[str]]] = set()
    for vhost_name, vhost in _vhosts(entries).items():
        router = _Router(vhost)
        graph: dict[State, set[State]] = {}
        pending = [(name, ANY) for name in vhost.queues if router.expiring(name)]
        while pending:
            state = pending.pop()
            if state in graph:
                continue
            graph[state] = {s for s in router.dead_letter(state) if router.expiring(s[0])}
            pending.extend(graph[state])
        for cycle in _cycles(graph):
            names = list(dict.fromkeys(queue for queue, _ in cycle))
            key = (vhost_name, frozenset(names))
            if key in reported:
                continue
            reported.add(key)
            ring = " -> ".join([*names, names[0]])
            first = min(
                (vhost.queues[n] for n in names), key=lambda e: (e.line is None, e.line or 0)
            )
            found.append((first, (
                f"dead-letter loop {ring} in vhost '{vhost_name}': every queue in it expires its "
                "messages (message TTL) into the next, so a message nobody consumes goes round "
                "until the broker drops it as a dead-letter cycle"
            )))  # fmt: skip
    return found
