"""One API request as handlers see it, and the answers they give back.

Handlers are plain functions of an `ApiRequest`: the broker state they
read and change lives in this event loop, so they need not be coroutines.
They return a JSON value (200) or an `Answer` for other statuses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .auth import Caller
from .errors import ApiError, bad_request, not_found
from .listing import list_answer


@dataclass
class Answer:
    """A status with no body (201, 204) or with one, and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


CREATED = Answer(201)
NO_CONTENT = Answer(204)


def created_or_updated(created: bool) -> Answer:
    return CREATED if created else NO_CONTENT


class ApiRequest:
    def __init__(self, state: Any, caller: Caller, method: str, params: dict[str, str],
                 query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> None:  # fmt: skip
        self.state = state
        self.broker = state.broker
        self.views = state.views
        self.caller = caller
        self.method = method
        self.params = params
        self.query = query
        self.headers = headers
        self.raw_body = body
        self._json: Any = None

    # ------------------------------------------------------------- body
    def json(self) -> dict[str, Any]:
        """The body as RabbitMQ decodes it: empty (or null) is {}, anything but an object is refused."""
        if self._json is None:
            self._json = _decode(self.raw_body)
        return self._json

    def require(self, *keys: str) -> dict[str, Any]:
        """The body, after checking it has every key (RabbitMQ's key_missing list)."""
        body = self.json()
        missing = [k for k in keys if k not in body]
        if missing:
            raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
        return body

    # --------------------------------------------------------- entities
    def vhost(self) -> Any:
        vhost = self.broker.vhosts.get(self.params["vhost"])
        if vhost is None:
            raise not_found()
        return vhost

    def flag(self, name: str) -> bool:
        return self.query.get(name) == "true"

    def listing(self, items: list[dict[str, Any]], default_sort: tuple[str, ...] = ("vhost", "name")) -> Answer:
        """A list answer, sorted, paged and with its columns picked (so final: an Answer)."""
        return Answer(200, list_answer(items, self.query, default_sort))


def _decode(raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", "replace").strip()
    if text in ("", "null", "undefined"):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise bad_request("not_json") from None
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, str):
        raise bad_request("invalid payload: the request body JSON-decoded to a string. "
                          "Is the input doubly-JSON-encoded?")  # fmt: skip
    if not isinstance(value, dict):
        raise bad_request("not_json")
    return value


__all__ = ["ApiError", "ApiRequest", "Answer", "CREATED", "NO_CONTENT", "created_or_updated"]
