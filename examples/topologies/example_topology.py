"""What the topology examples share: options, applying a topology file, and taking it away.

A script applies its YAML file as an operator would, with
`warrenmq topology apply FILE --yes` against the management API, so the
file is the only place the topology is written. At the end it deletes what
it created: the vhosts the file declares that did not exist before (and so
everything in them), or else the file's queues and exchanges one by one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import yaml

from warrenmq.broker.ctl import ManagementClient, api_path
from warrenmq.broker.topology import format_duration, load, parse_duration

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:15672"
START = time.monotonic()


def say(text: str) -> None:
    """One line of the story, with the seconds since the script started."""
    print(f"{time.monotonic() - START:7.3f}s  {text}", flush=True)


def parser(description: str, *, scale_help: str | None = None) -> argparse.ArgumentParser:
    """The options every topology example takes (and --scale, for those that wait)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"AMQP URL of the broker; its vhost is replaced by the "
                             f"topology's (default {DEFAULT_URL})")  # fmt: skip
    parser.add_argument("--management-url", default=DEFAULT_MANAGEMENT_URL,
                        help=f"management API base URL (default {DEFAULT_MANAGEMENT_URL}); "
                             "the user and password are the AMQP URL's")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="leave the topology on the broker at the end")  # fmt: skip
    if scale_help:
        parser.add_argument("--scale", type=float, default=1.0, help=scale_help)
    return parser


def credentials(amqp_url: str) -> tuple[str, str]:
    """The AMQP URL's user and password (guest, guest when it has none)."""
    parts = urlsplit(amqp_url)
    return unquote(parts.username or "guest"), unquote(parts.password or "guest")


def vhost_url(amqp_url: str, vhost: str) -> str:
    """The same AMQP URL for another vhost (the path is the percent-encoded vhost)."""
    parts = urlsplit(amqp_url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def scaled_copy(path: Path, scale: float, directory: Path) -> Path:
    """A copy of a topology file with every queue's TTL and every retry delay times `scale`."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))

    def scaled(duration: Any) -> str:
        return format_duration(max(1, round(parse_duration(duration) * scale)))

    for queue in document.get("queues") or []:
        if "ttl" in queue:
            queue["ttl"] = scaled(queue["ttl"])
    for ladder in document.get("retry") or []:
        ladder["delays"] = [scaled(delay) for delay in ladder["delays"]]
    copy = directory / path.name
    copy.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return copy


class AppliedTopology:
    """A topology file applied to a broker, with what is needed to remove it again."""

    def __init__(self, path: Path, amqp_url: str, management_url: str) -> None:
        self.path = path
        self.amqp_url = amqp_url
        self.management_url = management_url
        self.definitions = load(path).definitions
        self.client = ManagementClient(management_url, *credentials(amqp_url))
        self.vhosts_before: set[str] = set()

    def apply(self) -> None:
        """`warrenmq topology apply FILE --yes`; SystemExit(2) with its output when it fails."""
        self.vhosts_before = {v["name"] for v in self.client.request("GET", "/api/vhosts")}
        user, password = credentials(self.amqp_url)
        done = subprocess.run(
            [sys.executable, "-m", "warrenmq.broker.cli", "topology", "apply", str(self.path),
             "--url", self.management_url, "-u", user, "-p", password, "--yes"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            raise SystemExit(2)
        summary = done.stdout.strip().splitlines()[-1]
        counts = {key: len(self.definitions.get(key) or []) for key in
                  ("exchanges", "queues", "bindings")}  # fmt: skip
        say(f"applied {self.path.name} ({counts['exchanges']} exchanges, {counts['queues']} "
            f"queues, {counts['bindings']} bindings): {summary}")  # fmt: skip

    def url(self, vhost: str) -> str:
        """The AMQP URL to use for one of the topology's vhosts."""
        return vhost_url(self.amqp_url, vhost)

    def remove(self) -> None:
        """Delete the vhosts this run created; in the others, the file's queues and exchanges."""
        created = sorted({v["name"] for v in self.definitions.get("vhosts") or []}
                         - self.vhosts_before - {"/"})  # fmt: skip
        for vhost in created:
            self.client.request("DELETE", api_path("vhosts", vhost))
        kept = [(kind, item) for kind in ("queues", "exchanges")
                for item in self.definitions.get(kind) or []
                if item.get("vhost", "/") not in created]  # fmt: skip
        for kind, item in kept:
            self.client.request("DELETE", api_path(kind, item.get("vhost", "/"), item["name"]))
        what = [f"vhost {v}" for v in created] + (
            [f"{len(kept)} queues and exchanges"] if kept else []
        )
        say(f"deleted {', '.join(what) or 'nothing'} (use --keep to leave the topology)")


@contextmanager
def applied(path: Path, args: argparse.Namespace) -> Iterator[AppliedTopology]:
    """Apply the file (a copy with its delays scaled, when --scale is given) for a `with` block."""
    with tempfile.TemporaryDirectory(prefix="topology-") as directory:
        scale = getattr(args, "scale", 1.0)
        source = path if scale == 1.0 else scaled_copy(path, scale, Path(directory))
        topology = AppliedTopology(source, args.url, args.management_url)
        topology.apply()
        try:
            yield topology
        finally:
            if not args.keep:
                topology.remove()


def run_main(main: Callable[[], int]) -> None:
    """Exit with main's code; a failure to reach the broker is one line on stderr, not a trace."""
    from warrenmq.broker.ctl import CtlError

    try:
        code = main()
    except CtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    raise SystemExit(code)
