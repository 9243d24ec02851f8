"""The `retry` shorthand: a ladder of delayed retries, expanded into plain entities.

`mode: ttl-queues` (the default) needs nothing of the consumer but a reject
(requeue=false). The work queue Q dead-letters to the direct exchange
`Q.retry`. A first reject keeps the message's own routing key, which no
binding of `Q.retry` matches, so its alternate exchange `Q.retry.first`
sends it to the wait queue `Q.retry.1`. Each wait queue `Q.retry.n` expires
its messages after the n-th delay back to Q (through the fanout
`Q.retry.return`) with the routing key `Q.retry.n`, so the next reject
matches the binding `Q.retry.n` -> `Q.retry.{n+1}`, and after the last
step `Q.retry.N` -> the parking queue.

`mode: delayed-exchange`: a reject parks the message (Q dead-letters to the
default exchange with the parking queue's name); the client retries by
republishing to the x-delayed-message exchange `Q.retry` (bound to Q with
routing key Q) with an `x-delay` header taken from `delays`.

Expanded entities point at the retry entry, so problems and plans name
the line the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .entries import Entry, describe, differences
from .problems import Problem


@dataclass(frozen=True)
class RetryLadder:
    """One `retry` entry: delays in milliseconds; `path`/`line` locate it in the file."""

    vhost: str
    queue: str
    delays: tuple[int, ...]
    then: str
    mode: str = "ttl-queues"
    path: str = ""
    line: int | None = None
    delay_lines: tuple[int | None, ...] = field(default=(), compare=False)

    @property
    def exchange(self) -> str:
        """Where Q dead-letters to (ttl-queues), or the client republishes to (delayed-exchange)."""
        return f"{self.queue}.retry"

    @property
    def wait_queues(self) -> tuple[str, ...]:
        """`Q.retry.1` .. `Q.retry.N` (none with a delayed exchange)."""
        if self.mode != "ttl-queues":
            return ()
        return tuple(f"{self.queue}.retry.{n}" for n in range(1, len(self.delays) + 1))


def _exchange(vhost: str, name: str, type_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "vhost": vhost, "type": type_name, "durable": True, "auto_delete": False,
            "internal": False, "arguments": arguments}  # fmt: skip


def _queue(vhost: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "vhost": vhost,
        "durable": True,
        "auto_delete": False,
        "arguments": arguments,
    }


def _binding(vhost: str, source: str, queue: str, key: str) -> dict[str, Any]:
    return {"source": source, "vhost": vhost, "destination": queue, "destination_type": "queue",
            "routing_key": key, "arguments": {}}  # fmt: skip


def ladder_entities(ladder: RetryLadder) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(kind, body, field -> retry key) of everything a ladder adds, but the work and parking queues."""
    v, q, n = ladder.vhost, ladder.queue, len(ladder.delays)
    out: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    if ladder.mode == "delayed-exchange":
        out.append(("exchange", _exchange(v, f"{q}.retry", "x-delayed-message",
                                          {"x-delayed-type": "direct"}), {}))  # fmt: skip
        out.append(("binding", _binding(v, f"{q}.retry", q, q), {}))
        return out
    out.append(("exchange", _exchange(v, f"{q}.retry", "direct",
                                      {"alternate-exchange": f"{q}.retry.first"}), {}))  # fmt: skip
    out.append(("exchange", _exchange(v, f"{q}.retry.first", "fanout", {}), {}))
    out.append(("exchange", _exchange(v, f"{q}.retry.return", "fanout", {}), {}))
    out.append(("binding", _binding(v, f"{q}.retry.first", f"{q}.retry.1", ""), {}))
    out.append(("binding", _binding(v, f"{q}.retry.return", q, ""), {}))
    for step, delay in enumerate(ladder.delays, start=1):
        name = f"{q}.retry.{step}"
        arguments = {"x-message-ttl": delay, "x-dead-letter-exchange": f"{q}.retry.return",
                     "x-dead-letter-routing-key": name}  # fmt: skip
        out.append(("queue", _queue(v, name, arguments),
                    {"arguments.x-message-ttl": f"delays[{step - 1}]"}))  # fmt: skip
        target = f"{q}.retry.{step + 1}" if step < n else ladder.then
        out.append(("binding", _binding(v, f"{q}.retry", target, name), {}))
    return out


def work_queue_arguments(ladder: RetryLadder) -> dict[str, Any]:
    """What the work queue must carry for the ladder to work."""
    if ladder.mode == "delayed-exchange":
        return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": ladder.then}
    return {"x-dead-letter-exchange": ladder.exchange}


class _Expansion:
    def __init__(self, entries: list[Entry], file: str) -> None:
        self.entries, self.file = entries, file
        self.problems: list[Problem] = []
        self.index: dict[tuple[Any, ...], Entry] = {}
        for entry in entries:
            key = _key(entry)
            if key is not None:
                self.index.setdefault(key, entry)

    def problem(self, ladder: RetryLadder, key: str, message: str) -> None:
        self.problems.append(
            Problem(self.file, ladder.line, f"{ladder.path}.{key}" if key else ladder.path, message)
        )

    def _where(self, entry: Entry) -> str:
        return f"line {entry.line} ({entry.path})" if entry.line is not None else entry.path

    def _new(
        self, ladder: RetryLadder, kind: str, body: dict[str, Any], fields: dict[str, str]
    ) -> None:
        entry = Entry(kind, body, ladder.path, ladder.line, fallback=(ladder.path, ladder.line))
        if kind in ("exchange", "queue"):
            entry.fields["name"] = (f"{ladder.path}.queue", ladder.line)
        entry.fields["vhost"] = (f"{ladder.path}.vhost", ladder.line)
        for field_name, key in fields.items():
            index = int(key.partition("[")[2].rstrip("]")) if "[" in key else None
            line = (
                ladder.delay_lines[index]
                if index is not None and index < len(ladder.delay_lines)
                else ladder.line
            )
            entry.fields[field_name] = (f"{ladder.path}.{key}", line)
        existing = self.index.get(_key(entry))
        if existing is None:
            self.index[_key(entry)] = entry
            self.entries.append(entry)
        elif diff := differences(existing.body, body):
            self.problem(ladder, "", f"{describe(kind, body)} is declared at {self._where(existing)} "
                         f"with other settings than this retry ladder needs ({diff})")  # fmt: skip

    def _work_queue(self, ladder: RetryLadder) -> None:
        needed = work_queue_arguments(ladder)
        existing = self.index.get(("queue", ladder.vhost, ladder.queue))
        if existing is None:
            self._new(ladder, "queue", _queue(ladder.vhost, ladder.queue, needed), {})
            return
        arguments = existing.body.get("arguments")
        if not isinstance(arguments, dict):
            return  # reported by validate
        ok = True
        for key, value in needed.items():
            if key in arguments and arguments[key] != value:
                self.problem(ladder, "queue", (
                    f"queue '{ladder.queue}' is declared at {self._where(existing)} "
                    f"with {key} {arguments[key]!r}; this retry ladder needs {value!r}"
                ))  # fmt: skip
                ok = False
        if ladder.mode == "ttl-queues" and "x-dead-letter-routing-key" in arguments:
            self.problem(ladder, "queue", (
                f"queue '{ladder.queue}' is declared at {self._where(existing)} with a "
                "dead-letter-routing-key; this retry ladder needs rejected messages to keep "
                "their routing key"
            ))  # fmt: skip
            ok = False
        if ok:
            for key, value in needed.items():
                if key not in arguments:
                    arguments[key] = value
                    existing.fields[f"arguments.{key}"] = (f"{ladder.path}.queue", ladder.line)

    def expand(self, ladder: RetryLadder) -> None:
        self._work_queue(ladder)
        for kind, body, fields in ladder_entities(ladder):
            self._new(ladder, kind, body, fields)
        if ("queue", ladder.vhost, ladder.then) not in self.index:
            parking = Entry("queue", _queue(ladder.vhost, ladder.then, {}), ladder.path, ladder.line,
                            fallback=(f"{ladder.path}.then", ladder.line))  # fmt: skip
            parking.fields["vhost"] = (f"{ladder.path}.vhost", ladder.line)
            self.index[("queue", ladder.vhost, ladder.then)] = parking
            self.entries.append(parking)


def _key(entry: Entry) -> tuple[Any, ...] | None:
    ident = entry.identity
    if not all(isinstance(part, str) for part in ident):
        return None
    return (entry.kind, *ident)


def expand_retries(ladders: list[RetryLadder], entries: list[Entry], file: str) -> list[Problem]:
    """Add every ladder's entities to entries (in place); problems name both conflicting lines."""
    expansion = _Expansion(entries, file)
    for ladder in ladders:
        expansion.expand(ladder)
    return expansion.problems
