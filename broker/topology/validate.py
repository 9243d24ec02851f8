"""Checks of a topology in definitions form: every problem at once, each where it was written.

Three passes: each entity's own fields (types, required keys, the broker's
argument checks); then the entities together (declared twice with other
settings, names that point nowhere); then the dead-letter loops
(`loops.py`). Entities whose names are broken are left out of the later
passes, so one typo gives one problem, not a cascade.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from warrenmq.broker.users import HASHES
from warrenmq.broker.vhost import DEFAULT_EXCHANGES

from .arguments import exchange_problem, queue_argument_problems, router_for
from .entries import Entry, differences
from .loops import dead_letter_loops
from .problems import Problem
from .reader import type_name

BUILTIN_EXCHANGES = frozenset(name for name, _ in DEFAULT_EXCHANGES)
DEFAULT_EXCHANGE_NAMES = ("", "amq.default")
Check = Callable[[Any], str | None]


# ------------------------------------------------------------------ value checks
def _name(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be a non-empty string, not {value!r}"
    return None


def _string(value: Any) -> str | None:
    return (
        None if isinstance(value, str) else f"must be a string, not {type_name(value)} ({value!r})"
    )


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {value!r}"


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a mapping, not {type_name(value)}"


def _tags(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return None
    return f"must be a list of strings, not {value!r}"


def _regex(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a regular expression (a string), not {value!r}"
    try:
        re.compile(value)
    except re.error as exc:
        return f"is not a valid regular expression: {exc}"
    return None


def _hashing(value: Any) -> str | None:
    return None if value in HASHES else f"must be one of {', '.join(HASHES)}, not {value!r}"


def _not_reserved(kind: str) -> Check:
    def check(value: Any) -> str | None:
        problem = _name(value)
        if problem is None and value.startswith("amq."):
            return f"'{value}' starts with 'amq.', which is reserved for the broker's {kind}s"
        return problem

    return check


def _destination_type(value: Any) -> str | None:
    return None if value in ("queue", "exchange") else f"must be queue or exchange, not {value!r}"


# field -> (required, check), per kind; identity fields come first.
FIELDS: dict[str, dict[str, tuple[bool, Check]]] = {
    "vhost": {"name": (True, _name), "description": (False, _string), "tags": (False, _tags)},
    "user": {"name": (True, _name), "password_hash": (True, _string),
             "hashing_algorithm": (False, _hashing), "tags": (False, _tags),
             "limits": (False, _mapping)},
    "permission": {"user": (True, _name), "vhost": (True, _name), "configure": (True, _regex),
                   "write": (True, _regex), "read": (True, _regex)},
    "exchange": {"name": (True, _not_reserved("exchange")), "vhost": (True, _name),
                 "type": (False, _string), "durable": (False, _boolean),
                 "auto_delete": (False, _boolean), "internal": (False, _boolean),
                 "arguments": (False, _mapping)},
    "queue": {"name": (True, _not_reserved("queue")), "vhost": (True, _name),
              "durable": (False, _boolean), "auto_delete": (False, _boolean),
              "arguments": (False, _mapping)},
    "binding": {"source": (True, _string), "vhost": (True, _name), "destination": (True, _name),
                "destination_type": (False, _destination_type), "routing_key": (False, _string),
                "arguments": (False, _mapping)},
}  # fmt: skip
# A problem in one of these leaves the entity out of the later passes.
IDENTITY_FIELDS = {
    "vhost": ("name",), "user": ("name",), "permission": ("user", "vhost"),
    "exchange": ("name", "vhost"), "queue": ("name", "vhost"),
    "binding": ("source", "vhost", "destination", "destination_type", "routing_key", "arguments"),
}  # fmt: skip


def _did_you_mean(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Validator:
    def __init__(self, entries: list[Entry], file: str) -> None:
        self.entries, self.file = entries, file
        self.problems: list[Problem] = []

    def report(self, entry: Entry, field_name: str, message: str) -> None:
        path, line = entry.at(field_name)
        self.problems.append(Problem(self.file, line, path, message))

    def run(self) -> list[Entry]:
        """The distinct, well-formed entities (problems go to self.problems)."""
        sound = [e for e in self.entries if self._fields(e)]
        unique = self._duplicates(sound)
        self._references(unique)
        for entry, message in dead_letter_loops(unique):
            self.report(entry, "arguments.x-dead-letter-exchange", message)
        return unique

    # ---------------------------------------------------------------- pass 1
    def _fields(self, entry: Entry) -> bool:
        """Check one entity's fields; False when its identity is broken (it is then left out)."""
        sound = True
        for field_name, (required, check) in FIELDS[entry.kind].items():
            if field_name not in entry.body:
                if required:
                    self.report(entry, field_name, "required key is missing")
                    sound = sound and field_name not in IDENTITY_FIELDS[entry.kind]
                continue
            message = check(entry.body[field_name])
            if message is not None:
                self.report(entry, field_name, message)
                sound = sound and field_name not in IDENTITY_FIELDS[entry.kind]
        arguments = entry.body.get("arguments")
        if entry.kind == "queue" and isinstance(arguments, dict):
            for key, message in queue_argument_problems(arguments):
                self.report(entry, f"arguments.{key}", message)
        elif entry.kind == "exchange" and isinstance(arguments, dict):
            problem = exchange_problem(entry.body.get("type", "direct"), arguments)
            if problem is not None:
                self.report(entry, *problem)
        elif entry.kind == "binding":
            sound = self._binding_fields(entry) and sound
        return sound

    def _binding_fields(self, entry: Entry) -> bool:
        body = entry.body
        if body.get("source") in DEFAULT_EXCHANGE_NAMES:
            self.report(entry, "source", "cannot bind the default exchange: it routes to every queue "
                                         "by the queue's name, and takes no bindings")  # fmt: skip
            return False
        if (
            body.get("destination_type") == "exchange"
            and body.get("destination") in DEFAULT_EXCHANGE_NAMES
        ):
            self.report(entry, "destination", "cannot bind to the default exchange")
            return False
        return True

    # ---------------------------------------------------------------- pass 2
    def _duplicates(self, entries: list[Entry]) -> list[Entry]:
        first: dict[tuple[Any, ...], Entry] = {}
        unique = []
        for entry in entries:
            key = (entry.kind, *entry.identity)
            seen = first.get(key)
            if seen is None:
                first[key] = entry
                unique.append(entry)
                continue
            diff = differences(seen.body, entry.body)
            if diff:
                where = f"line {seen.line} ({seen.path})" if seen.line is not None else seen.path
                self.problems.append(Problem(
                    self.file, entry.line, entry.path,
                    f"{entry.describe()} is declared again with other settings than at {where}: {diff}",
                ))  # fmt: skip
        return unique

    def _references(self, entries: list[Entry]) -> None:
        vhosts = {e.body["name"] for e in entries if e.kind == "vhost"} | {"/"}
        users = {e.body["name"] for e in entries if e.kind == "user"}
        exchanges: dict[str, dict[str, Entry | None]] = {
            v: dict.fromkeys(BUILTIN_EXCHANGES) for v in vhosts
        }
        queues: dict[str, set[str]] = {v: set() for v in vhosts}
        for e in entries:
            if e.kind == "exchange":
                exchanges.setdefault(e.body["vhost"], dict.fromkeys(BUILTIN_EXCHANGES))[
                    e.body["name"]
                ] = e
            elif e.kind == "queue":
                queues.setdefault(e.body["vhost"], set()).add(e.body["name"])
        for e in entries:
            if e.kind in ("vhost", "user"):
                continue
            vhost = e.body["vhost"]
            if vhost not in vhosts:
                self.report(e, "vhost", f"unknown vhost '{vhost}'{_did_you_mean(vhost, vhosts)}: "
                                        "declare it under vhosts ('/' exists anyway)")  # fmt: skip
                continue
            known_x = exchanges[vhost]
            if e.kind == "permission" and e.body["user"] not in users:
                user = e.body["user"]
                self.report(
                    e,
                    "user",
                    f"unknown user '{user}'{_did_you_mean(user, users)}: declare it under users",
                )
            elif e.kind == "exchange":
                ae = _arguments(e).get("alternate-exchange")
                if isinstance(ae, str) and ae and ae not in known_x:
                    self.report(e, "arguments.alternate-exchange",
                                f"names no exchange of vhost '{vhost}'{_did_you_mean(ae, known_x)}: "
                                "unroutable messages would be dropped")  # fmt: skip
            elif e.kind == "queue":
                dlx = _arguments(e).get("x-dead-letter-exchange")
                if isinstance(dlx, str) and dlx and dlx not in known_x:
                    self.report(e, "arguments.x-dead-letter-exchange",
                                f"names no exchange of vhost '{vhost}'{_did_you_mean(dlx, known_x)}: "
                                "dead-lettered messages would be dropped")  # fmt: skip
            elif e.kind == "binding":
                self._binding_references(e, known_x, queues[vhost])

    def _binding_references(
        self, e: Entry, known_x: dict[str, Entry | None], queues: set[str]
    ) -> None:
        vhost, source, dest = e.body["vhost"], e.body["source"], e.body["destination"]
        if source not in known_x:
            self.report(e, "source", f"unknown exchange '{source}' in vhost '{vhost}'"
                                     f"{_did_you_mean(source, known_x)}")  # fmt: skip
        elif (source_entry := known_x[source]) is not None:
            self._binding_accepted(e, source_entry)
        if e.body.get("destination_type", "queue") == "exchange":
            if dest not in known_x:
                self.report(e, "destination", f"unknown exchange '{dest}' in vhost '{vhost}'"
                                              f"{_did_you_mean(dest, known_x)}")  # fmt: skip
        elif dest not in queues:
            self.report(
                e,
                "destination",
                f"unknown queue '{dest}' in vhost '{vhost}'{_did_you_mean(dest, queues)}",
            )

    def _binding_accepted(self, e: Entry, source: Entry) -> None:
        """The source exchange's type may refuse the binding (an x-match, a hash weight)."""
        arguments = _arguments(source)
        if exchange_problem(source.body.get("type", "direct"), arguments) is not None:
            return
        router = router_for(source.body.get("type", "direct"), arguments)
        error = router.validate_binding(e.body.get("routing_key", ""), _arguments(e))
        if error is not None:
            field_name = "arguments" if e.body.get("arguments") else "routing_key"
            self.report(
                e, field_name, f"refused by exchange '{source.body['name']}': {error.reply_text}"
            )


def _arguments(entry: Entry) -> dict[str, Any]:
    arguments = entry.body.get("arguments")
    return arguments if isinstance(arguments, dict) else {}


def validate_entries(entries: list[Entry], file: str) -> tuple[list[Entry], list[Problem]]:
    """The distinct entities of a well-formed topology, and every problem found."""
    validator = Validator(entries, file)
    unique = validator.run()
    return unique, validator.problems
