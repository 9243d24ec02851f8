"""`warrenmq serve --topology FILE` (and `topology: FILE` in the config file).

A broker started with a topology has its entities before the first client
connects; a restart with the same file changes nothing; a file that
disagrees with what the broker holds, or that is not valid, stops the start
with exit status 2 and the file:line of each problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pika.exceptions import ChannelClosedByBroker

APP = """\
vhosts:
  - name: app
exchanges:
  - name: events
    vhost: app
    type: topic
queues:
  - name: billing
    vhost: app
    ttl: 10m
  - name: audit
    vhost: app
bindings:
  - vhost: app
    from: events
    to: billing
    routing-key: "invoice.*"
  - vhost: app
    from: events
    to: audit
    routing-key: "#"
users:
  - name: guest
    password: guest
    tags: [administrator]
permissions:
  - user: guest
    vhost: app
    configure: ".*"
    write: ".*"
    read: ".*"
"""


def definitions(kit: Any, broker: Any) -> dict[str, Any]:
    doc = kit.client(broker).request("GET", "/api/definitions")
    return {key: doc[key] for key in ("vhosts", "users", "permissions", "exchanges", "queues", "bindings")}


def test_the_entities_exist_before_clients_and_a_restart_changes_nothing(kit: Any, workdir: Path) -> None:
    topology = kit.write(workdir, "app.yaml", APP)
    data = workdir / "data"
    with kit.running_broker(data, "--topology", str(topology)) as broker:
        with kit.channel(broker, "app") as channel:
            channel.exchange_declare("events", "topic", passive=True)
            billing = channel.queue_declare("billing", passive=True).method
            channel.queue_declare("audit", passive=True)
        assert billing.message_count == 0
        kit.publish(broker, "app", "events", "invoice.paid", b"paid")
        kit.publish(broker, "app", "events", "order.new", b"new")
        assert kit.live_queue(broker, "app", "billing")["arguments"] == {"x-message-ttl": 600000}
        before = definitions(kit, broker)
        assert f"topology {topology}: 7 entities created" in broker.log_text()

    with kit.running_broker(data, "--topology", str(topology)) as broker:
        assert f"topology {topology}: 0 entities created" in broker.log_text()
        assert definitions(kit, broker) == before
        # The queues are the same queues: what was published before the restart is there.
        with kit.channel(broker, "app") as channel:
            assert kit.get_message(channel, "billing")[2] == b"paid"
            assert [kit.get_message(channel, "audit")[2] for _ in range(2)] == [b"paid", b"new"]


def test_the_config_file_key_works_as_the_option(kit: Any, workdir: Path) -> None:
    kit.write(workdir, "app.yaml", APP)
    config = kit.write(workdir, "warrenmq.yaml", "topology: app.yaml\n")  # relative to the cwd
    with (kit.running_broker(workdir / "data", "--config", str(config)) as broker,
          kit.channel(broker, "app") as channel):  # fmt: skip
        channel.confirm_delivery()
        channel.basic_publish("events", "invoice.sent", b"sent", mandatory=True)
        assert kit.get_message(channel, "billing")[2] == b"sent"


def test_a_conflicting_file_stops_the_start(kit: Any, workdir: Path) -> None:
    topology = kit.write(workdir, "app.yaml", APP)
    data = workdir / "data"
    with kit.running_broker(data, "--topology", str(topology)) as broker:
        kit.publish(broker, "app", "events", "invoice.kept", b"kept")

    topology.write_text(APP.replace("ttl: 10m", "ttl: 20m"))
    refused = kit.serve_until_exit(data, "--topology", str(topology))
    assert refused.returncode == 2
    assert (f"{topology}:8: queue 'billing' in vhost 'app' exists with other settings: "
            "arguments.x-message-ttl: 600000 -> 1200000") in refused.stderr  # fmt: skip
    assert "listening for AMQP" not in refused.stderr

    # Nothing was changed: the old file starts the broker, and the message is still there.
    topology.write_text(APP)
    with (kit.running_broker(data, "--topology", str(topology)) as broker,
          kit.channel(broker, "app") as channel):  # fmt: skip
        assert kit.get_message(channel, "billing")[2] == b"kept"


def test_an_invalid_file_stops_the_start_with_its_problems(kit: Any, workdir: Path) -> None:
    topology = kit.write(workdir, "bad.yaml", "queues:\n  - name: slow\n    ttl: soon\n  - nam: typo\n")
    data = workdir / "data"
    refused = kit.serve_until_exit(data, "--topology", str(topology))
    assert refused.returncode == 2
    problems = [line for line in refused.stderr.splitlines() if line.startswith(str(topology))]
    assert problems[0] == f"{topology}:3: queues[0].ttl: must be a duration such as 30s or 500ms, not 'soon'"
    assert any(line.startswith(f"{topology}:4: queues[1].nam: unknown key") for line in problems)
    assert list(data.iterdir()) == []  # checked before the data directory is opened


def test_a_missing_file_stops_the_start(kit: Any, workdir: Path) -> None:
    refused = kit.serve_until_exit(workdir / "data", "--topology", str(workdir / "absent.yaml"))
    assert refused.returncode == 2
    assert "absent.yaml" in refused.stderr


def test_without_the_file_the_entities_do_not_exist(kit: Any, workdir: Path) -> None:
    """The control: the passive declares of the first test fail on a broker without the file."""
    with kit.running_broker(workdir / "data") as broker:
        with kit.channel(broker) as channel, pytest.raises(ChannelClosedByBroker):
            channel.queue_declare("billing", passive=True)
        assert "billing" not in json.dumps(definitions(kit, broker))
