"""A server made of the wire layer and a small test handler, in a background thread.

The handler knows no queues: it answers the few methods the tests use, and
echoes every publish back as a delivery on the same channel, so real clients
can exercise the whole wire layer (handshake, channels, content, heartbeats,
errors) without the broker.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pamqp import commands

from warrenmq.amqp import ChannelError, ConnectionError, ConnectionHandler, start_server
from warrenmq.amqp.codec import encode_short


class EchoHandler(ConnectionHandler):
    """guest/guest on vhost '/'; 'queue.declare' answers; publishes come back as deliveries."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.consumers: dict[int, bytes] = {}
        self.delivery_tags: dict[int, int] = {}
        self.acks: list[tuple[int, int, bool]] = []
        self.confirming: dict[int, int] = {}

    def authenticate(self, mechanism: str, username: str, password: str) -> bool:
        return (username, password) == ("guest", "guest")

    def open_vhost(self, vhost: str) -> None:
        if vhost != "/":
            raise ConnectionError(530, f"access to vhost '{vhost}' refused for user 'guest'")

    def on_method(self, channel: int, method: Any) -> None:
        name = method.name
        if name == "Queue.Declare":
            if method.queue == "missing":
                raise ChannelError(404, f"no queue '{method.queue}' in vhost '/'")
            if method.queue == "fatal":
                raise ConnectionError(541, "the test handler was asked to fail")
            self.conn.send_method(channel, commands.Queue.DeclareOk(method.queue or "amq.gen-x", 0, 0))
        elif name == "Basic.Consume":
            tag = method.consumer_tag or "ctag-1"
            self.consumers[channel] = encode_short(tag)
            self.conn.send_method(channel, commands.Basic.ConsumeOk(tag))
        elif name == "Basic.Qos":
            self.conn.send_method(channel, commands.Basic.QosOk())
        elif name == "Confirm.Select":
            self.confirming[channel] = 0
            if not method.nowait:
                self.conn.send_method(channel, commands.Confirm.SelectOk())
        elif name == "Basic.Cancel":
            self.consumers.pop(channel, None)
            self.conn.send_method(channel, commands.Basic.CancelOk(method.consumer_tag))

    def on_publish(self, channel, exchange, routing_key, mandatory, immediate, properties, body):
        if channel in self.confirming:
            self.confirming[channel] += 1
            self.conn.send_confirm(channel, self.confirming[channel], False)
        ctag = self.consumers.get(channel)
        if ctag is None:
            return
        tag = self.delivery_tags.get(channel, 0) + 1
        self.delivery_tags[channel] = tag
        self.conn.send_deliver(
            channel, ctag, tag, False, encode_short(exchange) + encode_short(routing_key),
            properties, body,
        )  # fmt: skip

    def on_ack(self, channel: int, delivery_tag: int, multiple: bool) -> None:
        self.acks.append((channel, delivery_tag, multiple))

    def channel_closed(self, channel: int) -> None:
        self.consumers.pop(channel, None)


class ServerThread:
    """Runs start_server(EchoHandler) on 127.0.0.1 with an ephemeral port."""

    def __init__(self, handler_factory=EchoHandler, **options: Any) -> None:
        self.handler_factory = handler_factory
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> ServerThread:
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            start_server(self.handler_factory, "127.0.0.1", 0, **self.options), self.loop
        )
        self.server = fut.result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            self.server.close_clients() if hasattr(self.server, "close_clients") else None
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
