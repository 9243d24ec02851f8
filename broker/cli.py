"""`warrenmq serve`: run the broker until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from .config import BrokerConfig, ConfigError, apply_overrides, configure_logging, load_config
from .server import Broker
from .topology.desired import Desired
from .topology.startup import StartupRefused, load_for_start


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warrenmq", description="warrenmq message broker")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the broker")
    serve.add_argument("--config", help="a YAML config file")
    serve.add_argument("--listen", action="append", dest="listeners", metavar="HOST:PORT",
                       help="AMQP listener (repeatable; default 127.0.0.1:5672)")  # fmt: skip
    serve.add_argument("--data-dir", help="data directory (default ./data)")
    serve.add_argument("--fsync", help="always | interval | never")
    serve.add_argument("--fsync-interval-ms", type=int)
    serve.add_argument("--heartbeat", type=int)
    serve.add_argument("--frame-max", type=int)
    serve.add_argument("--channel-max", type=int)
    serve.add_argument("--log-level", help="debug | info | warning | error")
    serve.add_argument("--management", metavar="HOST:PORT|off",
                       help="management HTTP API listener (default 127.0.0.1:15672)")  # fmt: skip
    serve.add_argument("--prometheus", metavar="HOST:PORT|off",
                       help="Prometheus /metrics listener (default 127.0.0.1:15692)")  # fmt: skip
    serve.add_argument("--topology", metavar="FILE",
                       help="create this topology file's entities at start (see docs/topology.md)")  # fmt: skip
    from . import ctl, logdump
    from .topology import command as topology

    ctl.add_parser(sub)
    logdump.add_parser(sub)
    topology.add_parser(sub)
    return parser


def load(args: argparse.Namespace) -> BrokerConfig:
    config = load_config(args.config) if args.config else BrokerConfig()
    return apply_overrides(
        config,
        {
            "listeners": args.listeners,
            "data_dir": args.data_dir,
            "fsync": args.fsync,
            "fsync_interval_ms": args.fsync_interval_ms,
            "heartbeat": args.heartbeat,
            "frame_max": args.frame_max,
            "channel_max": args.channel_max,
            "log_level": args.log_level,
            "management_listener": args.management,
            "prometheus_listener": args.prometheus,
            "topology": args.topology,
        },
    )


async def serve(config: BrokerConfig, topology: Desired | None = None) -> None:
    broker = Broker(config)
    broker.startup_topology = topology
    try:
        await broker.start()
    except StartupRefused:
        await broker.stop()  # nothing was listening yet; close the logs cleanly
        raise
    gc.collect()
    gc.freeze()  # start-up objects never need collecting again
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("warrenmq.broker").info("shutting down")
    await broker.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        return args.run(args)
    try:
        config = load(args)
    except ConfigError as exc:
        print(f"warrenmq: {exc}", file=sys.stderr)
        return 2
    configure_logging(config)
    try:
        topology = load_for_start(config.topology) if config.topology else None
    except StartupRefused as exc:
        print(f"warrenmq: {exc}", file=sys.stderr)
        return 2
    gc.set_threshold(50_000, 20, 20)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    try:
        if uvloop is not None:
            uvloop.run(serve(config, topology))
        else:
            asyncio.run(serve(config, topology))
    except OSError as exc:
        print(f"warrenmq: {exc}", file=sys.stderr)
        return 1
    except StartupRefused as exc:
        print(f"warrenmq: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
