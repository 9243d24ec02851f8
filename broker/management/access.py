"""Users and permissions (administrators only), and whoami (anyone who may log in)."""

from __future__ import annotations

from typing import Any

from ..users import UnknownHashingAlgorithm
from .convert import parse_tags
from .errors import bad_request, not_found
from .request import NO_CONTENT, Answer, ApiRequest, created_or_updated


def whoami(req: ApiRequest) -> Any:
    return {"name": req.caller.name, "tags": list(req.caller.user.tags)}


# ------------------------------------------------------------------- users
def list_users(req: ApiRequest) -> Any:
    req.caller.require_admin()
    return req.listing([req.views.user(u) for u in req.broker.users.users.values()], ("name",))


def _user(req: ApiRequest) -> Any:
    user = req.broker.users.users.get(req.params["user"])
    if user is None:
        raise not_found()
    return user


def get_user(req: ApiRequest) -> Any:
    req.caller.require_admin()
    return req.views.user(_user(req))


def put_user(req: ApiRequest) -> Answer:
    """Create or replace a user: `tags` is required, and a password or its hash (or neither: no login)."""
    req.caller.require_admin()
    body = req.json()
    if "tags" not in body:
        raise bad_request("tags_not_present")
    store = req.broker.users
    name = req.params["user"]
    existing = store.users.get(name)
    password, password_hash = body.get("password"), body.get("password_hash")
    algorithm = body.get("hashing_algorithm")
    if password is not None and not isinstance(password, str):
        raise bad_request(["not_string", "password"])
    if password_hash is not None and not isinstance(password_hash, str):
        raise bad_request(["not_string", "password_hash"])
    if password is None and password_hash is None and existing is not None:
        password_hash, algorithm = existing.password_hash, existing.hashing_algorithm
    limits = existing.limits if existing is not None else None
    try:
        store.put_user(name, password=password, password_hash=password_hash,
                       hashing_algorithm=algorithm, tags=parse_tags(body["tags"]), limits=limits)  # fmt: skip
    except UnknownHashingAlgorithm:
        raise bad_request(["unknown_hashing_algorithm", algorithm]) from None
    return created_or_updated(existing is None)


def delete_user(req: ApiRequest) -> Answer:
    req.caller.require_admin()
    if not req.broker.users.delete_user(_user(req).name):
        raise not_found()
    return NO_CONTENT


def user_permissions(req: ApiRequest) -> Any:
    req.caller.require_admin()
    user = _user(req)
    perms = [p for (u, _v), p in req.broker.users.permissions.items() if u == user.name]
    return req.listing([req.views.permission(p) for p in perms], ("vhost", "user"))


# ------------------------------------------------------------- permissions
def list_permissions(req: ApiRequest) -> Any:
    req.caller.require_admin()
    perms = req.broker.users.permissions.values()
    return req.listing([req.views.permission(p) for p in perms], ("vhost", "user"))


def _permission(req: ApiRequest) -> Any:
    perm = req.broker.users.permissions.get((req.params["user"], req.params["vhost"]))
    if perm is None:
        raise not_found()
    return perm


def get_permission(req: ApiRequest) -> Any:
    req.caller.require_admin()
    return req.views.permission(_permission(req))


def put_permission(req: ApiRequest) -> Answer:
    req.caller.require_admin()
    body = req.require("configure", "write", "read")
    user, vhost = req.params["user"], req.params["vhost"]
    store = req.broker.users
    if user not in store.users or vhost not in req.broker.vhosts:
        raise bad_request("vhost_or_user_not_found")
    patterns = [body[k] for k in ("configure", "write", "read")]
    if not all(isinstance(p, str) for p in patterns):
        raise bad_request("permissions must be strings")
    created = (user, vhost) not in store.permissions
    store.set_permission(user, vhost, *patterns)
    return created_or_updated(created)


def delete_permission(req: ApiRequest) -> Answer:
    req.caller.require_admin()
    perm = _permission(req)
    req.broker.users.clear_permission(perm.user, perm.vhost)
    return NO_CONTENT
