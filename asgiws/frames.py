"""Sans-IO WebSocket frame codec for the server side of RFC 6455 (and RFC 7692 compression).

INTERFACE CONTRACT (protocol.py codes against exactly this; keep it):

    codec = FrameCodec(max_size=16 * 1024 * 1024, deflate=None | PerMessageDeflate)
    events = codec.receive_data(data)   # -> list[Event], in wire order
    codec.encode_message(data)          # str -> text frame, bytes -> binary frame; -> bytes
    codec.encode_ping(payload)          # -> bytes
    codec.encode_pong(payload)          # -> bytes
    codec.encode_close(code, reason)    # code None -> empty close payload; -> bytes

Events:
    Message(data: str | bytes)   a complete, reassembled, validated, decompressed message
    Ping(payload: bytes)         the caller answers with encode_pong(payload)
    Pong(payload: bytes)
    CloseReceived(code, reason)  the peer's Close; code 1005 when the frame had no payload.
                                 Parsing stops after it: later bytes are ignored.
    ProtocolFailure(code, reason) the peer broke the protocol (1002), sent invalid UTF-8 (1007)
                                 or too big a message (1009). Parsing stops after it. Everything
                                 that was complete before the bad frame is returned ahead of it.

Nothing in this module imports asyncio or reads a clock.

How bytes flow
--------------
Only frame headers and control frames (at most 14 + 125 bytes) are ever buffered here. The
payload of a data frame is streamed: each piece is unmasked as it arrives (the mask phase is
carried across pieces), inflated with a bounded output, counted against ``max_size`` and, for
text, fed to an incremental UTF-8 decoder, so a bad byte fails the connection on the chunk that
carries it (Autobahn 6.4.x) and a too-big message fails as soon as its header announces it.
Message pieces are collected in a list and joined once.

The common case, one whole small masked frame per read, takes a short path in
``receive_data`` that skips the state machine.
"""

from __future__ import annotations

import codecs
import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final

if TYPE_CHECKING:
    from .deflate import PerMessageDeflate

__all__ = [
    "CloseReceived",
    "Event",
    "FrameCodec",
    "Message",
    "Ping",
    "Pong",
    "ProtocolFailure",
    "apply_mask_python",
    "is_valid_close_code",
]


class BufferPool:
    """Payload buffers of large frames, kept for the next large frame.

    A fresh buffer for every large message costs more than the message's unmasking: the
    allocator zero-fills it and, for a megabyte, often maps new pages, each a page fault. At
    most ``count`` buffers of at most ``largest`` bytes each are kept, for the whole process.
    """

    __slots__ = ("buffers", "count", "largest")

    def __init__(self, count: int, largest: int) -> None:
        self.count = count
        self.largest = largest
        self.buffers: list[bytearray] = []

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes (its contents are whatever they were)."""
        buffers = self.buffers
        for i, buffer in enumerate(buffers):
            if len(buffer) >= size:
                return buffers.pop(i)
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Take back a buffer no longer in use, if there is room for it."""
        if len(buffer) <= self.largest and len(self.buffers) < self.count:
            self.buffers.append(buffer)


# Up to 16 MiB kept: four frames of up to 4 MiB arriving at once find a buffer.
_POOL = BufferPool(count=4, largest=4 * 1024 * 1024)


# -- events ----------------------------------------------------------------------------------


class _Event:
    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Event)
            and type(other) is type(self)
            and (self._values() == other._values())
        )

    def __hash__(self) -> int:
        return hash((type(self), *self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"


class Message(_Event):
    """A complete message: ``str`` for a text message, ``bytes`` for a binary one."""

    __slots__ = ("data",)
    _fields = ("data",)

    def __init__(self, data: str | bytes) -> None:
        self.data = data


class Ping(_Event):
    __slots__ = ("payload",)
    _fields = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Pong(_Event):
    __slots__ = ("payload",)
    _fields = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class CloseReceived(_Event):
    """The peer's Close frame. ``code`` is 1005 when the frame had no payload (RFC 6455 §7.1.5)."""

    __slots__ = ("code", "reason")
    _fields = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class ProtocolFailure(_Event):
    """The peer broke the protocol; ``code`` is the close code to fail the connection with."""

    __slots__ = ("code", "reason")
    _fields = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


Event = Message | Ping | Pong | CloseReceived | ProtocolFailure

# -- constants -------------------------------------------------------------------------------

# RFC 6455 §5.2 opcodes.
OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

FIN: Final = 0x80
RSV1: Final = 0x40
RSV2: Final = 0x20
RSV3: Final = 0x10
MASK_BIT: Final = 0x80
# A binary frame at least this large, arriving over several reads, is collected in one buffer.
DIRECT_MIN: Final = 64 * 1024

PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009

# RFC 6455 §5.5: all control frames MUST have a payload length of 125 bytes or less.
MAX_CONTROL_PAYLOAD: Final = 125

# RFC 7692 §7.2.1/§7.2.2: the sender strips this empty-stored-block tail from each compressed
# message; the receiver appends it again before inflating the end of the message.
DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"

# Inflated output is produced in steps of at most this many bytes, each counted against
# max_size before the next is made, so one small compressed chunk can never balloon in memory.
INFLATE_STEP: Final = 64 * 1024

# RFC 6455 §7.4.1 defines 1000-1003 and 1007-1011 for use in a Close frame; 1004 is reserved and
# 1005, 1006 and 1015 MUST NOT be sent in one. §7.4.2: 0-999 are unused, 1000-2999 are reserved
# for the RFC and its registered extensions, 3000-4999 are for libraries, frameworks and
# applications. Autobahn|Testsuite 25.10.1 expects a clean close for 1000-1003, 1007-1011 and
# 3000-4999 (cases 7.7.*) and a protocol error for 0, 999, 1004, 1005, 1006, 1016, 1100, 2000
# and 2999 (cases 7.9.*); it tests neither 1012-1014 nor 1015.
# Decision: 1012 (Service Restart), 1013 (Try Again Later) and 1014 (Bad Gateway) are valid.
# They are registered in the IANA "WebSocket Close Code Number Registry" under §7.4.2's
# "registered extensions" rule, browsers send and accept them, and this server itself sends
# 1012 on a restart (Config.ws_shutdown_code), so refusing them from a peer would be
# inconsistent. 1015 stays invalid (§7.4.1 forbids it on the wire), and so does the rest of
# 1016-2999, which nothing has registered. Codes of 5000 and up are undefined: invalid.
_VALID_RFC_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
# RFC 6455 §7.4.1: these MUST NOT be set as a status code in a Close frame by an endpoint.
_UNSENDABLE_CLOSE_CODES: Final = frozenset({1005, 1006, 1015})


def is_valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a Close frame (see the decision above)."""
    return code in _VALID_RFC_CLOSE_CODES or 3000 <= code <= 4999


# -- masking ---------------------------------------------------------------------------------

_xor_tables: dict[int, bytes] = {}


def _xor_table(key: int) -> bytes:
    table = _xor_tables.get(key)
    if table is None:
        table = _xor_tables[key] = bytes(b ^ key for b in range(256))
    return table


Buffer = bytes | bytearray | memoryview


def apply_mask_python(data: Buffer, mask: Buffer) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3), in pure Python.

    Small payloads go through one big-integer XOR; large ones through ``bytes.translate`` on
    every fourth byte, which runs at C speed per byte (about 1 ms per MiB, three times the
    integer route).
    """
    n = len(data)
    mask = bytes(mask)  # it may be a memoryview of the frame
    if n < 2048:
        if not n:
            return b""
        key = (mask * ((n >> 2) + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(
            n, "little"
        )
    out = bytearray(data)
    for phase in range(4):
        out[phase::4] = out[phase::4].translate(_xor_table(mask[phase]))
    return bytes(out)


MaskFunction = Callable[[Buffer, Buffer], bytes]

try:  # The compiled routine of the websockets package, when it is installed with its speedups.
    from websockets.speedups import apply_mask as _compiled_apply_mask
except ImportError:  # pragma: no cover - depends on the environment
    _apply_mask: MaskFunction = apply_mask_python
else:
    # Typed for bytes masks, it takes any buffer (a memoryview of the frame, here).
    _apply_mask = _compiled_apply_mask  # type: ignore[assignment]

# -- helpers ---------------------------------------------------------------------------------

_pack_short: Final = struct.Struct("!BBH").pack
_pack_long: Final = struct.Struct("!BBQ").pack
_unpack_short: Final = struct.Struct("!H").unpack_from
_unpack_long: Final = struct.Struct("!Q").unpack_from
_utf8_decoder: Final = codecs.getincrementaldecoder("utf-8")


# From this payload size on, a frame's header and payload are written as two buffers instead of
# being copied into one: below it, the copy is cheaper than a second buffer.
_NO_COPY_SIZE = 64 * 1024


def _frame(first: int, payload: bytes) -> bytes:
    """A server frame: unmasked (RFC 6455 §5.1), with the shortest length encoding (§5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    return _header(first, n) + payload


# The two-byte headers of unfragmented, uncompressed text and binary frames up to 125 bytes.
_TEXT_HEADS: Final = tuple(bytes((FIN | OP_TEXT, n)) for n in range(126))
_BINARY_HEADS: Final = tuple(bytes((FIN | OP_BINARY, n)) for n in range(126))


def _header(first: int, n: int) -> bytes:
    if n < 126:
        return bytes((first, n))
    if n < 0x10000:
        return _pack_short(first, 126, n)
    return _pack_long(first, 127, n)


def _surrogate_pending(decoder: codecs.IncrementalDecoder) -> bool:
    """Whether the decoder holds the start of an encoded surrogate, ED A0..BF.

    CPython's incremental decoder rejects every other impossible prefix at once but keeps
    these two bytes waiting for a third. RFC 3629 §3 forbids surrogates, so no continuation
    can make them valid: report them now, so that a message fails on the chunk that carries
    the bad byte.
    """
    pending: bytes = decoder.getstate()[0]
    return len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0


def _bad_utf8(exc: UnicodeDecodeError, offset: int) -> ProtocolFailure:
    # RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection (1007, §7.4.1).
    return ProtocolFailure(
        INVALID_DATA, f"invalid UTF-8 in text message at byte {offset}: {exc.reason}"
    )


_CONTROL_LIKE = 0x8  # opcodes 0x8-0xF are control frames (RFC 6455 §5.5)


class FrameCodec:
    """The server side of the RFC 6455 framing layer, sans I/O."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_decoder",
        "_deflate",
        "_direct",
        "_direct_end",
        "_direct_mask",
        "_direct_pos",
        "_frame_fin",
        "_frame_mask",
        "_frame_remaining",
        "_in_frame",
        "_message_compressed",
        "_message_opcode",
        "_message_size",
        "_parts",
        "max_size",
    )

    def __init__(
        self, max_size: int = 16 * 1024 * 1024, deflate: PerMessageDeflate | None = None
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1 byte, not {max_size}")
        self.max_size = max_size
        self._deflate = deflate
        # Bytes of an incomplete frame header or control frame; never a data payload.
        self._buffer = b""
        self._closed = False
        # The data frame whose payload is being streamed.
        self._in_frame = False
        self._frame_fin = False
        self._frame_remaining = 0
        self._frame_mask = b""  # rotated so that it applies from the next payload byte on
        # The message being reassembled: opcode 0 when none is open.
        self._message_opcode = 0
        self._message_compressed = False
        self._message_size = 0  # bytes collected so far, after decompression
        self._parts: list[Any] = []  # bytes for binary, str for text
        self._decoder: codecs.IncrementalDecoder | None = None
        # A large binary frame's payload being collected, still masked (see _receive_direct).
        self._direct: bytearray | None = None
        self._direct_pos = 0
        self._direct_end = 0  # the payload's length (the buffer may be longer)
        self._direct_mask = b""

    # -- receiving -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Parse bytes from the peer; return the events they complete, in wire order.

        ``data`` may be a view of a buffer that is reused once this returns: nothing here keeps
        a reference to it (every piece kept is a copy, or the unmasked output, a new object).
        """
        payload = self.receive_one(data)
        if payload is not None:
            return [Message(payload)]
        return self.receive_declined(data)

    def receive_declined(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """:meth:`receive_data` for bytes that :meth:`receive_one` just returned None for,
        without trying that again."""
        if self._closed:
            return []
        if self._direct is not None:
            return self._receive_direct(data)
        return self._receive(data)

    def receive_one(self, data: bytes | bytearray | memoryview) -> str | bytes | None:
        """The common case, without events: when nothing is pending and ``data`` is exactly one
        whole masked FIN text or binary frame, no RSV bit, a 7-bit length and (for text) valid
        UTF-8, the message's payload. Otherwise None, and nothing is consumed: pass the same
        bytes to :meth:`receive_declined`."""
        if self._buffer or self._in_frame or self._message_opcode or self._direct is not None:
            return None
        n = len(data)
        if n < 6 or self._closed:
            return None
        first = data[0]
        length = data[1] - MASK_BIT  # negative when unmasked; 126 and 127 announce a longer field
        if n - 6 != length or length > 125 or length > self.max_size:
            return None
        if first == 0x82:
            return _apply_mask(data[6:], data[2:6])
        if first == 0x81:
            try:
                return _apply_mask(data[6:], data[2:6]).decode()
            except UnicodeDecodeError:
                return None  # the state machine reports it with its reason
        return None

    def _receive(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        # bytes(data) is data itself when it is bytes already.
        buf = self._buffer + data if self._buffer else bytes(data)
        apply_mask = _apply_mask
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
                failure = self._message_piece(piece, last and self._frame_fin)
                if failure is not None:
                    return self._fail(events, failure)
                if last and self._frame_fin:
                    events.append(self._message_end())
                continue

            available = end - pos
            if available < 2:
                break
            first = buf[pos]
            second = buf[pos + 1]
            opcode = first & 0x0F
            # A masked FIN text or binary frame outside a fragmented message passes every check.
            if not ((first == 0x81 or first == 0x82) and second & MASK_BIT) or (
                self._message_opcode
            ):
                failure = self._check_header(first, second)
                if failure is not None:
                    return self._fail(events, failure)
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
                event = self._control(opcode, payload)
                events.append(event)
                if type(event) is CloseReceived or type(event) is ProtocolFailure:
                    self._closed = True
                    self._buffer = b""
                    return events
                continue

            # A data frame: start (or continue) the message, then stream its payload.
            if opcode != OP_CONTINUATION:
                self._message_compressed = bool(first & RSV1)
            if not self._message_compressed and self._message_size + length > self.max_size:
                return self._fail(
                    events, self._too_big(self._message_size + length, "announced by a header")
                )
            if opcode != OP_CONTINUATION:
                if (
                    opcode == OP_BINARY
                    and first & FIN
                    and length >= DIRECT_MIN
                    and available < header + length
                    and not self._message_compressed
                ):
                    # A large binary message in one frame, not all here yet: its payload is
                    # collected in one pooled buffer and unmasked once, into the message, at the
                    # end (no piece-by-piece unmasking, no join, no fresh zero-filled megabytes).
                    start = pos + header
                    direct = _POOL.take(length)
                    direct[: end - start] = memoryview(buf)[start:end]
                    self._direct = direct
                    self._direct_pos = end - start
                    self._direct_end = length
                    self._direct_mask = bytes(mask)
                    self._buffer = b""
                    return events
                if first & FIN and not self._message_compressed and available >= header + length:
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
                        return self._fail(events, _bad_utf8(exc, exc.start))
                    continue
                self._message_opcode = opcode
            pos += header
            self._in_frame = True
            self._frame_fin = bool(first & FIN)
            self._frame_remaining = length
            self._frame_mask = mask

        self._buffer = buf[pos:] if pos < end else b""
        return events

    @property
    def collecting(self) -> bool:
        """True while a large binary frame's payload is being collected in one buffer: the
        I/O layer may then read into :meth:`read_target` instead of calling receive_data."""
        return self._direct is not None

    def read_target(self) -> memoryview | None:
        """The part of the collecting buffer still missing (see :attr:`collecting`), to read
        into directly; report what was written with :meth:`received_into`."""
        direct = self._direct
        if direct is None:
            return None
        return memoryview(direct)[self._direct_pos : self._direct_end]

    def received_into(self, nbytes: int) -> list[Event]:
        """``nbytes`` were written at the start of the view :meth:`read_target` returned."""
        direct = self._direct
        if direct is None:
            raise RuntimeError("received_into() without a read_target()")
        self._direct_pos = min(self._direct_pos + nbytes, self._direct_end)
        if self._direct_pos < self._direct_end:
            return []
        return [self._direct_message(direct)]

    def _receive_direct(self, data: bytes | bytearray | memoryview) -> list[Event]:
        direct = self._direct
        assert direct is not None
        pos = self._direct_pos
        take = min(self._direct_end - pos, len(data))
        direct[pos : pos + take] = data[:take]
        self._direct_pos = pos + take
        if self._direct_pos < self._direct_end:
            return []
        events: list[Event] = [self._direct_message(direct)]
        if take < len(data):
            events.extend(self.receive_data(data[take:]))
        return events

    def _direct_message(self, direct: bytearray) -> Message:
        with memoryview(direct) as view:
            payload = _apply_mask(view[: self._direct_end], self._direct_mask)
        self._direct = None
        self._direct_pos = self._direct_end = 0
        _POOL.give(direct)
        return Message(payload)

    def _check_header(self, first: int, second: int) -> ProtocolFailure | None:
        """The checks that the first two bytes of a frame allow (RFC 6455 §5.2, §5.4, §5.5)."""
        opcode = first & 0x0F
        # RFC 6455 §5.3: the client MUST mask all frames it sends to the server.
        if not second & MASK_BIT:
            return ProtocolFailure(
                PROTOCOL_ERROR, f"unmasked frame from the client (opcode {opcode:#x})"
            )
        # RFC 6455 §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved.
        if 0x3 <= opcode <= 0x7 or opcode >= 0xB:
            return ProtocolFailure(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        # RFC 6455 §5.2: RSV1-3 MUST be 0 unless an extension gives them a meaning. RFC 7692
        # §6: permessage-deflate gives RSV1 one, on the first frame of a data message only.
        rsv = first & (RSV1 | RSV2 | RSV3)
        if rsv:
            if rsv != RSV1 or self._deflate is None:
                names = "+".join(
                    name
                    for bit, name in ((RSV1, "RSV1"), (RSV2, "RSV2"), (RSV3, "RSV3"))
                    if rsv & bit
                )
                return ProtocolFailure(
                    PROTOCOL_ERROR,
                    f"reserved bits set without an extension for them: {names} "
                    f"(opcode {opcode:#x})",
                )
            if opcode == OP_CONTINUATION or opcode >= _CONTROL_LIKE:
                return ProtocolFailure(
                    PROTOCOL_ERROR,
                    f"RSV1 set on a {'continuation' if opcode == 0 else 'control'} frame "
                    f"(opcode {opcode:#x}); permessage-deflate allows it on a message's "
                    "first frame only",
                )
        if opcode >= _CONTROL_LIKE:
            # RFC 6455 §5.5: control frames MUST NOT be fragmented ...
            if not first & FIN:
                return ProtocolFailure(
                    PROTOCOL_ERROR, f"fragmented control frame: FIN=0 on opcode {opcode:#x}"
                )
            # ... and MUST have a payload length of 125 bytes or less.
            if second & 0x7F > MAX_CONTROL_PAYLOAD:
                return ProtocolFailure(
                    PROTOCOL_ERROR,
                    f"control frame payload over {MAX_CONTROL_PAYLOAD} bytes (opcode {opcode:#x})",
                )
        # RFC 6455 §5.4: a fragmented message is a first frame, continuations, FIN; data frames
        # of different messages MUST NOT interleave.
        elif opcode == OP_CONTINUATION:
            if not self._message_opcode:
                return ProtocolFailure(
                    PROTOCOL_ERROR, "continuation frame without a message to continue"
                )
        elif self._message_opcode:
            kind = "text" if opcode == OP_TEXT else "binary"
            return ProtocolFailure(
                PROTOCOL_ERROR,
                f"new {kind} frame while a fragmented message is open; expected a continuation",
            )
        return None

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        # OP_CLOSE. RFC 6455 §5.5.1: an optional body of a 2-byte code then a UTF-8 reason.
        if not payload:
            return CloseReceived(1005, "")  # RFC 6455 §7.1.5: no status code -> 1005
        if len(payload) == 1:
            return ProtocolFailure(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        (code,) = _unpack_short(payload)
        if not is_valid_close_code(code):
            return ProtocolFailure(PROTOCOL_ERROR, f"invalid close code {code}")
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError as exc:
            return ProtocolFailure(INVALID_DATA, f"close reason is not valid UTF-8: {exc.reason}")
        return CloseReceived(code, reason)

    def _message_piece(self, piece: bytes, final: bool) -> ProtocolFailure | None:
        """Take one unmasked payload piece of the open message; ``final`` ends the message."""
        if not self._message_compressed:
            # The size was checked against the frame header already.
            self._message_size += len(piece)
            return self._collect(piece, final)
        deflate = self._deflate
        assert deflate is not None  # _check_header allows RSV1 only with deflate
        inflater = deflate.inflater()
        # RFC 7692 §7.2.2: append 00 00 ff ff to the payload before inflating the message's end.
        inputs = (piece, DEFLATE_TAIL) if final else (piece,)
        try:
            for data in inputs:
                while True:
                    # Bounded inflate: never more than INFLATE_STEP bytes, nor one byte past the
                    # limit, per call; the rest of the input waits in unconsumed_tail.
                    budget = self.max_size - self._message_size
                    step = INFLATE_STEP if budget >= INFLATE_STEP else budget + 1
                    out = inflater.decompress(data, step)
                    self._message_size += len(out)
                    if self._message_size > self.max_size:
                        return self._too_big(self._message_size, "after decompression")
                    if out:
                        failure = self._collect(out, False)
                        if failure is not None:
                            return failure
                    if len(out) < step:
                        break
                    # A full step may have left input in unconsumed_tail, or output in zlib's
                    # own state: go round until a step falls short.
                    data = inflater.unconsumed_tail
        except zlib.error as exc:
            return ProtocolFailure(INVALID_DATA, f"invalid compressed data: {exc}")
        if not final:
            return None
        deflate.end_inbound_message()
        return self._collect(b"", True)

    def _collect(self, data: bytes, final: bool) -> ProtocolFailure | None:
        """Keep a piece of the message; decode text incrementally to fail on the first bad byte."""
        if self._message_opcode == OP_BINARY:
            if data:
                self._parts.append(data)
            return None
        decoder = self._decoder
        if decoder is None:
            if final and not self._parts:
                # The whole text message in one piece: one plain decode, no decoder object.
                try:
                    self._parts.append(data.decode())
                except UnicodeDecodeError as exc:
                    return _bad_utf8(exc, self._message_size - len(exc.object) + exc.start)
                return None
            decoder = self._decoder = _utf8_decoder()
        try:
            text = decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            return _bad_utf8(exc, self._message_size - len(exc.object) + exc.start)
        if not final and _surrogate_pending(decoder):
            return ProtocolFailure(
                INVALID_DATA,
                f"invalid UTF-8 in text message at byte {self._message_size - 2}: "
                "encoded surrogate (ED A0..BF)",
            )
        if text:
            self._parts.append(text)
        return None

    def _message_end(self) -> Message:
        parts = self._parts
        data: str | bytes
        if self._message_opcode == OP_TEXT:
            data = parts[0] if len(parts) == 1 else "".join(parts)
        else:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._parts = []
        self._decoder = None
        self._message_opcode = 0
        self._message_size = 0
        self._message_compressed = False
        return Message(data)

    def _too_big(self, size: int, when: str) -> ProtocolFailure:
        return ProtocolFailure(
            MESSAGE_TOO_BIG,
            f"message too big: {size} bytes {when}, the limit is {self.max_size}",
        )

    def _fail(self, events: list[Event], failure: ProtocolFailure) -> list[Event]:
        events.append(failure)
        self._closed = True
        self._buffer = b""
        if self._direct is not None:
            _POOL.give(self._direct)
            self._direct = None
        self._parts = []
        self._decoder = None
        return events

    # -- sending ---------------------------------------------------------------------------------

    def encode_message(self, data: str | bytes) -> bytes:
        """One unfragmented frame: text for ``str``, binary for bytes-like data.

        With permessage-deflate negotiated, the payload is compressed and RSV1 set (RFC 7692 §6).
        """
        first, payload = self._message_payload(data)
        return _frame(first, payload)

    def encode_message_into(self, data: str | bytes, output: list[bytes]) -> None:
        """Like :meth:`encode_message`, appending to ``output``; a large payload is appended as
        it is, after its header, so that it is not copied (the I/O layer writes both at once)."""
        if self._deflate is None:
            # The common case: a small message, its two header bytes made in advance.
            if type(data) is str:
                payload = data.encode()
                if len(payload) < 126:
                    output.append(_TEXT_HEADS[len(payload)] + payload)
                    return
            elif type(data) is bytes and len(data) < 126:
                output.append(_BINARY_HEADS[len(data)] + data)
                return
        first, payload = self._message_payload(data)
        if len(payload) < _NO_COPY_SIZE:
            output.append(_frame(first, payload))
        else:
            output.append(_header(first, len(payload)))
            output.append(payload)

    def _message_payload(self, data: str | bytes) -> tuple[int, bytes]:
        if isinstance(data, str):
            first = FIN | OP_TEXT
            payload = data.encode()
        else:
            first = FIN | OP_BINARY
            payload = data if type(data) is bytes else bytes(data)
        if self._deflate is not None:
            payload = self._deflate.compress(payload)
            first |= RSV1
        return first, payload

    def encode_ping(self, payload: bytes = b"") -> bytes:
        return _frame(FIN | OP_PING, _control_payload(payload, "ping"))

    def encode_pong(self, payload: bytes = b"") -> bytes:
        return _frame(FIN | OP_PONG, _control_payload(payload, "pong"))

    def encode_close(self, code: int | None, reason: str = "") -> bytes:
        """A Close frame; ``code`` None sends an empty payload (RFC 6455 §5.5.1).

        Raises ValueError for a code that may not be sent (outside 1000-4999, or 1005, 1006,
        1015: RFC 6455 §7.4), and for a reason over 123 bytes of UTF-8.
        """
        if code is None:
            if reason:
                raise ValueError(f"a close reason needs a close code: {reason!r}")
            return bytes((FIN | OP_CLOSE, 0))
        if not 1000 <= code <= 4999 or code in _UNSENDABLE_CLOSE_CODES:
            raise ValueError(f"close code {code} may not be sent in a Close frame")
        encoded = reason.encode()
        if len(encoded) > MAX_CONTROL_PAYLOAD - 2:
            raise ValueError(
                f"close reason is {len(encoded)} bytes of UTF-8; the limit is "
                f"{MAX_CONTROL_PAYLOAD - 2}"
            )
        return _frame(FIN | OP_CLOSE, code.to_bytes(2, "big") + encoded)


def _control_payload(payload: bytes, kind: str) -> bytes:
    payload = bytes(payload)
    # RFC 6455 §5.5: control frame payloads are 125 bytes or less.
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError(f"{kind} payload is {len(payload)} bytes; the limit is 125")
    return payload
