"""`warrenmq topology plan | apply` against a running broker: creates, replaces, prune, errors.

Each test starts a fresh broker, writes a topology file, and runs the
commands as an operator would, reading their output. What the broker holds
afterwards is checked through its API and over AMQP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.broker import BrokerProcess

from warrenmq.broker.ctl import ApiError, api_path

SHOP = """\
vhosts:
  - name: shop
users:
  - name: guest
    password: guest
    tags: [administrator]
  - name: clerk
    password: clerk-secret
    tags: [management]
permissions:
  - user: clerk
    vhost: shop
    configure: "^$"
    write: "^orders$"
    read: ".*"
exchanges:
  - name: orders
    vhost: shop
    type: topic
queues:
  - name: work
    vhost: shop
    ttl: 30s
    max-length: 1000
bindings:
  - vhost: shop
    from: orders
    to: work
    routing-key: "order.*"
"""
# What a plan of SHOP shows on a fresh broker, line for line. guest has no permission in
# the new vhost, so the plan grants it one: the API checks an administrator's too.
SHOP_CREATES = [
    "+ vhost 'shop' (shop.yaml:2)",
    "+ user 'clerk' (shop.yaml:7)",
    "+ permission of user 'clerk' in vhost 'shop' (shop.yaml:11)",
    "+ permission of user 'guest' in vhost 'shop': not in the file: user 'guest' needs it to apply the file",
    "+ exchange 'orders' in vhost 'shop' (shop.yaml:17)",
    "+ queue 'work' in vhost 'shop' (shop.yaml:21)",
    "+ binding 'orders' -> queue 'work' (routing key 'order.*') in vhost 'shop' (shop.yaml:26)",
]


@pytest.fixture(autouse=True)
def in_workdir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are named as an operator names them, relative to where the command runs."""
    monkeypatch.chdir(workdir)


def plan(kit: Any, broker: BrokerProcess, file: Path, *options: str) -> Any:
    return kit.topology("plan", "--url", broker.management_url, *options, file.name)


def apply(kit: Any, broker: BrokerProcess, file: Path, *options: str) -> Any:
    return kit.topology("apply", "--url", broker.management_url, "--yes", *options, file.name)


def test_plan_lists_the_creates_then_apply_makes_it_true(kit: Any, broker: BrokerProcess,
                                                         workdir: Path) -> None:  # fmt: skip
    file = kit.write(workdir, "shop.yaml", SHOP)
    first = plan(kit, broker, file)
    assert first.code == 0, first.err
    assert first.lines == [*SHOP_CREATES, "Plan: 7 to create, 0 to change, 0 to delete."]

    applied = apply(kit, broker, file)
    assert applied.code == 0, applied.err
    assert applied.lines[-1] == "Apply complete: 7 created, 0 changed, 0 deleted."

    assert plan(kit, broker, file).lines == ["No changes."]
    again = apply(kit, broker, file)
    assert (again.code, again.lines) == (0, ["No changes."])

    # The broker does what the file says: the binding routes, the queue has its arguments.
    assert kit.live_queue(broker, "shop", "work")["arguments"] == {"x-message-ttl": 30000, "x-max-length": 1000}
    kit.publish(broker, "shop", "orders", "order.created", b"first order")
    with kit.channel(broker, "shop") as channel:
        assert kit.get_message(channel, "work")[2] == b"first order"
    # The file's user logs in with the file's password, and may read in its vhost.
    with kit.channel(broker, "shop", "clerk", "clerk-secret") as channel:
        assert channel.queue_declare("work", passive=True).method.message_count == 0


def test_plan_json_has_the_same_changes(kit: Any, broker: BrokerProcess, workdir: Path) -> None:
    file = kit.write(workdir, "shop.yaml", SHOP)
    result = plan(kit, broker, file, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["summary"] == {"create": 7, "change": 0, "delete": 0}
    assert doc["no_changes"] is False
    rows = {(c["action"], c["kind"], c["vhost"], json.dumps(c["name"], sort_keys=True), c["line"])
            for c in doc["changes"]}  # fmt: skip
    binding = {"source": "orders", "destination_type": "queue", "destination": "work",
               "routing_key": "order.*", "arguments": {}}  # fmt: skip
    assert rows == {
        ("create", "vhost", None, '"shop"', 2),
        ("create", "user", None, '"clerk"', 7),
        ("create", "permission", "shop", '"clerk"', 11),
        ("create", "permission", "shop", '"guest"', None),
        ("create", "exchange", "shop", '"orders"', 17),
        ("create", "queue", "shop", '"work"', 21),
        ("create", "binding", "shop", json.dumps(binding, sort_keys=True), 26),
    }  # fmt: skip
    queue = next(c for c in doc["changes"] if c["kind"] == "queue")
    assert queue["file"] == "shop.yaml"
    assert queue["desired"]["arguments"] == {"x-message-ttl": 30000, "x-max-length": 1000}


def test_a_changed_ttl_is_a_replace_that_needs_replace(kit: Any, broker: BrokerProcess,
                                                       workdir: Path) -> None:  # fmt: skip
    file = kit.write(workdir, "shop.yaml", SHOP)
    assert apply(kit, broker, file).code == 0
    kit.publish(broker, "shop", "orders", "order.kept", b"still here")

    file.write_text(SHOP.replace("ttl: 30s", "ttl: 1m"))
    planned = plan(kit, broker, file)
    assert planned.code == 0, planned.err
    assert planned.lines == [
        "-/+ queue 'work' in vhost 'shop' (shop.yaml:21): arguments.x-message-ttl: 30000 -> 60000; "
        "replacing it deletes its messages",
        "+ binding 'orders' -> queue 'work' (routing key 'order.*') in vhost 'shop' (shop.yaml:26): "
        "re-created: its queue 'work' is replaced",
        "Plan: 2 to create, 0 to change, 1 to delete.",
    ]

    refused = apply(kit, broker, file)
    assert refused.code == 1
    assert "run again with --replace" in refused.err
    assert "queue 'work' in vhost 'shop' (shop.yaml:21)" in refused.err
    queue = kit.live_queue(broker, "shop", "work")
    assert (queue["arguments"]["x-message-ttl"], queue["messages"]) == (30000, 1)  # untouched

    replaced = apply(kit, broker, file, "--replace")
    assert replaced.code == 0, replaced.err
    queue = kit.live_queue(broker, "shop", "work")
    assert (queue["arguments"]["x-message-ttl"], queue["messages"]) == (60000, 0)
    assert plan(kit, broker, file).lines == ["No changes."]
    # The binding came back with the queue.
    kit.publish(broker, "shop", "orders", "order.after", b"after the replace")
    with kit.channel(broker, "shop") as channel:
        assert kit.get_message(channel, "work")[2] == b"after the replace"


def test_an_extra_queue_is_kept_unless_pruned(kit: Any, broker: BrokerProcess, workdir: Path) -> None:
    file = kit.write(workdir, "shop.yaml", SHOP)
    assert apply(kit, broker, file).code == 0
    api = kit.client(broker)
    api.request("PUT", api_path("queues", "shop", "stray"), {"durable": True, "arguments": {}})
    api.request("POST", api_path("bindings", "shop", "e", "orders", "q", "stray"), {"routing_key": "#"})
    api.request("PUT", api_path("queues", "/", "elsewhere"), {"durable": True, "arguments": {}})

    kept = plan(kit, broker, file)
    assert kept.lines == [
        "  queue 'stray' in vhost 'shop': not in the file (kept; --prune deletes them)",
        "  binding 'orders' -> queue 'stray' (routing key '#') in vhost 'shop': "
        "not in the file (kept; --prune deletes them)",
        "No changes.",
    ]
    assert apply(kit, broker, file).code == 0
    assert kit.live_queue(broker, "shop", "stray")["name"] == "stray"

    pruning = plan(kit, broker, file, "--prune")
    assert pruning.lines == [
        "- queue 'stray' in vhost 'shop'",
        "- binding 'orders' -> queue 'stray' (routing key '#') in vhost 'shop'",
        "Plan: 0 to create, 0 to change, 2 to delete.",
    ]
    pruned = apply(kit, broker, file, "--prune")
    assert pruned.code == 0, pruned.err
    with pytest.raises(ApiError) as missing:
        kit.live_queue(broker, "shop", "stray")
    assert missing.value.status == 404
    # Outside the file's vhosts nothing is touched.
    assert kit.live_queue(broker, "/", "elsewhere")["name"] == "elsewhere"
    assert plan(kit, broker, file, "--prune").lines == ["No changes."]


def test_prune_deletes_users_and_vhosts_the_file_leaves_out(kit: Any, broker: BrokerProcess,
                                                            workdir: Path) -> None:  # fmt: skip
    file = kit.write(workdir, "shop.yaml", SHOP)
    assert apply(kit, broker, file).code == 0
    api = kit.client(broker)
    api.request("PUT", api_path("users", "leaver"), {"password": "x", "tags": ""})
    api.request("PUT", api_path("vhosts", "attic"), {})
    # The file leaves out guest's permissions in "/" and "shop": guest runs the command, so
    # they stay, as guest itself would if the file left it out.
    pruning = plan(kit, broker, file, "--prune")
    assert pruning.lines == [
        "- vhost 'attic'",
        "- user 'leaver'",
        "Plan: 0 to create, 0 to change, 2 to delete.",
    ]
    assert apply(kit, broker, file, "--prune").code == 0
    assert {v["name"] for v in api.request("GET", "/api/vhosts")} == {"/", "shop"}
    assert {u["name"] for u in api.request("GET", "/api/users")} == {"guest", "clerk"}


def test_an_api_error_names_the_file_and_line(kit: Any, broker: BrokerProcess, workdir: Path) -> None:
    # A transient queue is not in the definitions, so the plan creates it: the broker refuses.
    with kit.channel(broker) as channel:
        channel.queue_declare("taken", durable=False)
    file = kit.write(workdir, "taken.yaml", "queues:\n  - name: other\n  - name: taken\n    max-length: 5\n")
    result = apply(kit, broker, file)
    assert result.code == 1
    assert "apply stopped: taken.yaml:3: queue 'taken' in vhost '/': " in result.err
    assert "inequivalent arg 'durable'" in result.err
    # What came before the refused request was done, and stays done.
    assert kit.live_queue(broker, "/", "other")["durable"] is True
    assert kit.live_queue(broker, "/", "taken")["durable"] is False


def test_prune_of_what_goes_by_itself(kit: Any, broker: BrokerProcess, workdir: Path) -> None:
    """An auto-delete exchange goes with its last binding: deleting it after is no error."""
    file = kit.write(workdir, "shop.yaml", SHOP)
    assert apply(kit, broker, file).code == 0
    api = kit.client(broker)
    api.request("PUT", api_path("exchanges", "shop", "fleeting"),
                {"type": "fanout", "durable": True, "auto_delete": True})  # fmt: skip
    api.request("POST", api_path("bindings", "shop", "e", "fleeting", "q", "work"), {"routing_key": ""})
    pruning = plan(kit, broker, file, "--prune")
    assert pruning.lines == [
        "- exchange 'fleeting' in vhost 'shop'",
        "- binding 'fleeting' -> queue 'work' in vhost 'shop'",
        "Plan: 0 to create, 0 to change, 2 to delete.",
    ]
    pruned = apply(kit, broker, file, "--prune")
    assert pruned.code == 0, pruned.err
    assert plan(kit, broker, file, "--prune").lines == ["No changes."]
    exchanges = api.request("GET", api_path("exchanges", "shop"))
    assert "fleeting" not in {x["name"] for x in exchanges}
