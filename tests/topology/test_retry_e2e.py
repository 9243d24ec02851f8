"""The `retry:` shorthand end to end: a consumer that rejects everything, with pika.

The file's ladder has three steps (200 ms, 400 ms, 800 ms) and then a
parking queue. A message rejected (requeue=false) every time comes back
three times, each time after at least that step's delay and through the
steps in order, and is then parked with the x-death history of its trip.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support.broker import BrokerProcess

DELAYS = (0.2, 0.4, 0.8)  # seconds, as the file says
SLACK = 10.0  # seconds a step may take beyond its delay on a slow machine
DEADLINE = 60.0  # seconds the whole trip may take
TOPOLOGY = """\
queues:
  - name: jobs
retry:
  - queue: jobs
    delays: [200ms, 400ms, 800ms]
    then: jobs.parked
"""


def test_a_rejected_message_climbs_the_ladder_then_parks(kit: Any, broker: BrokerProcess,
                                                         workdir: Path) -> None:  # fmt: skip
    file = kit.write(workdir, "jobs.yaml", TOPOLOGY)
    applied = kit.topology("apply", "--url", broker.management_url, "--yes", str(file))
    assert applied.code == 0, applied.err
    assert "+ queue 'jobs.parked' in vhost '/'" in applied.out

    kit.publish(broker, "/", "", "jobs", b"job 1")
    deliveries: list[tuple[float, str, bool]] = []
    with kit.channel(broker) as channel:

        def reject(ch: Any, method: Any, _properties: Any, _body: bytes) -> None:
            deliveries.append((time.monotonic(), method.routing_key, method.redelivered))
            ch.basic_reject(method.delivery_tag, requeue=False)
            if len(deliveries) == len(DELAYS) + 1:
                ch.stop_consuming()

        channel.basic_consume("jobs", reject)
        channel.connection.call_later(DEADLINE, channel.stop_consuming)
        channel.start_consuming()
        _method, properties, body = kit.get_message(channel, "jobs.parked")

    # The first delivery, then one back from each step, in the order of the steps.
    assert [key for _t, key, _r in deliveries] == ["jobs", "jobs.retry.1", "jobs.retry.2", "jobs.retry.3"]
    assert not any(redelivered for _t, _k, redelivered in deliveries)  # each is a new message
    gaps = [later[0] - earlier[0] for earlier, later in zip(deliveries, deliveries[1:], strict=False)]
    for step, (gap, delay) in enumerate(zip(gaps, DELAYS, strict=True), start=1):
        assert delay <= gap < delay + SLACK, f"step {step}: {gap:.3f}s for a delay of {delay}s"

    assert body == b"job 1"
    deaths = properties.headers["x-death"]
    assert {(d["queue"], d["reason"], d["count"]) for d in deaths} == {
        ("jobs", "rejected", 4),
        ("jobs.retry.1", "expired", 1),
        ("jobs.retry.2", "expired", 1),
        ("jobs.retry.3", "expired", 1),
    }
    assert (deaths[0]["queue"], deaths[0]["exchange"]) == ("jobs", "")  # the latest first
    assert properties.headers["x-first-death-queue"] == "jobs"
    assert properties.headers["x-first-death-reason"] == "rejected"
    assert kit.live_queue(broker, "/", "jobs")["messages"] == 0
