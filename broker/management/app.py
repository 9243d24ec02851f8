"""The aiohttp application: one catch-all route, RabbitMQ's order of checks, JSON out.

The order is cowboy_rest's, as RabbitMQ answers: an unknown path is a 404,
a method the path does not take a 405 (no body, an Allow header), then
authentication (401), then the handler's own authorisation and lookups.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from typing import Any

from aiohttp import web

from . import routes
from .auth import authenticate
from .errors import ApiError, method_not_allowed, not_found
from .listing import parse_columns, select_columns
from .request import Answer, ApiRequest
from .stats import Sampler, sample_forever
from .views import Views

log = logging.getLogger("warrenmq.management")
STATE = web.AppKey("state", object)


class State:
    """What the handlers share: the broker, the views and the statistics sampler."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.sampler = Sampler()
        self.views = Views(broker, self.sampler)
        self.task: asyncio.Task | None = None


def _json_response(status: int, value: Any, headers: dict[str, str] | None = None) -> web.Response:
    try:
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # bytes that were not UTF-8 (in a property, say): escape them
        body = json.dumps(value, separators=(",", ":")).encode()
    all_headers = {"Content-Type": "application/json", "Cache-Control": "no-cache", **(headers or {})}
    return web.Response(status=status, body=body, headers=all_headers)


def _error_response(exc: ApiError) -> web.Response:
    headers = dict(exc.headers)
    if exc.error is not None:
        headers["Content-Type"] = "application/json"
    return web.Response(status=exc.status, body=exc.body(), headers=headers)


async def dispatch(request: web.Request) -> web.StreamResponse:
    state: State = request.app[STATE]
    method = "GET" if request.method == "HEAD" else request.method
    try:
        matched = routes.match(request.url.raw_path)
        if matched is None:
            raise not_found()
        handlers, params = matched
        allowed = sorted({"OPTIONS", *handlers, *(["HEAD"] if "GET" in handlers else [])})
        if method == "OPTIONS":
            return web.Response(status=200, headers={"Allow": ", ".join(allowed)})
        handler = handlers.get(method)
        if handler is None:
            raise method_not_allowed(allowed)
        peer = request.remote or ""
        caller = authenticate(state.broker, request.headers.get("Authorization"), peer)
        body = await request.read() if request.can_read_body else b""
        query = {k: request.query.getone(k) for k in request.query}
        api_request = ApiRequest(state, caller, method, params, query, request.headers, body)
        result = handler(api_request)
        if inspect.isawaitable(result):  # a handler that waits (for durability, say)
            result = await result
    except ApiError as exc:
        return _error_response(exc)
    except Exception:
        log.exception("management API: %s %s failed", request.method, request.path)
        return _json_response(500, {"error": "internal_server_error", "reason": "see the broker log"})
    if isinstance(result, Answer):
        if result.body is None:
            return web.Response(status=result.status, headers=result.headers)
        return _json_response(result.status, result.body, result.headers)
    result = select_columns(result, parse_columns(query))
    return _json_response(200, result)


async def _start_sampler(app: web.Application) -> None:
    state: State = app[STATE]
    state.task = asyncio.create_task(sample_forever(state.broker, state.sampler, state.views.all_numbers))


async def _stop_sampler(app: web.Application) -> None:
    task = app[STATE].task
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def build_app(broker: Any) -> web.Application:
    """The management API for broker, to serve in the broker's own event loop."""
    app = web.Application(client_max_size=64 * 1024 * 1024)  # definitions files can be large
    app[STATE] = State(broker)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app.on_startup.append(_start_sampler)
    app.on_cleanup.append(_stop_sampler)
    return app
