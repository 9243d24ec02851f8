"""The `warrenmq topology` command line: what each command prints and its exit status."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.broker import BrokerProcess

from warrenmq.broker.config import ConfigError, parse_config

VALID = """\
exchanges:
  - name: orders
    type: topic
  - name: audit
    type: fanout
queues:
  - name: work
    ttl: 30s
  - name: trail
    max-length-bytes: 1GiB
  - name: dead
bindings:
  - from: orders
    to: work
    routing-key: "order.*"
  - from: audit
    to: trail
"""
INVALID = """\
queues:
  - name: work
    ttl: soon
    max-length-bytes: lots
bindings:
  - from: nowhere
    to: work
"""


@pytest.fixture(autouse=True)
def in_workdir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)


def test_validate_a_valid_file(kit: Any, workdir: Path) -> None:
    kit.write(workdir, "shop.yaml", VALID)
    result = kit.topology("validate", "shop.yaml")
    assert (result.code, result.out, result.err) == (0, "shop.yaml: valid (2 exchanges, 3 queues, 2 bindings)\n", "")


def test_validate_counts_what_a_retry_ladder_expands_into(kit: Any, workdir: Path) -> None:
    kit.write(workdir, "jobs.yaml", "queues:\n  - name: jobs\nretry:\n  - queue: jobs\n"
                                    "    delays: [1s, 10s]\n    then: jobs.parked\n")  # fmt: skip
    result = kit.topology("validate", "jobs.yaml")
    # jobs.retry, .first and .return; jobs, two steps and the parking queue; four bindings:
    # .first -> step 1, .return -> jobs, jobs.retry.1 -> step 2, jobs.retry.2 -> parked.
    assert result.out == "jobs.yaml: valid (3 exchanges, 4 queues, 4 bindings)\n"


def test_validate_lists_every_problem_on_stderr(kit: Any, workdir: Path) -> None:
    kit.write(workdir, "bad.yaml", INVALID)
    result = kit.topology("validate", "bad.yaml")
    assert result.code == 1
    assert result.out == ""
    problems = result.err.splitlines()
    assert problems[0] == "bad.yaml:3: queues[0].ttl: must be a duration such as 30s or 500ms, not 'soon'"
    assert problems[1].startswith("bad.yaml:4: queues[0].max-length-bytes: must be a size")
    assert any(line.startswith("bad.yaml:6: ") and "nowhere" in line for line in problems)


def test_validate_reads_rabbitmq_definitions(kit: Any) -> None:
    recorded = Path(__file__).parent / "rabbitmq_3_10_definitions.json"
    result = kit.topology("validate", str(recorded))
    assert result.code == 0, result.err
    doc = json.loads(recorded.read_text())
    counts = [len(doc[section]) for section in ("exchanges", "queues", "bindings")]
    assert result.out == f"{recorded}: valid ({counts[0]} exchanges, {counts[1]} queues, {counts[2]} bindings)\n"


def test_plan_of_an_invalid_file_reports_the_problems(kit: Any, broker: BrokerProcess, workdir: Path) -> None:
    kit.write(workdir, "bad.yaml", INVALID)
    result = kit.topology("plan", "--url", broker.management_url, "bad.yaml")
    assert result.code == 1
    assert result.err.splitlines()[0].startswith("bad.yaml:3: queues[0].ttl: ")


def test_a_missing_file_is_one_line(kit: Any) -> None:
    result = kit.topology("validate", "absent.yaml")
    assert result.code == 1
    assert result.err.startswith("absent.yaml: cannot read the topology")


def test_an_unreachable_broker_is_one_line(kit: Any, workdir: Path) -> None:
    kit.write(workdir, "shop.yaml", VALID)
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    result = kit.topology("plan", "--url", url, "shop.yaml")
    assert result.code == 1
    assert result.err == (f"warrenmq topology: cannot reach the management API at {url}: "
                          "connection refused (is the broker running, with its management listener on?)\n")  # fmt: skip


def test_wrong_credentials_are_reported(kit: Any, broker: BrokerProcess, workdir: Path) -> None:
    kit.write(workdir, "shop.yaml", VALID)
    result = kit.topology("plan", "--url", broker.management_url, "-u", "guest", "-p", "wrong", "shop.yaml")
    assert result.code == 1
    assert "Login failed" in result.err


def test_apply_without_yes_and_no_terminal_applies_nothing(kit: Any, broker: BrokerProcess,
                                                          workdir: Path) -> None:  # fmt: skip
    kit.write(workdir, "shop.yaml", VALID)
    result = kit.topology("apply", "--url", broker.management_url, "shop.yaml")
    assert result.code == 1
    assert result.lines[-1] == "Plan: 7 to create, 0 to change, 0 to delete."
    assert "not applied (run with --yes" in result.err
    plan = kit.topology("plan", "--url", broker.management_url, "shop.yaml")
    assert plan.lines[-1] == "Plan: 7 to create, 0 to change, 0 to delete."


def test_environment_gives_the_url(kit: Any, broker: BrokerProcess, workdir: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    kit.write(workdir, "shop.yaml", VALID)
    monkeypatch.setenv("WARRENMQ_MANAGEMENT_URL", broker.management_url)
    result = kit.topology("plan", "shop.yaml")  # the default is read when the parser is built
    assert (result.code, result.lines[-1]) == (0, "Plan: 7 to create, 0 to change, 0 to delete.")


def test_export_of_an_unknown_vhost_fails(kit: Any, broker: BrokerProcess) -> None:
    result = kit.topology("export", "--url", broker.management_url, "--vhost", "nowhere")
    assert (result.code, result.out) == (1, "")
    assert result.err == "warrenmq topology: no vhost 'nowhere' on the broker\n"


def test_export_formats(kit: Any, broker: BrokerProcess, workdir: Path) -> None:
    kit.write(workdir, "shop.yaml", VALID)
    assert kit.topology("apply", "--url", broker.management_url, "--yes", "shop.yaml").code == 0
    as_yaml = kit.topology("export", "--url", broker.management_url, "--vhost", "/")
    assert as_yaml.out.startswith("vhosts:\n  - name: /\nexchanges:\n  - name: audit\n    type: fanout\n")
    as_json = json.loads(kit.topology("export", "--url", broker.management_url, "--vhost", "/",
                                      "--format", "definitions").out)  # fmt: skip
    assert [q["name"] for q in as_json["queues"]] == ["dead", "trail", "work"]
    assert "users" not in as_json and "permissions" not in as_json


def test_help_lists_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "warrenmq.broker.cli", "topology", "--help"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0
    for command in ("validate", "plan", "apply", "export"):
        assert command in result.stdout


def test_exit_status_from_a_process(workdir: Path) -> None:
    (workdir / "bad.yaml").write_text(INVALID)
    result = subprocess.run([sys.executable, "-m", "warrenmq.broker.cli", "topology", "validate",
                             "bad.yaml"], capture_output=True, text=True, timeout=60, cwd=workdir)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("bad.yaml:3: ")


def test_the_config_file_takes_a_topology() -> None:
    assert parse_config("topology: shop.yaml\n").topology == "shop.yaml"
    with pytest.raises(ConfigError, match="topology: must be a non-empty string"):
        parse_config("topology: [a, b]\n", "warrenmq.yaml")
