"""`warrenmq topology validate | plan | apply | export`: topology files against a running broker.

plan, apply and export are clients of the management HTTP API (the one
`warrenmq ctl` uses, with the same connection options), so they work
against a RabbitMQ node as well. validate needs no broker.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..ctl import DEFAULT_URL, CtlError, ManagementClient, _url
from . import graph
from .apply import ApplyError, apply_plan, refused_replaces
from .desired import Desired, read_topology
from .export import FORMATS, live_definitions, only_vhost, render
from .plan import Plan, make_plan
from .problems import TopologyError

PROG = "warrenmq topology"

class CommandError(Exception):
    """A failure reported on stderr; the command exits 1."""


# ------------------------------------------------------------------ commands
def cmd_validate(args: argparse.Namespace) -> None:
    desired = _read(args.file)
    doc = desired.definitions
    counts = ", ".join(f"{len(doc.get(section) or [])} {section}"
                       for section in ("exchanges", "queues", "bindings"))  # fmt: skip
    print(f"{args.file}: valid ({counts})")


def cmd_plan(args: argparse.Namespace) -> None:
    plan = _plan(args)
    print(plan.to_json_text() if args.json else plan.format())


def cmd_apply(args: argparse.Namespace) -> None:
    plan = _plan(args)
    print(plan.format())
    if plan.empty:
        return
    refusal = None if args.replace else refused_replaces(plan)
    if refusal is not None:
        raise CommandError(refusal)
    if not args.yes and not _confirmed():
        raise CommandError("not applied (run with --yes to apply without a question)")
    try:
        apply_plan(_client(args), plan, report=lambda line: print(f"  {line}"))
    except ApplyError as exc:
        raise CommandError(f"apply stopped: {exc}") from None
    n = plan.counts()
    print(f"Apply complete: {n['create']} created, {n['change']} changed, {n['delete']} deleted.")


def cmd_export(args: argparse.Namespace) -> None:
    doc = live_definitions(_client(args))
    if args.vhost is not None:
        if not any(v.get("name") == args.vhost for v in doc.get("vhosts") or []):
            raise CommandError(f"no vhost '{args.vhost}' on the broker")
        doc = only_vhost(doc, args.vhost)
    sys.stdout.write(render(doc, args.format))


def _read(path: str) -> Desired:
    try:
        return read_topology(path)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None


def _plan(args: argparse.Namespace) -> Plan:
    desired = _read(args.file)
    live = live_definitions(_client(args))
    return make_plan(desired.definitions, live, prune=args.prune, runner=args.user,
                     locate=desired.locate)  # fmt: skip


def _client(args: argparse.Namespace) -> ManagementClient:
    return ManagementClient(args.url, args.user, args.password)


def _confirmed() -> bool:
    """Ask on a terminal; anything but a terminal is a no (a script passes --yes)."""
    if not sys.stdin.isatty():
        return False
    try:
        return input("Apply these changes? Only 'yes' applies them: ").strip() == "yes"
    except EOFError:
        return False


# ------------------------------------------------------------------ parser
def _connection_options(parser: argparse.ArgumentParser) -> None:
    """As `warrenmq ctl` takes them (and from the same environment variables)."""
    env = os.environ
    parser.add_argument("--url", type=_url, default=env.get("WARRENMQ_MANAGEMENT_URL") or DEFAULT_URL,
                        help="management API base URL (env WARRENMQ_MANAGEMENT_URL; "
                             f"default {DEFAULT_URL})")  # fmt: skip
    parser.add_argument("-u", "--user", default=env.get("WARRENMQ_USER") or "guest",
                        help="user name (env WARRENMQ_USER; default guest)")  # fmt: skip
    parser.add_argument("-p", "--password", default=env.get("WARRENMQ_PASSWORD") or "guest",
                        help="password (env WARRENMQ_PASSWORD; default guest)")  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `topology` and its commands on the top-level subcommands."""
    topology = sub.add_parser(
        "topology", help="check, plan, apply and export topology files",
        description="Topology files (YAML, or RabbitMQ definitions JSON) against a running broker.",
    )  # fmt: skip
    commands = topology.add_subparsers(dest="topology_command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], None], help_text: str,
                connects: bool = True) -> argparse.ArgumentParser:  # fmt: skip
        parser = commands.add_parser(name, help=help_text, description=help_text)
        if connects:
            _connection_options(parser)
        parser.set_defaults(run=lambda args: run(handler, args))
        return parser

    validate = command("validate", cmd_validate, "check a topology file", connects=False)
    validate.add_argument("file", metavar="FILE")

    plan = command("plan", cmd_plan, "show what applying a file would change on the broker")
    plan.add_argument("file", metavar="FILE")
    plan.add_argument("--prune", action="store_true",
                      help="delete what the broker has and the file does not (in the file's vhosts)")  # fmt: skip
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")

    apply = command("apply", cmd_apply, "make the broker match a file (prints the plan first)")
    apply.add_argument("file", metavar="FILE")
    apply.add_argument("--prune", action="store_true",
                       help="delete what the broker has and the file does not (in the file's vhosts)")  # fmt: skip
    apply.add_argument("--replace", action="store_true",
                       help="delete and re-create queues and exchanges whose settings differ "
                            "(a replaced queue loses its messages)")  # fmt: skip
    apply.add_argument("--yes", "-y", action="store_true", help="apply without asking")

    export = command("export", cmd_export, "write the broker's topology to stdout")
    export.add_argument("--format", choices=FORMATS, default="yaml",
                        help="yaml: a topology file (default); definitions: RabbitMQ definitions JSON")  # fmt: skip
    export.add_argument("--vhost", help="only this vhost (default: all, with users)")

    graph.add_graph_parser(commands)


def run(handler: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> int:
    """Run one command: 0, or 1 with the reason (or every problem of the file) on stderr."""
    try:
        handler(args)
    except TopologyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except (CommandError, CtlError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
