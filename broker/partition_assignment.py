"""Sharing a queue's partitions out among its consumers: balanced, and sticky.

With single active consumer, each partition of a partitioned queue has one
owner, and a partition that changes owner is handed over only once the last
owner's deliveries from it are settled (partitioned.py). So every move costs
a pause on that partition: the assignment moves as few partitions as a
balanced one can.

Balanced: owners' counts differ by at most one. The one-more shares go to the
consumers that hold the most already (earlier arrivals first when equal);
each consumer keeps as many of its partitions as its share allows (lowest
numbers first); what is left over, or had no owner, goes in partition order
to the consumers below their share, in arrival order. Keeping min(held,
share) each, with the larger shares where most is held, keeps the most
partitions in place of any balanced assignment.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

Owner = TypeVar("Owner", bound=Hashable)


def share_partitions(partitions: int, consumers: Sequence[Owner],
                     current: Sequence[Owner | None]) -> list[Owner | None]:  # fmt: skip
    """The owner of each partition, given consumers in arrival order and the owners now.

    An owner in `current` that is not among `consumers` has gone: its
    partitions are shared out. Without consumers every partition is unowned.
    """
    if not consumers:
        return [None] * partitions
    held: dict[Owner, list[int]] = {consumer: [] for consumer in consumers}
    free: list[int] = []
    for partition in range(partitions):
        owner = current[partition] if partition < len(current) else None
        if owner is not None and owner in held:
            held[owner].append(partition)
        else:
            free.append(partition)
    base, extra = divmod(partitions, len(consumers))
    by_holding = sorted(range(len(consumers)), key=lambda i: (-len(held[consumers[i]]), i))
    share = {consumers[i]: base + (rank < extra) for rank, i in enumerate(by_holding)}
    owners: list[Owner | None] = [None] * partitions
    for consumer in consumers:
        kept = held[consumer][: share[consumer]]
        for partition in kept:
            owners[partition] = consumer
        free.extend(held[consumer][share[consumer] :])
    free.sort(reverse=True)  # popped from the end: lowest partition first
    for consumer in consumers:
        for _ in range(share[consumer] - min(len(held[consumer]), share[consumer])):
            owners[free.pop()] = consumer
    return owners

