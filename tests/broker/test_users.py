"""Users and permissions: RabbitMQ's password hashes, persistence, the first-start default user."""

from __future__ import annotations

from pathlib import Path

import pytest

from warrenmq.broker.metadata import MetadataStore
from warrenmq.broker.users import (
    UnknownHashingAlgorithm,
    UserStore,
    check_password,
    hash_password,
)
from warrenmq.logstore import LogManager

# Made by RabbitMQ 3.10 for the password "s3cret" (PUT /api/users, then GET).
RABBITMQ_HASH = "8SMCkppap05yV20eqfRN93uLy5gUDXotSsJOvPhJvGozsuYq"


def test_a_rabbitmq_hash_checks_against_its_password() -> None:
    assert check_password(RABBITMQ_HASH, "s3cret")
    assert not check_password(RABBITMQ_HASH, "s3cret ")
    assert not check_password(RABBITMQ_HASH, "")


def test_our_hash_has_rabbitmqs_layout() -> None:
    made = hash_password("pw", salt=b"\x01\x02\x03\x04")
    assert made == hash_password("pw", salt=b"\x01\x02\x03\x04")
    assert made != hash_password("pw")  # a fresh salt each time
    assert len(made) == len(RABBITMQ_HASH)  # base64 of 4 salt bytes + 32 digest bytes
    assert check_password(made, "pw") and not check_password(made, "PW")


def test_other_algorithms_and_bad_hashes() -> None:
    for algorithm in ("rabbit_password_hashing_sha512", "rabbit_password_hashing_md5"):
        assert check_password(hash_password("x", algorithm), "x", algorithm)
    assert not check_password("not base64!", "x")
    assert not check_password("", "")  # a user without a password cannot log in by password
    with pytest.raises(UnknownHashingAlgorithm):
        UserStore().put_user("u", password="x", hashing_algorithm="rot13")


def test_users_and_permissions_survive_a_reopen(tmp_path: Path) -> None:
    with LogManager(tmp_path) as manager:
        store = UserStore()
        store.put_user("guest", password="guest", tags=["administrator"])
        store.set_permission("guest", "/", ".*", ".*", ".*")
        assert store.attach(MetadataStore(manager)) is False  # first start: defaults written
        store.put_user("app", password="pw", tags=["management"])
        store.set_permission("app", "orders", "^app\\.", ".*", "")
        store.put_user("gone", password="x")
        store.set_permission("gone", "/", ".*", ".*", ".*")
        assert store.delete_user("gone")
    with LogManager(tmp_path) as manager:
        again = UserStore()
        again.put_user("guest", password="other")  # the config's default, ignored once users exist
        assert again.attach(MetadataStore(manager)) is True
        assert sorted(again.users) == ["app", "guest"]
        assert again.authenticate("guest", "guest") is not None
        assert again.authenticate("guest", "other") is None
        assert again.authenticate("app", "pw").tags == ["management"]
        assert again.vhosts_of("app") == ["orders"]
        assert again.permissions[("app", "orders")].configure == "^app\\."
        assert not again.can_access_vhost("gone", "/")
        again.clear_vhost("orders")
        assert not again.can_access_vhost("app", "orders")


def test_a_user_needs_permissions_in_the_vhost_to_open_it(broker) -> None:
    """530 NOT_ALLOWED with RabbitMQ's text; granting permissions lets the same user in."""
    import base64
    import json
    import urllib.request

    import pika
    from pika.exceptions import ProbableAccessDeniedError

    process = broker.process
    if process is None:
        pytest.skip("creates a user through warrenmq's management API")
    auth = "Basic " + base64.b64encode(b"guest:guest").decode()

    def put(path: str, body: dict) -> None:
        request = urllib.request.Request(
            process.management_url + path, json.dumps(body).encode(), method="PUT",
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (201, 204)

    put("/api/users/alice", {"password": "pw", "tags": ""})
    params = pika.ConnectionParameters(
        "127.0.0.1", process.port, "/", pika.PlainCredentials("alice", "pw"), connection_attempts=1
    )
    with pytest.raises(ProbableAccessDeniedError) as refused:
        pika.BlockingConnection(params)
    assert "(530) \"NOT_ALLOWED - access to vhost '/' refused for user 'alice'\"" in str(refused.value)
    put("/api/permissions/%2F/alice", {"configure": ".*", "write": ".*", "read": ".*"})
    conn = pika.BlockingConnection(params)
    assert conn.is_open
    conn.close()
