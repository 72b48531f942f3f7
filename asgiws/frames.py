"""Sans-IO WebSocket frame codec for the server side of RFC 6455 (and RFC 7692 compression).

INTERFACE CONTRACT (protocol.py and websocket.py code against exactly this; keep it):

    codec = FrameCodec(max_size=16 * 1024 * 1024, deflate=None | PerMessageDeflate,
                       pool=None | BufferPool)
    codec.receive_one(data)             # -> str | bytes | None: the one-frame fast path
    codec.receive_declined(data)        # -> list[Event], for the same bytes, after a None
    codec.receive_data(data)            # -> list[Event]: both of the above, in wire order
    codec.collecting                    # True while a large binary frame is being collected
    codec.read_target()                 # -> memoryview | None: where its next bytes go
    codec.received_into(nbytes)         # -> list[Event], after writing into read_target()
    codec.encode_message_into(data, output)  # str -> text frame, bytes -> binary; appended
    codec.encode_message(data)          # -> bytes, the same frame in one piece
    codec.encode_ping(payload)          # -> bytes
    codec.encode_pong(payload)          # -> bytes
    codec.encode_close(code, reason)    # code None -> empty close payload; -> bytes
    check_close(code, reason)           # the rule for a code and reason we send (ValueError)

Events:
    Message(data: str | bytes)   a complete, reassembled, validated, decompressed message
    Ping(payload: bytes)         the caller answers with encode_pong(payload)
    Pong(payload: bytes)
    CloseReceived(code, reason)  the peer's Close; code 1005 when the frame had no payload.
                                 Parsing stops after it: later bytes are ignored.
    ProtocolFailure(code, reason) the peer broke the protocol (1002), sent invalid UTF-8 (1007)
                                 or too big a message (1009). Parsing stops after it. Everything
                                 that was complete before the bad frame is returned ahead of it.

Nothing in this module imports asyncio, reads a clock or keeps process-wide mutable state.

How bytes flow
--------------
``receive_one`` takes the common case, one whole small masked frame per read, and builds no
event; with permessage-deflate also one whole compressed message per read, as browsers send
them (inflated at once, bounded as in the loop). ``receive_declined`` is the one parsing loop,
for everything else. Only frame headers
and control frames (at most 14 + 125 bytes) are ever buffered. A data frame's payload is
streamed: each piece is unmasked as it arrives (the mask phase carried across pieces) and
handed to :class:`~asgiws.reassembly.MessageAssembler` (bounded inflate, ``max_size``,
incremental UTF-8: a bad byte fails on the chunk that carries it, Autobahn 6.4.x). A large
binary frame over several reads goes to :class:`~asgiws.reassembly.LargeFrameCollector`.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from .events import (
    _CONTROL_LIKE,
    FIN,
    INVALID_DATA,
    MAX_CLOSE_REASON,
    MAX_CONTROL_PAYLOAD,
    MESSAGE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PROTOCOL_ERROR,
    CloseCode,
    CloseReceived,
    Event,
    Message,
    Opcode,
    Ping,
    Pong,
    ProtocolFailure,
    check_close,
    is_sendable_close_code,
    is_valid_close_code,
)
from .frame_checks import MASK_BIT, RSV1
from .frame_checks import UNCHECKED as _UNCHECKED
from .frame_checks import check_header as _check_header
from .frame_checks import control_event as _control
from .masking import Buffer, MaskFunction, apply_mask, apply_mask_python
from .reassembly import (
    DIRECT_MIN,
    OWN_POOL_COUNT,
    POOL_LARGEST,
    BufferPool,
    InvalidData,
    LargeFrameCollector,
    MessageAssembler,
    MessageTooBig,
    utf8_error,
)

# The masking routine the codec calls, a module global so that a test can swap in the pure one.
_apply_mask: MaskFunction = apply_mask

if TYPE_CHECKING:
    from .deflate import PerMessageDeflate

__all__ = [
    "MAX_CLOSE_REASON",
    "MAX_CONTROL_PAYLOAD",
    "BufferPool",
    "CloseCode",
    "CloseReceived",
    "Event",
    "FrameCodec",
    "MaskFunction",
    "Message",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolFailure",
    "apply_mask_python",
    "check_close",
    "is_sendable_close_code",
    "is_valid_close_code",
]


# -- helpers ---------------------------------------------------------------------------------

_pack_short: Final = struct.Struct("!BBH").pack
_pack_long: Final = struct.Struct("!BBQ").pack
_unpack_short: Final = struct.Struct("!H").unpack_from
_unpack_long: Final = struct.Struct("!Q").unpack_from

# From this payload size on, a frame's header and payload are written as two buffers instead of
# being copied into one: below it, the copy is cheaper than a second buffer.
_NO_COPY_SIZE: Final = 64 * 1024


def _frame(first: int, payload: bytes) -> bytes:
    """A server frame: unmasked (RFC 6455 §5.1), with the shortest length encoding (§5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    return _header(first, n) + payload


# The two-byte headers of unfragmented, uncompressed text and binary frames up to 125 bytes.
_TEXT_HEADS: Final = tuple(bytes((FIN | OP_TEXT, n)) for n in range(126))
_BINARY_HEADS: Final = tuple(bytes((FIN | OP_BINARY, n)) for n in range(126))


# The last str a codec encoded that was not a small frame's, and its UTF-8 bytes: an app that
# sends one str to many connections (a chat room, a live feed) has it encoded once, not once
# per connection, and from 64 KiB on the same payload object goes to every connection's
# transport, uncopied. The str is held until another replaces it. A small message is not
# kept: its encoding costs less than keeping it would cost every other small message.
_last_str: str | None = None
_last_payload = b""


def _header(first: int, n: int) -> bytes:
    if n < 126:
        return bytes((first, n))
    if n < 0x10000:
        return _pack_short(first, 126, n)
    return _pack_long(first, 127, n)


def _control_payload(payload: bytes, kind: str) -> bytes:
    payload = bytes(payload)
    # RFC 6455 §5.5: control frame payloads are 125 bytes or less.
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError(
            f"{kind} payload is {len(payload)} bytes; the limit is {MAX_CONTROL_PAYLOAD}"
        )
    return payload


class FrameCodec:
    """The server side of the RFC 6455 framing layer, sans I/O.

    ``pool`` holds the buffers of large binary frames between messages; a server may give all
    its connections one. Without it, the codec makes its own on its first large frame, which
    keeps one buffer (up to 4 MiB) for the connection's next one.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_collecting",
        "_collector",
        "_deflate",
        "_failed",
        "_frame_fin",
        "_frame_mask",
        "_frame_remaining",
        "_in_frame",
        "_message",
        "_message_opcode",
        "_pool",
        "_small",
        "max_size",
    )

    def __init__(
        self,
        max_size: int = 16 * 1024 * 1024,
        deflate: PerMessageDeflate | None = None,
        pool: BufferPool | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1 byte, not {max_size}")
        self.max_size = max_size
        self._deflate = deflate
        # A message payload shorter than this is sent as one frame with a ready-made header:
        # under 126 bytes (a two-byte header), and uncompressed (under --ws-deflate-min-size).
        self._small = 126 if deflate is None else min(126, deflate.min_size)
        # Bytes of an incomplete frame header or control frame; never a data payload.
        self._buffer = b""
        self._closed = False
        self._failed: ProtocolFailure | None = None  # see _one_compressed
        # The data frame whose payload is being streamed.
        self._in_frame = False
        self._frame_fin = False
        self._frame_remaining = 0
        self._frame_mask = b""  # rotated so that it applies from the next payload byte on
        # The message being reassembled: opcode 0 when none is open.
        self._message_opcode = 0
        # Made on the first message that is not one whole small frame in one read: an idle
        # connection, or one that only gets the fast path's messages, never holds one.
        self._message: MessageAssembler | None = None
        # A large binary frame's payload being collected (see _start_collecting): the
        # collector while it is, else None. The collector and its pool are made on first use.
        self._collecting: LargeFrameCollector | None = None
        self._collector: LargeFrameCollector | None = None
        self._pool = pool

    # -- receiving -------------------------------------------------------------------------------

    def receive_data(self, data: Buffer) -> list[Event]:
        """Parse bytes from the peer; return the events they complete, in wire order.

        ``data`` may be a view of a buffer that is reused once this returns: nothing here keeps
        a reference to it (every piece kept is a copy, or the unmasked output, a new object).
        """
        payload = self.receive_one(data)
        if payload is not None:
            return [Message(payload)]
        return self.receive_declined(data)

    def receive_one(self, data: Buffer) -> str | bytes | None:
        """The common case, without events: when nothing is pending and ``data`` is exactly one
        whole masked FIN text or binary frame, no RSV bit, a 7-bit length and (for text) valid
        UTF-8, the message's payload; or, with permessage-deflate, one whole compressed message
        (see :meth:`_one_compressed`). Otherwise None: pass the same bytes to
        :meth:`receive_declined`, which parses them (nothing was consumed) or reports the
        failure of the compressed message taken here."""
        if self._buffer or self._in_frame or self._message_opcode or self._collecting is not None:
            return None
        n = len(data)
        if n < 6 or self._closed:
            return None
        first = data[0]
        length = data[1] - MASK_BIT  # negative when unmasked; 126 and 127 announce a longer field
        if n - 6 != length or length > 125 or length > self.max_size:
            return self._one_compressed(data) if first & RSV1 else None
        if first == 0x82:
            return _apply_mask(data[6:], data[2:6])
        if first == 0x81:
            try:
                return _apply_mask(data[6:], data[2:6]).decode()
            except UnicodeDecodeError:
                return None  # the parsing loop reports it with its reason
        return self._one_compressed(data) if first & RSV1 else None

    def receive_declined(self, data: Buffer) -> list[Event]:
        """:meth:`receive_data` for bytes that :meth:`receive_one` just returned None for,
        without trying that again: the one parsing loop (or the failure of the compressed
        message receive_one took, see :meth:`_one_compressed`)."""
        if self._closed:
            # A compressed message receive_one took and failed is reported here, once.
            failed = self._failed
            if failed is None:
                return []
            self._failed = None
            return [failed]
        collecting = self._collecting
        if collecting is not None:
            taken = collecting.feed(data)
            if not collecting.complete:
                return []
            events: list[Event] = [self._collected(collecting)]
            if taken < len(data):
                events.extend(self.receive_data(data[taken:]))
            return events
        return self._receive(data)

    def _one_compressed(self, data: Buffer) -> str | bytes | None:
        """:meth:`receive_one` for a frame with RSV1 set: when ``data`` is exactly one whole
        masked FIN text or binary frame with RSV1 alone and permessage-deflate was negotiated
        (a whole compressed message in one read, as browsers send them), the inflated message.
        Otherwise None, and nothing is consumed. The parsing loop's checks, limits and
        failures (see MessageAssembler.whole_compressed): a failure is kept in ``_failed``,
        for receive_declined to report, and None returned."""
        if self._deflate is None:
            return None
        n = len(data)
        first = data[0]
        # RFC 6455 §5.2, RFC 7692 §6: FIN, RSV1 alone, text or binary.
        if first != 0xC1 and first != 0xC2:
            return None
        length = data[1] - MASK_BIT  # negative when unmasked
        if n < 6 or length < 0 or length == 127:
            return None  # unmasked, or a 64-bit length: the parsing loop's
        header = 6
        if length == 126:
            if n < 8:
                return None
            header = 8
            length = (data[2] << 8) | data[3]
        if n - header != length:
            return None  # not exactly one whole frame
        message = self._message
        if message is None:
            message = self._message = MessageAssembler(self.max_size, self._deflate)
        message.text = first == 0xC1
        raw = data[header:] if length < 4096 else memoryview(data)[header:]
        try:
            return message.whole_compressed(_apply_mask(raw, data[header - 4 : header]))
        except (InvalidData, MessageTooBig) as exc:
            failure = self._reassembly_failure(exc)
        self._fail([], failure)
        self._failed = failure
        return None

    def _receive(self, data: Buffer) -> list[Event]:
        events: list[Event] = []
        # bytes(data) is data itself when it is bytes already.
        buf = self._buffer + data if self._buffer else bytes(data)
        apply_mask = _apply_mask
        unchecked = _UNCHECKED
        extended = self._deflate is not None
        end = len(buf)
        pos = 0
        while True:
            if self._in_frame:
                # Stream the payload of a data frame: take what has arrived.
                take = min(self._frame_remaining, end - pos)
                if take == 0 and self._frame_remaining:
                    break
                piece = apply_mask(memoryview(buf)[pos : pos + take], self._frame_mask)
                pos += take
                self._frame_remaining -= take
                if take & 3:
                    mask = self._frame_mask
                    self._frame_mask = mask[take & 3 :] + mask[: take & 3]
                last = not self._frame_remaining
                if last:
                    self._in_frame = False
                final = last and self._frame_fin
                assembler = self._message
                assert assembler is not None  # made when the frame's header was read
                try:
                    assembler.piece(piece, final)
                except (InvalidData, MessageTooBig) as exc:
                    return self._fail(events, self._reassembly_failure(exc))
                if final:
                    self._message_opcode = 0
                    events.append(Message(assembler.end()))
                continue

            available = end - pos
            if available < 2:
                break
            first = buf[pos]
            second = buf[pos + 1]
            # Most frames pass every header check without a call (see _UNCHECKED).
            if not (unchecked[first] and second & MASK_BIT) or self._message_opcode:
                failure = _check_header(first, second, self._message_opcode, extended)
                if failure is not None:
                    return self._fail(events, failure)
            opcode = first & 0x0F
            length = second & 0x7F
            header = 6
            if length == 126:
                header = 8
                if available < header:
                    break
                (length,) = _unpack_short(buf, pos + 2)
            elif length == 127:
                header = 14
                if available < header:
                    break
                (length,) = _unpack_long(buf, pos + 2)
                # RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
                if length >> 63:
                    return self._fail(
                        events,
                        ProtocolFailure(
                            PROTOCOL_ERROR, f"64-bit payload length with the top bit set: {length}"
                        ),
                    )
            # RFC 6455 §5.2 asks for the minimal length encoding, but does not make a longer one
            # an error; it is accepted, like Autobahn does.
            if available < header:
                break
            mask = buf[pos + header - 4 : pos + header]

            if opcode >= _CONTROL_LIKE:
                if available < header + length:
                    break  # control frames are small (checked above): wait for all of it
                payload = apply_mask(buf[pos + header : pos + header + length], mask)
                pos += header + length
                event = _control(opcode, payload)
                events.append(event)
                if type(event) is CloseReceived or type(event) is ProtocolFailure:
                    self._closed = True
                    self._buffer = b""
                    return events
                continue

            # A data frame: start (or continue) the message, then stream its payload.
            message = self._message
            if message is None:
                message = self._message = MessageAssembler(self.max_size, self._deflate)
            if opcode != OP_CONTINUATION:
                message.compressed = bool(first & RSV1)
            if not message.compressed and message.size + length > self.max_size:
                return self._fail(
                    events, self._too_big(message.size + length, "announced by a header")
                )
            if opcode != OP_CONTINUATION:
                if first & FIN and not message.compressed:
                    if available >= header + length:
                        # A whole unfragmented message is here: no need to stream it.
                        start = pos + header
                        pos = start + length
                        raw = buf[start:pos] if length < 4096 else memoryview(buf)[start:pos]
                        payload = apply_mask(raw, mask)
                        if opcode == OP_BINARY:
                            events.append(Message(payload))
                            continue
                        try:
                            events.append(Message(payload.decode()))
                        except UnicodeDecodeError as exc:
                            failure = ProtocolFailure(INVALID_DATA, utf8_error(exc, exc.start))
                            return self._fail(events, failure)
                        continue
                    if opcode == OP_BINARY and length >= DIRECT_MIN:
                        # A large binary message in one frame, not all here yet: collected in
                        # one pooled buffer (see LargeFrameCollector).
                        self._start_collecting(length, bytes(mask), memoryview(buf)[pos + header :])
                        self._buffer = b""
                        return events
                message.text = opcode == OP_TEXT
                if first & FIN and message.compressed and available >= header + length:
                    # A whole compressed message in one frame (what browsers send): inflated
                    # at once, bounded as any other (see MessageAssembler.whole_compressed).
                    start = pos + header
                    pos = start + length
                    raw = buf[start:pos] if length < 4096 else memoryview(buf)[start:pos]
                    try:
                        events.append(Message(message.whole_compressed(apply_mask(raw, mask))))
                    except (InvalidData, MessageTooBig) as exc:
                        return self._fail(events, self._reassembly_failure(exc))
                    message.compressed = False
                    continue
                self._message_opcode = opcode
            pos += header
            self._in_frame = True
            self._frame_fin = bool(first & FIN)
            self._frame_remaining = length
            self._frame_mask = mask

        self._buffer = buf[pos:] if pos < end else b""
        return events

    # -- large frames, read in place ---------------------------------------------------------------

    @property
    def collecting(self) -> bool:
        """True while a large binary frame's payload is being collected in one buffer: the
        I/O layer may then read into :meth:`read_target` instead of calling receive_data."""
        return self._collecting is not None

    def read_target(self) -> memoryview | None:
        """The part of the collecting buffer still missing (see :attr:`collecting`), to read
        into directly; report what was written with :meth:`received_into`."""
        collecting = self._collecting
        if collecting is None:
            return None
        return collecting.target()

    def received_into(self, nbytes: int) -> list[Event]:
        """``nbytes`` were written at the start of the view :meth:`read_target` returned."""
        collecting = self._collecting
        if collecting is None:
            raise RuntimeError("received_into() without a read_target()")
        if not collecting.advance(nbytes):
            return []
        return [self._collected(collecting)]

    def _start_collecting(self, length: int, mask: bytes, first: memoryview) -> None:
        collector = self._collector
        if collector is None:
            pool = self._pool
            if pool is None:
                pool = self._pool = BufferPool(OWN_POOL_COUNT, POOL_LARGEST)
            collector = self._collector = LargeFrameCollector(pool)
        collector.start(length, mask, first)
        self._collecting = collector

    def _collected(self, collecting: LargeFrameCollector) -> Message:
        self._collecting = None
        return Message(collecting.finish())

    # -- failing ---------------------------------------------------------------------------------

    def _reassembly_failure(self, exc: InvalidData | MessageTooBig) -> ProtocolFailure:
        if type(exc) is MessageTooBig:
            return self._too_big(exc.size, "after decompression")
        # RFC 6455 §8.1 and RFC 7692 §8: invalid UTF-8 or compressed data fails with 1007.
        return ProtocolFailure(INVALID_DATA, str(exc))

    def _too_big(self, size: int, when: str) -> ProtocolFailure:
        # RFC 6455 §7.4.1: 1009, a message too big to process.
        return ProtocolFailure(
            MESSAGE_TOO_BIG,
            f"message too big: {size} bytes {when}, the limit is {self.max_size}",
        )

    def _fail(self, events: list[Event], failure: ProtocolFailure) -> list[Event]:
        events.append(failure)
        self._closed = True
        self._buffer = b""
        if self._collecting is not None:
            self._collecting.abandon()
            self._collecting = None
        if self._message is not None:
            self._message.clear()
        return events

    # -- sending ---------------------------------------------------------------------------------

    def encode_message(self, data: str | Buffer) -> bytes:
        """One unfragmented frame: text for ``str``, binary for bytes-like data.

        With permessage-deflate negotiated, a payload of at least the deflate state's
        ``min_size`` is compressed and RSV1 set (RFC 7692 §6).
        """
        output: list[bytes] = []
        self.encode_message_into(data, output)
        return output[0] if len(output) == 1 else b"".join(output)

    def encode_message_into(self, data: str | Buffer, output: list[bytes]) -> None:
        """Like :meth:`encode_message`, appending to ``output``; a large payload is appended as
        it is, after its header, so that it is not copied (the I/O layer writes both at once).

        A ``str`` too long for the small frame, sent again (to this connection or another: a
        broadcast), is not encoded again (see ``_last_str``)."""
        global _last_str, _last_payload
        if type(data) is str:
            if data is _last_str:
                payload = _last_payload
            else:
                payload = data.encode()
                # The common case: a small message, its two header bytes made in advance.
                if len(payload) < self._small:
                    output.append(_TEXT_HEADS[len(payload)] + payload)
                    return
                _last_str = data
                _last_payload = payload
            self._payload_into(FIN | OP_TEXT, payload, output)
            return
        if type(data) is bytes:
            if len(data) < self._small:
                output.append(_BINARY_HEADS[len(data)] + data)
                return
            self._payload_into(FIN | OP_BINARY, data, output)
            return
        assert not isinstance(data, str)  # (for mypy: type() above does not narrow)
        self._payload_into(FIN | OP_BINARY, bytes(data), output)

    def _payload_into(self, first: int, payload: bytes, output: list[bytes]) -> None:
        deflate = self._deflate
        if deflate is not None and len(payload) >= deflate.min_size:
            # RFC 7692 §6: a sender may compress any message, or none; one below the minimum
            # goes out as it is, with RSV1 clear, and leaves the compressor's window as it was.
            payload = deflate.compress(payload)
            first |= RSV1
        n = len(payload)
        # _frame() and _header(), written out: a message over the small frame's size (and
        # every compressed one) comes this way, and a call costs more than the header.
        if n < 126:
            output.append(bytes((first, n)) + payload)
        elif n < _NO_COPY_SIZE:
            output.append(_pack_short(first, 126, n) + payload)
        else:
            output.append(_header(first, n))
            output.append(payload)

    def encode_ping(self, payload: bytes = b"") -> bytes:
        return _frame(FIN | OP_PING, _control_payload(payload, "ping"))

    def encode_pong(self, payload: bytes = b"") -> bytes:
        return _frame(FIN | OP_PONG, _control_payload(payload, "pong"))

    def encode_close(self, code: int | None, reason: str = "") -> bytes:
        """A Close frame; ``code`` None sends an empty payload (RFC 6455 §5.5.1).

        Raises ValueError for a code or reason that :func:`check_close` refuses.
        """
        if code is None:
            if reason:
                raise ValueError(f"a close reason needs a close code: {reason!r}")
            return bytes((FIN | OP_CLOSE, 0))
        return _frame(FIN | OP_CLOSE, check_close(code, reason))

    def encode_close_reply(self, code: int, reason: str) -> bytes:
        """The Close frame that echoes a peer's valid Close (RFC 6455 §5.5.1). Its code and
        reason were checked as the frame came: every code a peer may send may be sent back (see
        the decision in asgiws.events), and a reason that fitted in its frame fits in ours."""
        return _frame(FIN | OP_CLOSE, code.to_bytes(2, "big") + reason.encode())
