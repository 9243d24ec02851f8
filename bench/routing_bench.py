"""Routing throughput of warrenmq.exchanges: routes per second and microseconds per route.

Run from the repository root:

    .venv/bin/python bench/routing_bench.py            # the full table (about a minute)
    .venv/bin/python bench/routing_bench.py --quick    # smaller repeats, for a smoke test

Each case builds one exchange, then calls ``route`` in a tight loop over a
prepared list of messages; the figure is the best of several repeats (the
machine is shared and noisy, the best run is the least disturbed one). The
loop itself costs a few tens of nanoseconds per route and is included.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from warrenmq.exchanges import (
    ConsistentHashRouter,
    DirectRouter,
    FanoutRouter,
    HeadersRouter,
    TopicRouter,
)

SEED = 20240501

# Topic keys look like "<region>.<service>.<event>.<severity>".
LEVELS = [
    [f"r{i}" for i in range(10)],
    [f"svc{i}" for i in range(50)],
    [f"ev{i}" for i in range(50)],
    [f"s{i}" for i in range(20)],
]


def topic_pattern(rng: random.Random) -> str:
    """A binding key: about half are all literal words, a third have a '*', a fifth a '#'."""
    words = []
    for level, vocabulary in enumerate(LEVELS):
        roll = rng.random()
        if level > 0 and roll < 0.06:
            words.append("#")  # "#" swallows the rest of the key
            break
        words.append("*" if roll < 0.15 else rng.choice(vocabulary))
    if rng.random() < 0.03:
        words.insert(0, "#")
    return ".".join(words)


def topic_key(rng: random.Random) -> str:
    return ".".join(rng.choice(vocabulary) for vocabulary in LEVELS)


def timed(route: Callable[[Any], Any], messages: list[Any], repeats: int) -> float:
    """Best seconds per route over ``repeats`` passes through ``messages``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for message in messages:
            route(message)
        best = min(best, (time.perf_counter() - start) / len(messages))
    return best


def mean_fanout(route: Callable[[Any], tuple], messages: list[Any]) -> float:
    return sum(len(route(m)) for m in messages[:2000]) / min(len(messages), 2000)


ROWS: list[tuple[str, float, float]] = []


def report(case: str, seconds: float, destinations: float) -> None:
    ROWS.append((case, seconds, destinations))
    print(f"| {case:<52} | {1 / seconds:>12,.0f} | {seconds * 1e6:>8.2f} | {destinations:>6.1f} |", flush=True)


def bench_direct(rng: random.Random, repeats: int) -> None:
    router = DirectRouter()
    for i in range(100_000):
        router.bind(f"q{i}", f"key.{i}")
    keys = [f"key.{rng.randrange(100_000)}" for _ in range(200_000)]
    report("direct, 100k bindings, bound keys", timed(router.route, keys, repeats), mean_fanout(router.route, keys))
    misses = [f"nokey.{i}" for i in range(200_000)]
    report("direct, 100k bindings, unbound keys", timed(router.route, misses, repeats), 0.0)


def bench_fanout(repeats: int) -> None:
    router = FanoutRouter()
    for i in range(10):
        router.bind(f"q{i}")
    keys = [""] * 200_000
    report("fanout, 10 bindings", timed(router.route, keys, repeats), mean_fanout(router.route, keys))


def bench_topic(rng: random.Random, bindings: int, repeats: int) -> None:
    router = TopicRouter()
    patterns = set()
    while len(patterns) < bindings:
        patterns.add(topic_pattern(rng))
    start = time.perf_counter()
    for i, pattern in enumerate(sorted(patterns)):
        router.bind(f"q{i % 5000}", pattern)
    build = time.perf_counter() - start
    # No cache hits: distinct keys, more of them than the cache holds, so a
    # repeat finds none of them cached either.
    space = [a + "." + b for a in (f"{r}.{s}" for r in LEVELS[0] for s in LEVELS[1]) for b in (f"{e}.{v}" for e in LEVELS[2] for v in LEVELS[3])]
    unique = rng.sample(space, 60_000)
    label = f"{bindings // 1000}k" if bindings >= 1000 else str(bindings)
    miss = timed(router.route, unique, repeats)
    report(f"topic, {label} mixed bindings, no cache hits", miss, mean_fanout(router.match, unique))
    # Cache hits: 1,000 hot keys, all in the cache after the first pass.
    hot = [topic_key(rng) for _ in range(1000)]
    hits = [rng.choice(hot) for _ in range(200_000)]
    for key in hot:
        router.route(key)
    report(f"topic, {label} mixed bindings, cache hits", timed(router.route, hits, repeats), mean_fanout(router.route, hits))
    print(f"|   (built {bindings:,} topic bindings in {build:.2f} s)", file=sys.stderr)


def bench_headers(rng: random.Random, repeats: int) -> None:
    router = HeadersRouter()
    names = [f"h{i}" for i in range(20)]
    values: list[Any] = [f"v{i}" for i in range(10)] + list(range(10))
    for i in range(1000):
        args: dict[str, Any] = {name: rng.choice(values) for name in rng.sample(names, rng.randint(1, 3))}
        if rng.random() < 0.3:
            args["x-match"] = "any"
        router.bind(f"q{i}", "", args)
    messages = []
    for _ in range(50_000):
        messages.append({name: rng.choice(values) for name in rng.sample(names, rng.randint(3, 5))})

    def route(headers: dict) -> tuple:
        return router.route("", headers)

    report("headers, 1k bindings, 3-5 headers per message", timed(route, messages, repeats), mean_fanout(route, messages))


def bench_consistent_hash(rng: random.Random, repeats: int) -> None:
    router = ConsistentHashRouter()
    for i in range(10):
        router.bind(f"q{i}", str(rng.randint(1, 20)))
    unique = [f"order-{i}" for i in range(60_000)]
    report("x-consistent-hash, 10 destinations, no cache hits", timed(router.route, unique, repeats), 1.0)
    hot = [f"order-{i}" for i in range(1000)]
    hits = [rng.choice(hot) for _ in range(200_000)]
    report("x-consistent-hash, 10 destinations, cache hits", timed(router.route, hits, repeats), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repeat per case")
    options = parser.parse_args()
    repeats = 1 if options.quick else 5
    rng = random.Random(SEED)
    gc.freeze()
    print(f"# Python {platform.python_version()} on {platform.machine()}, {platform.system()}; best of {repeats}")
    print(f"| {'case':<52} | {'routes/s':>12} | {'µs/route':>8} | {'dests':>6} |")
    print(f"|{'-' * 54}|{'-' * 13}:|{'-' * 9}:|{'-' * 7}:|")
    bench_direct(rng, repeats)
    bench_fanout(repeats)
    for bindings in (10, 1000, 100_000):
        bench_topic(rng, bindings, repeats)
    bench_headers(rng, repeats)
    bench_consistent_hash(rng, repeats)


if __name__ == "__main__":
    main()
