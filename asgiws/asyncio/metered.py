"""The connection protocol of a server with ``--metrics-port``: the plain one, counting.

A server without metrics uses :class:`asgiws.asyncio.connection.ConnectionProtocol` as it is, so
metrics off costs nothing at all on the hot path: not even an ``if``. With metrics on, the
server's factory makes :class:`MeteredConnectionProtocol` instead.

How it counts (issue 14: metrics on within 3 % of metrics off). Under the echo benchmark one
read is one message, one ``send()`` one write, and on CPython 3.11 a Python call costs some
700-900 instructions before it does anything, a statement such as ``obj.count += len(data)``
300-500 (callgrind): overrides that counted and then called the plain ``data_received``,
``send`` and the transport's ``write`` cost 21 % per echo. So no call is added per message,
and a message is counted where its sizes are already at hand, with as few statements as can
be:

- WebSocket messages, their payload bytes and the wire bytes, both ways, are counted by the
  connection's :class:`asgiws.frames.FrameCodec`: once the 101 is written, the codec's class is
  swapped for a subclass (:func:`codec_class`, one per Metrics, counting into it through
  closure cells) whose ``receive_one`` (one whole small frame, or one whole compressed
  message, in one read: the hot path) and ``encode_message_into`` (a message out) are copies
  of the plain ones with the counting written in (checked: tests/test_metrics.py compares the
  plain methods' source with ``COPIED`` and fails when one changes, until the copy here
  follows; so is the copy of ``ConnectionProtocol.cycle_ended``, which counts a request cycle
  without a call more).
- Per message on those hot paths, one statement: the payload size (a small int, a cached
  object) is appended to ``Metrics.small_in`` or ``small_out``; their number, sum and wire
  bytes (a small frame's header is 6 bytes in, 2 out) are added in per batch, by
  ``Metrics.fold()``, at each loop lag sample (4 a second) and at each snapshot. So a scrape is
  exact at any time, and a list holds at most a quarter of a second's small messages.
- A whole compressed message in one read is counted by that copy too, around the plain
  ``_one_compressed``: its payload as the app gets it and the read's wire bytes. The other
  ways in (the parsing loop: several frames in a read, larger frames, fragmented compressed
  messages, one that fails; a large frame read in place) and the control frames out count
  around the plain method: per read or per frame, not per message.
- Until its 101 is written, a connection writes through :class:`CountingTransport`, which
  counts the times reading pauses and looks at each write for the 101 (its head is not
  WebSocket bytes; frames joined to it are). At the 101 the protocol becomes a
  :class:`MeteredWebSocketProtocol` (``__class__`` assigned) with the plain transport: its
  writes go straight to the transport, and the pauses are counted in its ``_step`` (not on the
  hot path of a message), where ``_read_paused`` is set.
- Per request cycle: the access record (sessions by close code, handshake rejections, HTTP
  requests and their duration) and app exceptions; per event: the time a ``send()`` waited for
  a slow client. The open connections are not counted at all: a scrape counts the server's
  connections.

The wire bytes are those the codec takes or makes: a WebSocket's bytes read after the peer's
Close (which nothing parses any more) and those that came behind the upgrade request, before
the 101 (parsed before the codec counts), are not counted; messages that come after our Close
are (they are received, and dropped, see WebSocketConnection._receive_closing). A message's
payload is as the app sees it: uncompressed, a text's UTF-8 bytes.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import frames, logs
from ..frame_checks import MASK_BIT, RSV1
from ..frames import _BINARY_HEADS, _TEXT_HEADS, FrameCodec, Message, _apply_mask
from ..metrics import DURATION_BUCKETS, Metrics
from ..protocol import AccessRecord
from .connection import ConnectionProtocol

if TYPE_CHECKING:
    from ..events import Event
    from ..masking import Buffer

# The plain methods copied here with counting written in, by the SHA-256 of their source (its
# first 16 hex digits) as inspect.getsource gives it: a test fails when one of them changes.
COPIED = {
    "ConnectionProtocol.cycle_ended": "092de0d5787065c7",
    "FrameCodec.receive_one": "ba9b1331ad4efd34",
    "FrameCodec.encode_message_into": "dd055ab6aa55036d",
}


def payload_size(text: str) -> int:
    """A text message's payload size in bytes: its UTF-8 length (its length when it is ASCII:
    ``str.isascii()`` reads a flag, it does not scan)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def count_events(events: list[Event]) -> tuple[int, int]:
    """The messages among a codec's events, and their payload bytes."""
    messages = payload = 0
    for event in events:
        if type(event) is Message:
            messages += 1
            data = event.data
            payload += payload_size(data) if type(data) is str else len(data)
    return messages, payload


_receive_declined = FrameCodec.receive_declined
_received_into = FrameCodec.received_into
_encode_message_into = FrameCodec.encode_message_into
_encode_ping = FrameCodec.encode_ping
_encode_pong = FrameCodec.encode_pong
_encode_close = FrameCodec.encode_close
_encode_close_reply = FrameCodec.encode_close_reply


def codec_class(metrics: Metrics) -> type[FrameCodec]:
    """The FrameCodec subclass that counts into ``metrics`` (made once per Metrics). It adds no
    slot, so that a connection's codec can become one (``__class__`` assignment)."""
    if metrics.codec_class is not None:
        return metrics.codec_class  # type: ignore[no-any-return]
    # Closure cells: the cheapest way from a method to the figures.
    m = metrics
    small_in = metrics.small_in
    small_out = metrics.small_out

    class MeteredFrameCodec(FrameCodec):
        __slots__ = ()

        # A copy of FrameCodec.receive_one (see COPIED), counting the message it returns.
        def receive_one(self, data: Buffer) -> str | bytes | None:
            if (
                self._buffer
                or self._in_frame
                or self._message_opcode
                or self._collecting is not None
            ):
                return None
            n = len(data)
            if n < 6 or self._closed:
                return None
            first = data[0]
            length = data[1] - MASK_BIT
            if n - 6 != length or length > 125 or length > self.max_size:
                return self._counted_compressed(data) if first & RSV1 else None
            payload: str | bytes
            if first == 0x82:
                payload = _apply_mask(data[6:], data[2:6])
            elif first == 0x81:
                try:
                    payload = _apply_mask(data[6:], data[2:6]).decode()
                except UnicodeDecodeError:
                    return None  # the parsing loop reports it with its reason
            else:
                return self._counted_compressed(data) if first & RSV1 else None
            small_in.append(length)  # (see Metrics.small_in)
            return payload

        def _counted_compressed(self, data: Buffer) -> str | bytes | None:
            # One whole compressed message (see FrameCodec._one_compressed), counted as the
            # parsing loop's are: its payload as the app gets it, the frame's wire bytes. When
            # it fails (or is not one), receive_declined counts the read.
            payload = self._one_compressed(data)
            if payload is not None:
                m.messages_in += 1
                m.payload_in += payload_size(payload) if type(payload) is str else len(payload)
                m.wire_in += len(data)
            return payload

        def receive_declined(self, data: Buffer) -> list[Event]:
            # It may parse the rest of the read with receive_data(), which counts too: the
            # counts are set from what they were before, not added to.
            messages, payload, wire = m.messages_in, m.payload_in, m.wire_in
            events = _receive_declined(self, data)
            for event in events:  # several messages per read: pipelined ones, say
                if type(event) is Message:
                    messages += 1
                    data_ = event.data
                    if type(data_) is str:
                        payload += len(data_) if data_.isascii() else payload_size(data_)
                    else:
                        payload += len(data_)
            m.messages_in = messages
            m.payload_in = payload
            m.wire_in = wire + len(data)
            return events

        def received_into(self, nbytes: int) -> list[Event]:
            events = _received_into(self, nbytes)
            m.wire_in += nbytes
            if events:
                messages, payload = count_events(events)
                m.messages_in += messages
                m.payload_in += payload
            return events

        # A copy of FrameCodec.encode_message_into (see COPIED), counting the message.
        def encode_message_into(self, data: str | Buffer, output: list[bytes]) -> None:
            # The common case: a small message, its two header bytes made in advance.
            if type(data) is str:
                if data is not frames._last_str:
                    payload = data.encode()
                    if len(payload) < self._small:
                        output.append(_TEXT_HEADS[len(payload)] + payload)
                        small_out.append(len(payload))  # (see Metrics.small_out)
                        return
            elif type(data) is bytes and len(data) < self._small:
                output.append(_BINARY_HEADS[len(data)] + data)
                small_out.append(len(data))
                return
            before = len(output)
            _encode_message_into(self, data, output)  # the rest, as the plain codec does it
            m.messages_out += 1
            m.payload_out += payload_size(data) if type(data) is str else len(data)
            m.wire_out += sum(map(len, output[before:]))

        def encode_ping(self, payload: bytes = b"") -> bytes:
            frame = _encode_ping(self, payload)
            m.wire_out += len(frame)
            return frame

        def encode_pong(self, payload: bytes = b"") -> bytes:
            frame = _encode_pong(self, payload)
            m.wire_out += len(frame)
            return frame

        def encode_close(self, code: int | None, reason: str = "") -> bytes:
            frame = _encode_close(self, code, reason)
            m.wire_out += len(frame)
            return frame

        def encode_close_reply(self, code: int, reason: str) -> bytes:
            frame = _encode_close_reply(self, code, reason)
            m.wire_out += len(frame)
            return frame

    metrics.codec_class = MeteredFrameCodec
    return MeteredFrameCodec


class CountingTransport:
    """The connection's transport: counts the times reading pauses, and until the upgrade
    looks at each write for the 101. No ``__slots__``: once the 101 is out, the instance's own
    ``write`` and ``writelines`` (the plain transport's bound methods) hide the class's."""

    def __init__(self, transport: asyncio.Transport, owner: MeteredConnectionProtocol) -> None:
        self.transport = transport
        self.owner: MeteredConnectionProtocol | None = owner
        self.metrics = owner.metrics
        self.close = transport.close  # type: ignore[method-assign]  # no call in between

    def write(self, data: bytes | bytearray | memoryview) -> None:
        owner = self.owner
        if owner is not None and owner.ws is not None:
            self._upgraded([data])
        self.transport.write(data)

    def writelines(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        parts = list(parts)
        owner = self.owner
        if owner is not None and owner.ws is not None:
            self._upgraded(parts)
        self.transport.writelines(parts)

    def _upgraded(self, parts: list[bytes | bytearray | memoryview]) -> None:
        """The first write of the WebSocket phase: the 101 (and what came before it in the
        same buffer), and frames the WebSocket made as it was built (small: joined to it, see
        ConnectionProtocol._write), which the codec made before it counted. From here on the
        codec counts, and the writes go straight to the plain transport."""
        owner = self.owner
        assert owner is not None and owner.ws is not None
        ws: Any = owner.ws
        metrics = self.metrics
        ws._codec.__class__ = metrics.codec_class or codec_class(metrics)
        first = bytes(parts[0])  # bytes, as the core writes them: no copy
        start = first.find(b"HTTP/1.1 101 ")
        end = first.find(b"\r\n\r\n", start) + 4 if start >= 0 else 0
        metrics.wire_out += sum(map(len, parts)) - end
        transport = self.transport
        # The rest of the step that writes this goes on with us: then the plain transport's.
        self.write = transport.write  # type: ignore[method-assign]
        self.writelines = transport.writelines  # type: ignore[method-assign,assignment]
        self.owner = None  # not needed any more, and no reference cycle left
        owner.__class__ = MeteredWebSocketProtocol
        owner.transport = transport

    def pause_reading(self) -> None:
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

    def close(self) -> None:  # (hidden by the instance's: see __init__)
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()


_connection_made = ConnectionProtocol.connection_made
_connection_lost = ConnectionProtocol.connection_lost
_app_finished = ConnectionProtocol._app_finished
_step = ConnectionProtocol._step
_wait_for_room = ConnectionProtocol._wait_for_room


class MeteredConnectionProtocol(ConnectionProtocol):
    """A ConnectionProtocol that counts into ``server.metrics`` (see the module's docstring)."""

    __slots__ = ("metrics",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No __init__ of our own: one call less per connection.
        metrics = self.server.metrics
        assert metrics is not None
        self.metrics = metrics
        _connection_made(self, transport)
        # The plain transport went to connection_made (its get_extra_info calls, uncounted);
        # from here on the plain protocol's methods go through the counting one.
        self.transport = CountingTransport(transport, self)  # type: ignore[arg-type,assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        _connection_lost(self, exc)
        transport: Any = self.transport
        transport.owner = None  # no reference cycle left for the garbage collector to find

    # A copy of ConnectionProtocol.cycle_ended (see COPIED), counting the cycle.
    def cycle_ended(self, record: AccessRecord, started: float) -> None:
        duration = self.loop.time() - started
        metrics = self.metrics
        scope = record.scope
        status = record.status
        # The two common cycles: Metrics.cycle_ended, inline (one call less per cycle).
        if scope is not None and status is not None and scope["type"] == "http":
            # An HTTP request the app answered.
            statuses = metrics.http_statuses
            statuses[status] = statuses.get(status, 0) + 1
            metrics.duration_buckets[bisect_left(DURATION_BUCKETS, duration)] += 1
            metrics.duration_sum += duration
        elif status == 101 and record.close_code is not None:
            # A WebSocket session that ended with a closing handshake (or a failure).
            sessions = metrics.sessions
            code = record.close_code
            sessions[code] = sessions.get(code, 0) + 1
        else:
            metrics.cycle_ended(record, duration)
        if self.config.access_log:
            logs.log_access(record, duration, self.server.access_format)

    def _app_finished(
        self, scope: dict[str, Any], error: BaseException | None, started: float
    ) -> None:
        if error is not None and isinstance(error, Exception):
            self.metrics.app_failed(str(scope["type"]))
        _app_finished(self, scope, error, started)

    async def _wait_for_room(self) -> None:
        started = self.loop.time()
        try:
            await _wait_for_room(self)
        finally:
            self.metrics.send_blocked += self.loop.time() - started


class MeteredWebSocketProtocol(MeteredConnectionProtocol):
    """A MeteredConnectionProtocol once its 101 is out (``__class__`` is assigned: the same
    slots): the plain transport, no CountingTransport in between; the times reading pauses are
    counted as the step that pauses it sets ``_read_paused`` (the pause and resume that hand
    the transport to a LargeFrameReader are no back-pressure, and not counted)."""

    __slots__ = ()

    def _step(self) -> None:
        paused = self._read_paused
        _step(self)
        if self._read_paused and not paused:
            self.metrics.reading_paused += 1

    connection_lost = ConnectionProtocol.connection_lost  # (no CountingTransport to let go)
