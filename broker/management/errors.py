"""HTTP errors with RabbitMQ's JSON bodies and status codes.

Handlers raise `ApiError`; the app turns it into the response. RabbitMQ's
answers are not uniform (the `error` word and the reason's form depend on
the resource that failed), so each operation picks its mapping of a broker
`ChannelError` here instead of one table for all.
"""

from __future__ import annotations

import json
from typing import Any

from warrenmq.amqp import AMQPError
from warrenmq.amqp.constants import ACCESS_REFUSED, NOT_FOUND

REALM = 'Basic realm="RabbitMQ Management"'


class ApiError(Exception):
    """An answer other than success: status, RabbitMQ's `error` word and its reason."""

    def __init__(self, status: int, error: str | None, reason: Any = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(f"{status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or {}

    def body(self) -> bytes:
        if self.error is None:  # RabbitMQ answers some statuses (405) with no body
            return b""
        return json.dumps({"error": self.error, "reason": self.reason}).encode()


def not_found() -> ApiError:
    return ApiError(404, "Object Not Found", "Not Found")


def bad_request(reason: Any) -> ApiError:
    return ApiError(400, "bad_request", reason)


def not_authorised(reason: str) -> ApiError:
    return ApiError(401, "not_authorised", reason)


def login_failed() -> ApiError:
    # The one 401 spelt with a 'z', and the one that asks for credentials again.
    return ApiError(401, "not_authorized", "Login failed", {"WWW-Authenticate": REALM})


def method_not_allowed(allowed: list[str]) -> ApiError:
    return ApiError(405, None, headers={"Allow": ", ".join(allowed)})


def access_refused() -> ApiError:
    return not_authorised("Access refused.")


def from_declare(exc: AMQPError) -> ApiError:
    """A declare, delete or bind refused by the broker, as the management plugin answers it."""
    if exc.code == ACCESS_REFUSED:
        return access_refused()
    if exc.code == NOT_FOUND:
        return ApiError(404, "not_found", exc.text)
    return bad_request(exc.text)


def from_get(exc: AMQPError) -> ApiError:
    """basic.get through the API: the reason keeps AMQP's "CODE - text" form."""
    if exc.code == ACCESS_REFUSED:
        return not_authorised(exc.reply_text)
    if exc.code == NOT_FOUND:
        return ApiError(404, "not_found", exc.reply_text)
    return bad_request(exc.reply_text)


def from_publish(exc: AMQPError) -> ApiError:
    """basic.publish through the API: always 400, the reason led by the numeric code."""
    return bad_request(f"{exc.code} {exc.reply_text}")
