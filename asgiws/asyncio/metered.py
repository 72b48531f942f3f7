"""The connection protocol of a server with ``--metrics-port``: the plain one, counting.

A server without metrics uses :class:`asgiws.asyncio.connection.ConnectionProtocol` as it is, so
metrics off costs nothing at all on the hot path: not even an ``if``. With metrics on, the
server's factory makes :class:`MeteredConnectionProtocol` instead, whose overrides add to the
server's :class:`asgiws.metrics.Metrics` (plain integer attributes) and call the plain protocol:

- per read: wire bytes in (``data_received``, a LargeFrameReader's ``buffer_updated``);
- per write: wire bytes out (a thin wrapper of the transport, counting once the 101 is out);
- per message: messages and payload bytes in ``receive()`` / ``send()`` (one dict lookup and
  an increment; the text's length is its byte count when it is ASCII, which
  ``str.isascii()`` tells without a scan; otherwise it is encoded once to count);
- per cycle: the access record (sessions by close code, handshake rejections, HTTP requests
  and their duration), app exceptions, and the open connections as they open, upgrade, close;
- per event: reading paused, and the time a ``send()`` waited for a slow client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..metrics import Metrics
from ..protocol import AccessRecord
from .connection import ConnectionProtocol, LargeFrameReader

if TYPE_CHECKING:
    from .server import Server
    from .sockets import Listener


def payload_size(payload: str | bytes) -> int:
    """A message payload's size in bytes (UTF-8 for text)."""
    if type(payload) is str and not payload.isascii():
        return len(payload.encode("utf-8", "surrogatepass"))
    return len(payload)


class CountingTransport:
    """The connection's transport, counting the bytes written once ``counting`` is set (from
    the 101 on: the WebSocket's bytes)."""

    __slots__ = ("counting", "metrics", "transport")

    def __init__(self, transport: asyncio.Transport, metrics: Metrics) -> None:
        self.transport = transport
        self.metrics = metrics
        self.counting = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.counting:
            self.metrics.wire_out += len(data)
        self.transport.write(data)

    def writelines(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        parts = list(parts)
        if self.counting:
            self.metrics.wire_out += sum(len(part) for part in parts)
        self.transport.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class MeteredLargeFrameReader(LargeFrameReader):
    __slots__ = ()

    def buffer_updated(self, nbytes: int) -> None:
        owner = self.owner
        assert isinstance(owner, MeteredConnectionProtocol)
        owner.metrics.wire_in += nbytes
        super().buffer_updated(nbytes)


class MeteredConnectionProtocol(ConnectionProtocol):
    """A ConnectionProtocol that counts into ``server.metrics``."""

    __slots__ = ("metrics",)
    large_reader = MeteredLargeFrameReader

    def __init__(self, server: Server, listener: Listener) -> None:
        super().__init__(server, listener)
        metrics = server.metrics
        assert metrics is not None
        self.metrics = metrics

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.metrics.http_open += 1
        counting: Any = CountingTransport(transport, self.metrics)  # type: ignore[arg-type]
        super().connection_made(counting)

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.metrics.wire_in += len(data)
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ws is not None:
            self.metrics.websocket_open -= 1
        else:
            self.metrics.http_open -= 1
        super().connection_lost(exc)

    def _step(self) -> None:
        http = self.ws is None
        paused = self._read_paused
        super()._step()
        if http and self.ws is not None:
            # The 101 is written: the connection counts as a WebSocket from here on.
            metrics = self.metrics
            metrics.http_open -= 1
            metrics.websocket_open += 1
            transport: Any = self.transport
            transport.counting = True
        if self._read_paused and not paused:
            self.metrics.reading_paused += 1

    def cycle_ended(self, record: AccessRecord, duration: float) -> None:
        self.metrics.cycle_ended(record, duration)
        super().cycle_ended(record, duration)

    def _app_finished(
        self, scope: dict[str, Any], error: BaseException | None, started: float
    ) -> None:
        if isinstance(error, Exception):
            self.metrics.app_failed(str(scope["type"]))
        super()._app_finished(scope, error, started)

    async def receive(self) -> MutableMapping[str, Any]:
        message = await super().receive()
        payload = message.get("text")
        if payload is None:
            payload = message.get("bytes")
        if payload is not None:
            metrics = self.metrics
            metrics.messages_in += 1
            metrics.payload_in += payload_size(payload)
        return message

    async def send(self, message: MutableMapping[str, Any]) -> None:
        await super().send(message)
        if message.get("type") == "websocket.send":
            payload = message.get("text")
            if payload is None:
                payload = message.get("bytes")
            metrics = self.metrics
            metrics.messages_out += 1
            metrics.payload_out += payload_size(payload) if payload is not None else 0

    async def _wait_for_room(self) -> None:
        started = self.loop.time()
        try:
            await super()._wait_for_room()
        finally:
            self.metrics.send_blocked += self.loop.time() - started
