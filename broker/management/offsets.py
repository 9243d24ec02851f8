"""GET /api/queues/{vhost}/{queue}/offsets: a queue's log offsets and how far its readers are.

Not a RabbitMQ endpoint: it shows what the log keeps. Each partition (one
for an unpartitioned queue) with its log start and end offsets and the
records the log holds between them; then each committed offset: a stream's
named consumers, a partitioned stream's consumer groups (one row per
partition), or for a classic queue its settled position ("settled": every
offset up to `committed` is settled). The lag is the records after the
committed offset, `log_end - committed - 1`, never negative. Reading it
needs read permission on the queue, as consuming does.
"""

from __future__ import annotations

from typing import Any

from ..partitioned import PartitionedQueue
from ..queue import Queue
from . import errors
from .errors import not_found
from .request import ApiRequest
from .views import _queue_type

SETTLED = "settled"  # the row of a classic queue's settled position


def queue_offsets(req: ApiRequest) -> dict[str, Any]:
    req.caller.require_vhost(req.params["vhost"])
    vhost = req.vhost()
    queue = vhost.queues.get(req.params["queue"])
    if queue is None:
        raise not_found()
    if not req.caller.permitted(vhost.name, "read", queue.name):
        raise errors.access_refused()
    members: list[Any] = list(queue.members) if isinstance(queue, PartitionedQueue) else [queue]
    ends = [member.log.log_end_offset for member in members]
    partitions = [
        {"partition": p, "log_start": m.log.log_start_offset, "log_end": end,
         "messages": end - m.log.log_start_offset}
        for p, (m, end) in enumerate(zip(members, ends, strict=True))
    ]  # fmt: skip
    consumers: list[dict[str, Any]] = []
    if isinstance(members[0], Queue):
        for p, (member, end) in enumerate(zip(members, ends, strict=True)):
            consumers.append(_row(SETTLED, False, p, member.settled_below - 1, end))
    else:
        for name, partition, committed in queue.offsets.of_queue(vhost.name, queue.name):
            group = partition is not None
            consumers.append(_row(name, group, partition or 0, committed, ends[partition or 0]))
    return {"name": queue.name, "vhost": vhost.name, "type": _queue_type(queue),
            "partitions": partitions, "consumers": consumers}  # fmt: skip


def _row(name: str, group: bool, partition: int, committed: int, log_end: int) -> dict[str, Any]:
    return {"name": name, "group": group, "partition": partition, "committed": committed,
            "lag": max(0, log_end - committed - 1)}  # fmt: skip
