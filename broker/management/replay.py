"""POST /api/queues/{vhost}/{queue}/replay: publish records of a queue's log again.

Not a RabbitMQ endpoint: RabbitMQ's queues forget a message once it is
acked, ours keep it in the log (see `broker/replay.py` for what is
replayed). The body is a JSON object:

    from_offset | from_time     where to start (one of them is required);
                                from_time is ms since the epoch or ISO 8601
    to_offset                   stop before this offset
    limit                       at most this many records selected
    to_queue | to_origin        another queue of the vhost, or each
                                dead-lettered record's origin exchange
    all                         unsettled records too

Unknown fields are refused rather than ignored: a misspelt `to_queue`
would otherwise replay into the source queue. The caller needs read
permission on the source queue and write permission on the target: the
queue, or for `to_origin` every exchange the records go back to, all
checked before anything is published. The answer is the counts, once the
copies are durable.
"""

from __future__ import annotations

from typing import Any

from ..logdump import DumpError, parse_time
from ..replay import Replay, ReplayError, ReplaySpec
from . import errors
from .convert import parse_bool
from .errors import ApiError, bad_request, not_found
from .operations import _locked
from .request import ApiRequest

FIELDS = ("from_offset", "from_time", "to_offset", "limit", "to_queue", "to_origin", "all")


async def replay_queue(req: ApiRequest) -> dict[str, int]:
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    source = vhost.queues.get(req.params["queue"])
    if source is None:
        raise not_found()
    spec = parse_spec(req.json())
    caller = req.caller

    def may_write(resource: str) -> bool:
        return caller.permitted(vhost.name, "write", resource)

    def may_publish_to(exchange: str) -> bool:
        return may_write(exchange or "amq.default")  # as permissions name the default exchange

    if not caller.permitted(vhost.name, "read", source.name):
        raise errors.access_refused()
    if source.exclusive_owner is not None:
        raise errors.from_declare(_locked(source))
    try:
        replay = Replay(req.broker, source, spec)
    except ReplayError as exc:
        raise _error(exc) from None
    if replay.target is not None and not may_write(replay.target.name):
        raise errors.access_refused()
    if spec.to_origin and not all(map(may_publish_to, await replay.origin_exchanges())):
        raise errors.access_refused()
    counts = await replay.run(may_publish_to)
    return counts.as_dict()


def parse_spec(body: dict[str, Any]) -> ReplaySpec:
    """The replay a request body asks for; 400 with the reason for a body that is not one."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise bad_request(f"unknown field '{unknown[0]}'; a replay takes {', '.join(FIELDS)}")
    has_offset, has_time = body.get("from_offset") is not None, body.get("from_time") is not None
    if has_offset == has_time:
        raise bad_request("give either from_offset or from_time" if has_offset else
                          "a replay needs from_offset or from_time")  # fmt: skip
    to_queue = body.get("to_queue")
    if to_queue is not None and not isinstance(to_queue, str):
        raise bad_request("to_queue must be a queue name (a string)")
    to_origin = parse_bool(body.get("to_origin"), False)
    if to_origin and to_queue is not None:
        raise bad_request("give either to_queue or to_origin")
    limit = _whole(body, "limit")
    if limit == 0:
        raise bad_request("limit must be a positive integer")
    return ReplaySpec(
        from_offset=_whole(body, "from_offset"),
        from_time=_time(body.get("from_time")),
        to_offset=_whole(body, "to_offset"),
        limit=limit,
        to_queue=to_queue,
        to_origin=to_origin,
        include_unsettled=parse_bool(body.get("all"), False),
    )


def _whole(body: dict[str, Any], key: str) -> int | None:
    """A non-negative integer field (or its decimal string); None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request(f"{key} must be a non-negative integer, not {value!r}")
    return value


def _time(value: Any) -> int | None:
    """from_time as ms since the epoch: an integer, or a string (digits or ISO 8601)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return parse_time(value)
        except DumpError:
            pass
    raise bad_request(f"from_time must be ms since the epoch or ISO 8601 "
                      f"(2026-11-21T10:00:00Z), not {value!r}")  # fmt: skip


def _error(exc: ReplayError) -> ApiError:
    return ApiError(404, "not_found", str(exc)) if exc.missing else bad_request(str(exc))
