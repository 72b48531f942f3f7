"""The connection protocol of a server with ``--metrics-port``: the plain one, counting.

A server without metrics uses :class:`asgiws.asyncio.connection.ConnectionProtocol` as it is, so
metrics off costs nothing at all on the hot path: not even an ``if``. With metrics on, the
server's factory makes :class:`MeteredConnectionProtocol` instead, whose overrides add to the
server's :class:`asgiws.metrics.Metrics` (plain integer attributes) and call the plain protocol.
What runs per message is kept to the least, as the hot path is one message per read:

- per read: wire bytes in, and the messages that read added to the inbox (looked at, after the
  read, in ``inbox[before:]``: no wrapper around the app's ``receive()``);
- per ``send()``: a plain function in front of the base ``send`` coroutine, which it returns
  for the app to await (no second coroutine); it counts the message before it is sent;
- per write: wire bytes out (a thin wrapper of the transport, counting once the 101 is out);
- per cycle: the access record (sessions by close code, handshake rejections, HTTP requests
  and their duration) and app exceptions;
- per event: reading paused (the wrapper's ``pause_reading``), and the time a ``send()``
  waited for a slow client.
The open connections are not counted at all: a scrape counts the server's connections.

A text's payload size is its length when it is ASCII (``str.isascii()`` reads a flag, it does
not scan), else its UTF-8 length.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..metrics import Metrics
from ..protocol import AccessRecord
from .connection import ConnectionProtocol, LargeFrameReader

if TYPE_CHECKING:
    from .server import Server
    from .sockets import Listener


def payload_size(text: str) -> int:
    """A text message's payload size in bytes: its UTF-8 length."""
    return len(text.encode("utf-8", "surrogatepass"))


class CountingTransport:
    """The connection's transport, counting the WebSocket's bytes written (from the first write
    after the upgrade on, less the 101's head) and the times reading pauses. Each method the
    connection uses is written out: a ``__getattr__`` would slow every attribute lookup."""

    __slots__ = ("counting", "metrics", "owner", "restarting", "transport")

    def __init__(self, transport: asyncio.Transport, owner: MeteredConnectionProtocol) -> None:
        self.transport = transport
        self.owner: MeteredConnectionProtocol | None = owner
        self.metrics = owner.metrics
        self.counting = False  # the 101 is out
        self.restarting = False  # reading restarts for a LargeFrameReader: no back-pressure

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.counting:
            self.metrics.wire_out += len(data)
        elif self.owner is not None and self.owner.ws is not None:
            self._first([data])
        self.transport.write(data)

    def writelines(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        parts = list(parts)
        if self.counting:
            self.metrics.wire_out += sum(len(part) for part in parts)
        elif self.owner is not None and self.owner.ws is not None:
            self._first(parts)
        self.transport.writelines(parts)

    def _first(self, parts: list[bytes | bytearray | memoryview]) -> None:
        """The first write of the WebSocket phase: the 101's head, and what follows it (small
        frames are joined to it, see ConnectionProtocol._write)."""
        self.counting = True
        first = bytes(parts[0])  # bytes, as the core writes them: no copy
        end = first.find(b"\r\n\r\n") + 4 if first.startswith(b"HTTP/1.1 101 ") else 0
        self.metrics.wire_out += sum(len(part) for part in parts) - end

    def pause_reading(self) -> None:
        if not self.restarting:
            self.metrics.reading_paused += 1
        self.transport.pause_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.transport.set_protocol(protocol)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()


def count_received(metrics: Metrics, added: list[Any]) -> None:
    """The messages one read added to a WebSocket's inbox (a Close or a disconnect is none)."""
    for item in added:
        if type(item) is dict:
            text = item.get("text")
            if text is not None:
                metrics.messages_in += 1
                metrics.payload_in += len(text) if text.isascii() else payload_size(text)
            else:
                data = item.get("bytes")
                if data is not None:
                    metrics.messages_in += 1
                    metrics.payload_in += len(data)


_data_received = ConnectionProtocol.data_received
_send = ConnectionProtocol.send


class MeteredLargeFrameReader(LargeFrameReader):
    __slots__ = ()

    def buffer_updated(self, nbytes: int) -> None:
        owner = self.owner
        assert isinstance(owner, MeteredConnectionProtocol)
        metrics = owner.metrics
        metrics.wire_in += nbytes
        ws = owner.ws
        assert ws is not None
        inbox = ws.inbox
        before = len(inbox)
        super().buffer_updated(nbytes)
        if len(inbox) > before:
            count_received(metrics, inbox[before:])


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
        counting: Any = CountingTransport(transport, self)  # type: ignore[arg-type]
        super().connection_made(counting)

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        if ws is None:
            _data_received(self, data)
            return
        metrics = self.metrics
        metrics.wire_in += len(data)
        inbox = ws.inbox  # the app does not run during the read: what is new, this read added
        before = len(inbox)
        _data_received(self, data)
        after = len(inbox)
        if after == before + 1:
            # The hot path: one message in this read, counted here (no call, no slice).
            item = inbox[-1]
            if type(item) is dict:
                text = item.get("text")
                if text is not None:
                    metrics.messages_in += 1
                    metrics.payload_in += len(text) if text.isascii() else payload_size(text)
                    return
            count_received(metrics, [item])
        elif after > before:
            count_received(metrics, inbox[before:])

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        transport: Any = self.transport
        transport.owner = None  # no reference cycle left for the garbage collector to find

    def _read_large_frames(self) -> None:
        transport: Any = self.transport
        transport.restarting = True
        try:
            super()._read_large_frames()
        finally:
            transport.restarting = False

    def cycle_ended(self, record: AccessRecord, started: float) -> None:
        self.metrics.cycle_ended(record, self.loop.time() - started)
        super().cycle_ended(record, started)

    def _app_finished(
        self, scope: dict[str, Any], error: BaseException | None, started: float
    ) -> None:
        if isinstance(error, Exception):
            self.metrics.app_failed(str(scope["type"]))
        super()._app_finished(scope, error, started)

    # Not a coroutine itself: the app awaits the base send's coroutine that this returns.
    def send(self, message: MutableMapping[str, Any]) -> Coroutine[Any, Any, None]:
        if message.get("type") == "websocket.send":
            metrics = self.metrics
            metrics.messages_out += 1
            text = message.get("text")
            if text is not None:
                metrics.payload_out += len(text) if text.isascii() else payload_size(text)
            else:
                metrics.payload_out += len(message.get("bytes") or b"")
        return _send(self, message)

    async def _wait_for_room(self) -> None:
        started = self.loop.time()
        try:
            await super()._wait_for_room()
        finally:
            self.metrics.send_blocked += self.loop.time() - started
