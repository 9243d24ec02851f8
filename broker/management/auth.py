"""Who may do what in the management API: HTTP basic auth against the broker's users, by tag.

The rules are RabbitMQ's (rabbit_mgmt_util), checked against a 3.10 node:

- a user with none of the management tags is refused everything ("Not management user");
- `management` and `policymaker` see the vhosts they have permissions in and
  only their own connections and channels;
- `monitoring` also sees every vhost's name and totals, every connection,
  channel and consumer, and the node, but a vhost's queues, exchanges and
  bindings only where it has permissions;
- `administrator` sees and manages everything, users, permissions, vhosts
  and definitions included.

Reading needs no permission beyond that; changing something (declare,
delete, bind, publish, get, purge) is checked against the user's configure,
write and read patterns in that vhost, as the AMQP operation would be, even
for an administrator.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from typing import Any

from .errors import ApiError, login_failed, not_authorised

MANAGEMENT_TAGS = frozenset({"management", "policymaker", "monitoring", "administrator"})


class Caller:
    """The authenticated user of one request."""

    def __init__(self, broker: Any, user: Any) -> None:
        self.broker = broker
        self.user = user
        self.name: str = user.name
        tags = set(user.tags)
        self.is_admin = "administrator" in tags
        self.is_monitor = self.is_admin or "monitoring" in tags
        self.trusted = False

    def trusting(self) -> Caller:
        """The same caller, not checked against vhost permissions: for a definitions import,
        which only administrators may run and which RabbitMQ does not check either."""
        other = Caller(self.broker, self.user)
        other.trusted = True
        return other

    # ----------------------------------------------------------- vhosts
    def login_vhosts(self) -> list[str]:
        """The vhosts this user has permissions in (and that exist)."""
        users = self.broker.users
        return [v for v in self.broker.vhosts if users.can_access_vhost(self.name, v)]

    def visible_vhosts(self) -> list[str]:
        """The vhosts whose names and totals this user may see."""
        return list(self.broker.vhosts) if self.is_monitor else self.login_vhosts()

    def sees_vhost_contents(self, vhost: str) -> bool:
        """Whether this user may list a vhost's queues, exchanges and bindings."""
        return self.is_admin or self.broker.users.can_access_vhost(self.name, vhost)

    def sees_connection_of(self, username: str | None) -> bool:
        return self.is_monitor or username == self.name

    # ------------------------------------------------------------ checks
    def require_admin(self) -> None:
        if not self.is_admin:
            raise not_authorised("Not administrator user")

    def require_monitor(self) -> None:
        if not self.is_monitor:
            raise not_authorised("Not monitor user")

    def require_vhost(self, vhost: str | None) -> None:
        """Access to one vhost's contents; a missing vhost passes here and is a 404 later."""
        if vhost is None or vhost not in self.broker.vhosts:
            return
        if not self.sees_vhost_contents(vhost):
            raise not_authorised("User not authorised to access virtual host")

    def require_vhost_visible(self, vhost: str | None) -> None:
        if vhost is None or vhost not in self.broker.vhosts:
            return
        if not (self.is_monitor or self.sees_vhost_contents(vhost)):
            raise not_authorised("User not authorised to access virtual host")

    def require_owner(self, owner: str | None, method: str) -> None:
        """A connection or channel: its own user, a monitor (to read) or an administrator."""
        allowed = self.is_admin if method == "DELETE" else self.is_monitor
        if not (allowed or owner == self.name):
            raise not_authorised("User not authorised to access object")

    def permitted(self, vhost: str, kind: str, resource: str) -> bool:
        """The user's configure/write/read pattern in vhost admits resource (RabbitMQ's regex rule)."""
        if self.trusted:
            return True
        perm = self.broker.users.permissions.get((self.name, vhost))
        if perm is None:
            return False
        return _matches(getattr(perm, kind), resource)


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern or "^$")  # an empty pattern admits nothing but ""
    except re.error:
        return None


def _matches(pattern: str, resource: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is not None and compiled.search(resource) is not None


def authenticate(broker: Any, header: str | None, peer_host: str) -> Caller:
    """The caller named by an Authorization header, or the 401 RabbitMQ answers."""
    if not header or not header.lower().startswith("basic "):
        raise ApiError(401, None, headers={"WWW-Authenticate": 'Basic realm="RabbitMQ Management"'})
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise login_failed() from None
    username, sep, password = decoded.partition(":")
    user = broker.users.authenticate(username, password) if sep else None
    if user is None:
        raise login_failed()
    if username in broker.config.loopback_users and not _is_loopback(peer_host):
        raise not_authorised("User can only log in via localhost")
    if not MANAGEMENT_TAGS.intersection(user.tags):
        raise not_authorised("Not management user")
    return Caller(broker, user)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "")
