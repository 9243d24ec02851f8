"""Round trips: a topology file, or a RabbitMQ definitions export, through a broker and back.

- The YAML file below is in canonical form (as `dump_yaml` writes it) and
  uses every section, every exchange type, friendly units and bindings with
  arguments. Applied to a fresh broker and exported again, it comes back
  as the very same text.
- `rabbitmq_3_10_definitions.json` is a real RabbitMQ 3.10 export, made by
  `record_rabbitmq_definitions.py`. Applied to warrenmq and exported as
  definitions, it gives back the same entities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.broker import BrokerProcess

from warrenmq.broker.users import hash_password

HERE = Path(__file__).parent
RABBITMQ_EXPORT = HERE / "rabbitmq_3_10_definitions.json"
SHA512 = "rabbit_password_hashing_sha512"
PASSWORDS = {"guest": "guest", "alice": "alice-secret", "robot": "robot-secret"}
# Fixed salts, so the file (and so the export) is the same text on every run.
HASHES = {
    "guest_hash": hash_password("guest", salt=b"\x01\x02\x03\x04"),
    "alice_hash": hash_password("alice-secret", salt=b"\x05\x06\x07\x08"),
    "robot_hash": hash_password("robot-secret", SHA512, salt=b"\x09\x0a\x0b\x0c"),
}
VARIED = """\
vhosts:
  - name: /
  - name: shop
    description: the web shop
    tags:
      - production
users:
  - name: alice
    password_hash: {alice_hash}
    tags:
      - management
      - monitoring
  - name: guest
    password_hash: {guest_hash}
    tags:
      - administrator
  - name: robot
    password_hash: {robot_hash}
    hashing_algorithm: rabbit_password_hashing_sha512
permissions:
  - user: guest
    vhost: /
    configure: .*
    write: .*
    read: .*
  - user: alice
    vhost: shop
    configure: ^$
    write: ^orders\\.
    read: .*
  - user: guest
    vhost: shop
    configure: .*
    write: .*
    read: .*
  - user: robot
    vhost: shop
    configure: ''
    write: ^orders\\.in$
    read: ''
exchanges:
  - name: audit
    type: fanout
    auto-delete: true
  - name: orders.events
    vhost: shop
    type: topic
    alternate-exchange: orders.unrouted
  - name: orders.in
    vhost: shop
  - name: orders.later
    vhost: shop
    type: x-delayed-message
    delayed-type: topic
  - name: orders.match
    vhost: shop
    type: headers
    internal: true
  - name: orders.shards
    vhost: shop
    type: x-consistent-hash
    arguments:
      hash-header: order-id
  - name: orders.unrouted
    vhost: shop
    type: fanout
queues:
  - name: audit.log
    ttl: 1500ms
  - name: orders.dead
    vhost: shop
    expires: 7d
    max-length-bytes: 1GiB
    overflow: reject-publish
  - name: orders.eu
    vhost: shop
    max-priority: 9
    single-active-consumer: true
  - name: orders.quorum
    vhost: shop
    type: quorum
    arguments:
      x-custom: kept as is
  - name: orders.shard-1
    vhost: shop
  - name: orders.shard-2
    vhost: shop
  - name: orders.work
    vhost: shop
    ttl: 30s
    max-length: 10000
    dead-letter-exchange: orders.unrouted
    dead-letter-routing-key: dead
    delivery-limit: 5
bindings:
  - from: audit
    to: audit.log
  - vhost: shop
    from: orders.events
    to-exchange: orders.match
    routing-key: order.#
  - vhost: shop
    from: orders.in
    to: orders.work
    routing-key: created
  - vhost: shop
    from: orders.later
    to: orders.work
    routing-key: order.*
  - vhost: shop
    from: orders.match
    to: orders.eu
    arguments:
      region: eu
      tier: 1
      x-match: all
  - vhost: shop
    from: orders.shards
    to: orders.shard-1
    routing-key: '1'
  - vhost: shop
    from: orders.shards
    to: orders.shard-2
    routing-key: '2'
  - vhost: shop
    from: orders.unrouted
    to: orders.dead
""".format(**HASHES)
# Sections compared between the RabbitMQ export and ours, and the fields of an item left
# out of the comparison: RabbitMQ 3.10 exports a vhost's name only (warrenmq adds its
# description, tags and metadata, as RabbitMQ 3.11+ does).
SECTIONS = ("vhosts", "users", "permissions", "exchanges", "queues", "bindings")
IGNORED_FIELDS = {"vhosts": {"description", "tags", "metadata"}}


@pytest.fixture(autouse=True)
def in_workdir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)


def run(kit: Any, broker: BrokerProcess, *args: str) -> Any:
    result = kit.topology(args[0], "--url", broker.management_url, *args[1:])
    assert result.code == 0, result.err
    return result


def test_a_yaml_file_comes_back_as_the_same_text(kit: Any, broker: BrokerProcess, workdir: Path) -> None:
    kit.write(workdir, "varied.yaml", VARIED)
    applied = run(kit, broker, "apply", "--yes", "varied.yaml")
    # guest runs the command and exists already, with a hash of its own (a fresh salt).
    assert "~ user 'guest' (varied.yaml:13): password: changes" in applied.lines
    assert applied.lines[-1].startswith("Apply complete: ")

    exported = run(kit, broker, "export")
    assert exported.out == VARIED
    assert run(kit, broker, "plan", "varied.yaml").lines == ["No changes."]
    # The hashes log in with their passwords, sha512 included.
    for user, password in PASSWORDS.items():
        with kit.channel(broker, "shop", user, password) as channel:
            assert channel.is_open


def test_a_definitions_export_applies_back_unchanged(kit: Any, broker: BrokerProcess,
                                                     workdir: Path) -> None:  # fmt: skip
    kit.write(workdir, "varied.yaml", VARIED)
    run(kit, broker, "apply", "--yes", "varied.yaml")
    exported = run(kit, broker, "export", "--format", "definitions")
    doc = json.loads(exported.out)
    assert doc["product_name"] == "warrenmq"
    kit.write(workdir, "definitions.json", exported.out)
    assert run(kit, broker, "plan", "--prune", "definitions.json").lines == ["No changes."]
    one = run(kit, broker, "export", "--vhost", "shop")
    kit.write(workdir, "shop.yaml", one.out)
    assert "users:" not in one.out and "name: audit" not in one.out
    assert run(kit, broker, "plan", "--prune", "shop.yaml").lines == ["No changes."]


def comparable(doc: dict[str, Any], vhosts: set[str], users: set[str]) -> dict[str, set[str]]:
    """Each section as a set of canonical JSON items, limited to the given vhosts and users."""
    out = {}
    for section in SECTIONS:
        items = set()
        for item in doc.get(section) or []:
            if section == "vhosts" and item["name"] not in vhosts:
                continue
            if section == "users" and item["name"] not in users:
                continue
            if "vhost" in item and item["vhost"] not in vhosts:
                continue
            kept = {k: v for k, v in item.items() if k not in IGNORED_FIELDS.get(section, ())}
            items.add(json.dumps(kept, sort_keys=True))
        out[section] = items
    return out


def test_a_rabbitmq_export_applies_and_exports_the_same(kit: Any, broker: BrokerProcess) -> None:
    recorded = json.loads(RABBITMQ_EXPORT.read_text())
    applied = run(kit, broker, "apply", "--yes", str(RABBITMQ_EXPORT))
    assert applied.lines[-1].startswith("Apply complete: ")
    assert run(kit, broker, "plan", str(RABBITMQ_EXPORT)).lines == ["No changes."]

    ours = json.loads(run(kit, broker, "export", "--format", "definitions").out)
    vhosts = {v["name"] for v in recorded["vhosts"]}
    users = {u["name"] for u in recorded["users"]}
    expected, got = comparable(recorded, vhosts, users), comparable(ours, vhosts, users)
    for section in SECTIONS:
        assert got[section] == expected[section], section
    assert all(expected[section] for section in SECTIONS)  # the recording is not empty
    # RabbitMQ's hashes log in here with their passwords.
    with kit.channel(broker, "topology-orders", "topology-alice", "alice-secret") as channel:
        assert channel.queue_declare("orders.work", passive=True).method.queue == "orders.work"
