"""RabbitMQ's own CLI, rabbitmqadmin, against warrenmq's management API.

rabbitmqadmin ships with the rabbitmq-server package; without it these
tests are skipped. Its output is read as a person reads it: the table rows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from support.broker import BrokerProcess

RABBITMQADMIN = shutil.which("rabbitmqadmin")
pytestmark = pytest.mark.skipif(RABBITMQADMIN is None, reason="rabbitmqadmin is not installed")


def admin(broker: BrokerProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [RABBITMQADMIN, "-H", "127.0.0.1", "-P", str(broker.management_port),
               "-u", "guest", "-p", "guest", *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"rabbitmqadmin {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def table_rows(output: str) -> list[list[str]]:
    """The data rows of rabbitmqadmin's ASCII table (the header row first)."""
    rows = []
    for line in output.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.fixture
def names() -> Iterator[str]:
    yield f"adm-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def channel(mgmt_broker: BrokerProcess) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(mgmt_broker.url))
    try:
        yield conn.channel()
    finally:
        if conn.is_open:
            conn.close()


def test_list_queues_shows_names_and_counts(mgmt_broker: BrokerProcess, channel, names: str) -> None:
    channel.queue_declare(names)
    for _ in range(3):
        channel.basic_publish("", names, b"m")
    try:
        rows = table_rows(admin(mgmt_broker, "list", "queues").stdout)
        assert rows[0] == ["name", "messages"]
        assert [names, "3"] in rows[1:]
    finally:
        channel.queue_delete(names)


def test_list_exchanges_shows_the_defaults_and_ours(mgmt_broker: BrokerProcess, channel, names: str) -> None:
    channel.exchange_declare(names, "topic")
    try:
        rows = table_rows(admin(mgmt_broker, "list", "exchanges").stdout)
        assert rows[0] == ["name", "type"]
        for row in (["", "direct"], ["amq.direct", "direct"], ["amq.topic", "topic"], [names, "topic"]):
            assert row in rows[1:]
    finally:
        channel.exchange_delete(names)


def test_declare_queue_exists_over_amqp(mgmt_broker: BrokerProcess, channel, names: str) -> None:
    done = admin(mgmt_broker, "declare", "queue", f"name={names}", "durable=true",
                 'arguments={"x-max-length": 5}')  # fmt: skip
    assert done.stdout.strip() == "queue declared"
    try:
        assert channel.queue_declare(names, passive=True).method.message_count == 0
        channel.queue_declare(names, durable=True, arguments={"x-max-length": 5})  # equivalent
        shown = json.loads(admin(mgmt_broker, "list", "queues", "name", "durable", "arguments",
                                 "-f", "raw_json").stdout)  # fmt: skip
        assert {"name": names, "durable": True, "arguments": {"x-max-length": 5}} in shown
    finally:
        channel.queue_delete(names)
    with pytest.raises(ChannelClosedByBroker):
        channel.queue_declare(names, passive=True)


def test_publish_get_purge_delete(mgmt_broker: BrokerProcess, names: str) -> None:
    admin(mgmt_broker, "declare", "exchange", f"name={names}-x", "type=direct")
    admin(mgmt_broker, "declare", "queue", f"name={names}")
    admin(mgmt_broker, "declare", "binding", f"source={names}-x", f"destination={names}", "routing_key=k")
    try:
        assert admin(mgmt_broker, "publish", f"exchange={names}-x", "routing_key=k",
                     "payload=hello").stdout.strip() == "Message published"  # fmt: skip
        rows = table_rows(admin(mgmt_broker, "get", f"queue={names}", "ackmode=ack_requeue_true").stdout)
        got = dict(zip(rows[0], rows[1], strict=True))
        assert (got["payload"], got["exchange"], got["routing_key"]) == ("hello", f"{names}-x", "k")
        admin(mgmt_broker, "purge", "queue", f"name={names}")
        assert admin(mgmt_broker, "get", f"queue={names}").stdout.strip() == "No items"
        admin(mgmt_broker, "delete", "binding", f"source={names}-x", "destination_type=queue",
              f"destination={names}", "properties_key=k")  # fmt: skip
        bindings = table_rows(admin(mgmt_broker, "list", "bindings").stdout)
        assert [f"{names}-x", names, "k"] not in bindings
    finally:
        admin(mgmt_broker, "delete", "queue", f"name={names}", check=False)
        admin(mgmt_broker, "delete", "exchange", f"name={names}-x", check=False)
    assert [names, "0"] not in table_rows(admin(mgmt_broker, "list", "queues").stdout)


def test_close_connection(mgmt_broker: BrokerProcess, names: str) -> None:
    params = pika.URLParameters(mgmt_broker.url)
    params.client_properties = {"connection_name": names}
    conn = pika.BlockingConnection(params)
    try:
        listed = json.loads(admin(mgmt_broker, "list", "connections", "-f", "raw_json").stdout)
        name = next(c["name"] for c in listed if c.get("user_provided_name") == names)
        admin(mgmt_broker, "close", "connection", f"name={name}")
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            conn.process_data_events(time_limit=5)
            conn.channel()
        assert closed.value.reply_code == 320
    finally:
        if conn.is_open:
            conn.close()


def test_export_and_import(mgmt_broker: BrokerProcess, tmp_path, names: str) -> None:
    admin(mgmt_broker, "declare", "queue", f"name={names}", "durable=true")
    path = tmp_path / "definitions.json"
    admin(mgmt_broker, "export", str(path))
    exported = json.loads(path.read_text())
    assert {"name": names, "vhost": "/", "durable": True, "auto_delete": False,
            "arguments": {}} in exported["queues"]  # fmt: skip
    admin(mgmt_broker, "delete", "queue", f"name={names}")
    admin(mgmt_broker, "import", str(path))
    try:
        rows = table_rows(admin(mgmt_broker, "list", "queues").stdout)
        assert [names, "0"] in rows
    finally:
        admin(mgmt_broker, "delete", "queue", f"name={names}")


def test_show_overview_and_list_nodes(mgmt_broker: BrokerProcess) -> None:
    overview = dict(zip(*table_rows(admin(mgmt_broker, "show", "overview").stdout)[:2], strict=True))
    assert overview["rabbitmq_version"] and overview["object_totals.queues"].isdigit()
    nodes = table_rows(admin(mgmt_broker, "list", "nodes").stdout)
    assert nodes[0] == ["name", "type", "mem_used"]
    assert len(nodes) == 2 and nodes[1][1] == "disc" and int(nodes[1][2]) > 0
