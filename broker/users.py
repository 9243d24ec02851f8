"""Users, their tags and their per-vhost permissions, stored as RabbitMQ stores them.

Passwords are kept only as RabbitMQ's salted hashes (`rabbit_password_hashing_sha256`
by default: base64 of a 4-byte salt followed by SHA-256(salt + password)), so
a hash from a RabbitMQ definitions export logs in here with the same
password, and ours can be imported into RabbitMQ. Users and permissions are
durable entities in the metadata store, like vhosts; the default user is
created only when the store holds no user at all (a first start), as
RabbitMQ creates it only on a fresh node.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

SHA256 = "rabbit_password_hashing_sha256"
HASHES = {
    SHA256: hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}
# Tags that give access to the management API, most powerful first.
MANAGEMENT_TAGS = ("administrator", "monitoring", "policymaker", "management")


class UnknownHashingAlgorithm(ValueError):
    """A definitions file names a password hashing algorithm we do not know."""


def hash_password(password: str, algorithm: str = SHA256, salt: bytes | None = None) -> str:
    """RabbitMQ's salted hash of password, base64-encoded."""
    digest = HASHES.get(algorithm)
    if digest is None:
        raise UnknownHashingAlgorithm(algorithm)
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + digest(salt + password.encode("utf-8")).digest()).decode()


def check_password(password_hash: str, password: str, algorithm: str = SHA256) -> bool:
    """True when password matches; a user without a hash cannot log in with a password."""
    digest = HASHES.get(algorithm)
    if not password_hash or digest is None:
        return False
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except ValueError:
        return False
    salt, expected = raw[:4], raw[4:]
    return hmac.compare_digest(digest(salt + password.encode("utf-8")).digest(), expected)


@dataclass
class User:
    name: str
    password_hash: str
    tags: list[str] = field(default_factory=list)
    hashing_algorithm: str = SHA256
    limits: dict[str, Any] = field(default_factory=dict)

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags

    @property
    def can_manage(self) -> bool:
        """Allowed into the management API at all."""
        return any(tag in MANAGEMENT_TAGS for tag in self.tags)


@dataclass(frozen=True)
class Permission:
    user: str
    vhost: str
    configure: str = ".*"
    write: str = ".*"
    read: str = ".*"


class DefinitionsStore(Protocol):
    def put(self, kind: str, parts: tuple[str, ...], value: dict[str, Any]) -> int: ...

    def delete(self, kind: str, parts: tuple[str, ...]) -> int | None: ...

    def items(self, kind: str) -> Any: ...


class UserStore:
    """Users and permissions, in memory and (once attached) in the metadata store."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}
        self._store: DefinitionsStore | None = None

    # ------------------------------------------------------------ persistence
    def attach(self, store: DefinitionsStore) -> bool:
        """Load users and permissions from store; False when it holds no user (a first start).

        On a first start what is in memory (the default user) is written to it.
        """
        loaded = list(store.items("user"))
        if loaded:
            self.users.clear()
            self.permissions.clear()
            for (name,), value in loaded:
                self.users[name] = User(
                    name, value["password_hash"], list(value.get("tags", [])),
                    value.get("hashing_algorithm", SHA256), dict(value.get("limits", {})),
                )  # fmt: skip
            for (user, vhost), value in store.items("permission"):
                self.permissions[(user, vhost)] = Permission(
                    user, vhost, value["configure"], value["write"], value["read"]
                )
        self._store = store
        if not loaded:
            for user in self.users.values():
                self._save_user(user)
            for perm in self.permissions.values():
                self._save_permission(perm)
        return bool(loaded)

    def _save_user(self, user: User) -> None:
        if self._store is not None:
            self._store.put("user", (user.name,), {
                "password_hash": user.password_hash, "hashing_algorithm": user.hashing_algorithm,
                "tags": user.tags, "limits": user.limits,
            })  # fmt: skip

    def _save_permission(self, perm: Permission) -> None:
        if self._store is not None:
            self._store.put("permission", (perm.user, perm.vhost), {
                "configure": perm.configure, "write": perm.write, "read": perm.read,
            })  # fmt: skip

    # ------------------------------------------------------------------ users
    def authenticate(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None or not check_password(user.password_hash, password, user.hashing_algorithm):
            return None
        return user

    def put_user(self, name: str, *, password: str | None = None, password_hash: str | None = None,
                 hashing_algorithm: str | None = None, tags: list[str] | tuple[str, ...] = (),
                 limits: dict[str, Any] | None = None) -> User:  # fmt: skip
        """Create or replace a user; with neither password nor hash it cannot log in by password."""
        algorithm = hashing_algorithm or SHA256
        if algorithm not in HASHES:
            raise UnknownHashingAlgorithm(algorithm)
        if password is not None:
            password_hash = hash_password(password, algorithm)
        user = User(name, password_hash or "", list(tags), algorithm, dict(limits or {}))
        self.users[name] = user
        self._save_user(user)
        return user

    def delete_user(self, name: str) -> bool:
        if self.users.pop(name, None) is None:
            return False
        if self._store is not None:
            self._store.delete("user", (name,))
        for key in [k for k in self.permissions if k[0] == name]:
            self.clear_permission(*key)
        return True

    # ------------------------------------------------------------ permissions
    def set_permission(self, user: str, vhost: str, configure: str, write: str, read: str) -> Permission:
        perm = Permission(user, vhost, configure, write, read)
        self.permissions[(user, vhost)] = perm
        self._save_permission(perm)
        return perm

    def clear_permission(self, user: str, vhost: str) -> bool:
        if self.permissions.pop((user, vhost), None) is None:
            return False
        if self._store is not None:
            self._store.delete("permission", (user, vhost))
        return True

    def clear_vhost(self, vhost: str) -> None:
        """A vhost was deleted: nobody keeps permissions in it."""
        for key in [k for k in self.permissions if k[1] == vhost]:
            self.clear_permission(*key)

    def can_access_vhost(self, user: str, vhost: str) -> bool:
        return (user, vhost) in self.permissions

    def vhosts_of(self, user: str) -> list[str]:
        return sorted(v for (u, v) in self.permissions if u == user)
