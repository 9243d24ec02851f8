"""Cost of the hot frames: the hand-written fast path against pamqp, in one run.

Usage: .venv/bin/python bench/codec_bench.py [--number N]

Measures, per message (Basic.Publish/Deliver + content header with a few
properties + a 256 B body):

* publish parse, fast path: what the wire layer does for a publish, run
  through `Connection.receive_data` on a chunk of many publishes with a
  handler that does nothing (frame splitting, checks, content assembly and
  the handler call included), and the bare codec functions alone;
* publish parse, pamqp: `pamqp.frame.unmarshal` of the three frames;
* deliver encode, fast path: `codec.encode_deliver` (raw property bytes kept
  from the publish);
* deliver encode, pamqp: `pamqp.frame.marshal` of Basic.Deliver, the
  content header (from a Basic.Properties object) and the body.

Each figure is the best of several repeats (time.perf_counter_ns), so
compare them within one run.
"""

from __future__ import annotations

import argparse
import gc
import platform
import shlex
import sys
import time
from collections.abc import Callable

from pamqp import body as pbody
from pamqp import commands
from pamqp import frame as pframe
from pamqp import header as pheader

from warrenmq.amqp import codec
from warrenmq.amqp.connection import Connection, State
from warrenmq.amqp.handler import ConnectionHandler

BODY = bytes(range(256))
PROPS = commands.Basic.Properties(
    content_type="application/json",
    delivery_mode=2,
    headers={"trace": "abc123", "attempt": 1},
    message_id="m-1",
)
CHANNEL = 1


def publish_frames() -> bytes:
    """Basic.Publish + content header + body as a client sends them."""
    return (
        pframe.marshal(
            commands.Basic.Publish(exchange="orders", routing_key="order.created"), CHANNEL
        )
        + pframe.marshal(pheader.ContentHeader(0, len(BODY), PROPS), CHANNEL)
        + pframe.marshal(pbody.ContentBody(BODY), CHANNEL)
    )


def best_ns(fn: Callable[[], None], per_call: int, repeats: int) -> float:
    """Best of `repeats` runs, in ns per message (fn handles per_call messages)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - start) / per_call)
    return best


class NullHandler(ConnectionHandler):
    """Counts publishes, does nothing else: the wire layer's own cost."""

    count = 0

    def on_publish(self, *args: object) -> None:
        self.count += 1


def open_connection() -> Connection:
    """A Connection past the handshake, with channel 1 open, fed by hand."""
    conn = Connection(NullHandler(), frame_max=131072)
    conn.state = State.OPEN
    conn.frame_max = 131072
    conn.receive_data(b"")  # no-op; state set above skips the handshake
    conn.receive_data(pframe.marshal(commands.Channel.Open(), CHANNEL))
    conn.data_to_send()
    return conn


def bench_parse(number: int, repeats: int) -> dict[str, float]:
    frames = publish_frames()
    chunk = frames * number
    conn = open_connection()

    def through_connection() -> None:
        conn.receive_data(chunk)

    def codec_only() -> None:
        unpack = codec.unpack_frame_header
        for _ in range(number):
            pos = 0
            _t, _c, size = unpack(frames, pos)
            codec.parse_publish(frames, pos + 11, pos + 7 + size)
            pos += 8 + size
            _t, _c, size = unpack(frames, pos)
            codec.parse_content_header(frames, pos + 7, pos + 7 + size)
            pos += 8 + size
            _t, _c, size = unpack(frames, pos)
            frames[pos + 7 : pos + 7 + size]

    def with_pamqp() -> None:
        unmarshal = pframe.unmarshal
        for _ in range(number):
            data = frames
            while data:
                used, _channel, _value = unmarshal(data)
                data = data[used:]

    result = {
        "publish parse, fast path (Connection.receive_data)": best_ns(
            through_connection, number, repeats
        ),
        "publish parse, fast path (codec functions only)": best_ns(codec_only, number, repeats),
        "publish parse, pamqp": best_ns(with_pamqp, number, max(2, repeats // 2)),
    }
    assert conn.handler.count == number * repeats, "the fast path dropped publishes"
    return result


def bench_encode(number: int, repeats: int) -> dict[str, float]:
    raw_props = codec.encode_properties(PROPS)
    ctag = codec.encode_short("amq.ctag-bench")
    exrk = codec.encode_short("orders") + codec.encode_short("order.created")
    fast = b"".join(codec.encode_deliver(CHANNEL, ctag, 1, False, exrk, raw_props, BODY, 131072))

    def fast_path() -> None:
        encode = codec.encode_deliver
        for tag in range(number):
            encode(CHANNEL, ctag, tag, False, exrk, raw_props, BODY, 131072)

    def with_pamqp() -> None:
        marshal = pframe.marshal
        for tag in range(number):
            b"".join(
                (
                    marshal(
                        commands.Basic.Deliver(
                            "amq.ctag-bench", tag, False, "orders", "order.created"
                        ),
                        CHANNEL,
                    ),
                    marshal(pheader.ContentHeader(0, len(BODY), PROPS), CHANNEL),
                    marshal(pbody.ContentBody(BODY), CHANNEL),
                )
            )

    reference = b"".join(
        (
            pframe.marshal(
                commands.Basic.Deliver("amq.ctag-bench", 1, False, "orders", "order.created"),
                CHANNEL,
            ),
            pframe.marshal(pheader.ContentHeader(0, len(BODY), PROPS), CHANNEL),
            pframe.marshal(pbody.ContentBody(BODY), CHANNEL),
        )
    )
    assert fast == reference, "the fast path and pamqp disagree on the bytes"
    return {
        "deliver encode, fast path (codec.encode_deliver)": best_ns(fast_path, number, repeats),
        "deliver encode, pamqp": best_ns(with_pamqp, number, max(2, repeats // 2)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20_000, help="messages per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="repeats (the best counts)")
    args = parser.parse_args(argv)
    gc.set_threshold(50_000, 20, 20)  # as `warrenmq serve` runs
    parse = bench_parse(args.number, args.repeats)
    encode = bench_encode(args.number, args.repeats)
    print("# codec benchmark\n")
    print(f"Command: `{shlex.join(sys.orig_argv)}`\n")
    print(f"- python: {platform.python_implementation()} {platform.python_version()}")
    print("- message: 256 B body, 4 properties (content_type, delivery_mode, headers, message_id)")
    print(f"- {args.number} messages per repeat, best of {args.repeats}\n")
    print("| operation | ns per message |")
    print("|---|--:|")
    for name, ns in {**parse, **encode}.items():
        print(f"| {name} | {ns:,.0f} |")
    pamqp_parse = parse["publish parse, pamqp"]
    print()
    print("| ratio (pamqp / fast path) | x |")
    print("|---|--:|")
    for name in (
        "publish parse, fast path (Connection.receive_data)",
        "publish parse, fast path (codec functions only)",
    ):
        print(f"| {name} | {pamqp_parse / parse[name]:.1f} |")
    print(
        f"| deliver encode, fast path | "
        f"{encode['deliver encode, pamqp'] / encode['deliver encode, fast path (codec.encode_deliver)']:.1f} |"
    )


if __name__ == "__main__":
    main()
