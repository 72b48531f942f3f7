"""From unmasked payload pieces to one message: the work behind :class:`asgiws.frames.FrameCodec`.

:class:`MessageAssembler` takes the pieces of one data message as they arrive (RFC 6455 §5.4
fragments, each possibly cut across reads), inflates them with a bounded output (RFC 7692),
decodes text with an incremental UTF-8 decoder so that a bad byte fails on the piece that
carries it (Autobahn 6.4.x), collects the pieces in a list and joins them once.

:class:`LargeFrameCollector` takes a large binary frame that arrives over several reads into
one buffer, taken from a :class:`BufferPool`, and unmasks it once at the end.

Neither knows about frame headers or close codes: they raise :class:`InvalidData` (the codec
fails the connection with 1007) and :class:`MessageTooBig` (1009). Nothing in this module
imports asyncio, reads a clock or keeps process-wide state.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Any, Final

from .deflate import DEFLATE_TAIL, INFLATE_ERRORS, Inflater
from .masking import Buffer, apply_mask

if TYPE_CHECKING:
    from .deflate import PerMessageDeflate

__all__ = [
    "DIRECT_MIN",
    "INFLATE_STEP",
    "BufferPool",
    "InvalidData",
    "LargeFrameCollector",
    "MessageAssembler",
    "MessageTooBig",
    "utf8_error",
]

# Inflated output is produced in steps of at most this many bytes, each counted against
# max_size before the next is made, so one small compressed chunk can never balloon in memory.
INFLATE_STEP: Final = 64 * 1024

_utf8_decoder: Final = codecs.getincrementaldecoder("utf-8")


class InvalidData(Exception):
    """The message is not what its opcode says: bad UTF-8 or bad compressed data (1007)."""


class MessageTooBig(Exception):
    """The message grew past ``max_size`` while it was inflated (1009); ``size`` so far."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def utf8_error(exc: UnicodeDecodeError, offset: int) -> str:
    """The reason for a text message whose byte ``offset`` is not UTF-8 (RFC 6455 §8.1)."""
    return f"invalid UTF-8 in text message at byte {offset}: {exc.reason}"


def _surrogate_pending(decoder: codecs.IncrementalDecoder) -> bool:
    """Whether the decoder holds the start of an encoded surrogate, ED A0..BF.

    CPython's incremental decoder rejects every other impossible prefix at once but keeps
    these two bytes waiting for a third. RFC 3629 §3 forbids surrogates, so no continuation
    can make them valid: report them now, so that a message fails on the chunk that carries
    the bad byte.
    """
    pending: bytes = decoder.getstate()[0]
    return len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0


class MessageAssembler:
    """The data message being received: its pieces, its size, its decoder and inflater."""

    __slots__ = ("_decoder", "_deflate", "_parts", "compressed", "max_size", "size", "text")

    def __init__(self, max_size: int, deflate: PerMessageDeflate | None) -> None:
        self.max_size = max_size
        self._deflate = deflate
        # Set by the codec from the message's first frame header.
        self.text = False
        self.compressed = False  # RFC 7692 §6: RSV1 on the message's first frame
        self.size = 0  # bytes collected so far, after decompression
        self._parts: list[Any] = []  # bytes for binary, str for text
        self._decoder: codecs.IncrementalDecoder | None = None

    def piece(self, piece: bytes, final: bool) -> None:
        """Take one unmasked payload piece; ``final`` ends the message (call :meth:`end`).

        Raises InvalidData or MessageTooBig: the caller fails the connection and calls
        :meth:`clear`.
        """
        if not self.compressed:
            # The size was checked against the frame header already.
            self.size += len(piece)
            self._collect(piece, final)
            return
        deflate = self._deflate
        assert deflate is not None  # the codec allows RSV1 only with deflate
        inflater = deflate.inflater()
        self._inflate(inflater, piece)
        if final:
            # RFC 7692 §7.2.2: append 00 00 ff ff to the payload before inflating its end.
            self._inflate(inflater, DEFLATE_TAIL)
        if final:
            deflate.end_inbound_message()
            self._collect(b"", True)

    def whole_compressed(self, payload: bytes) -> str | bytes:
        """A whole compressed message that came in one frame (``text`` set, nothing collected
        yet): :meth:`piece` with ``final`` and :meth:`end` in one, without a decoder object
        or a join when it inflates in one step, as a small message does.

        Raises InvalidData or MessageTooBig as :meth:`piece` does.
        """
        deflate = self._deflate
        assert deflate is not None  # the codec allows RSV1 only with deflate
        inflater = deflate.inflater()
        max_size = self.max_size
        step = INFLATE_STEP if max_size >= INFLATE_STEP else max_size + 1
        data = payload + DEFLATE_TAIL  # RFC 7692 §7.2.2, as in piece()
        try:
            out = inflater.decompress(data, step)
        except INFLATE_ERRORS as exc:
            raise InvalidData(f"invalid compressed data: {exc}") from None
        if len(out) >= step:
            # More than one step's worth (or past the limit): the general, bounded way.
            self.size = len(out)
            if self.size > max_size:
                raise MessageTooBig(self.size)
            self._collect(out, False)
            self._inflate(inflater, inflater.unconsumed_tail)
            deflate.end_inbound_message()
            self._collect(b"", True)
            return self.end()
        # Output short of the step: zlib took all of the input.
        deflate.end_inbound_message()
        if not self.text:
            return out
        try:
            return out.decode()
        except UnicodeDecodeError as exc:
            raise InvalidData(utf8_error(exc, exc.start)) from None

    def _inflate(self, inflater: Inflater, data: bytes) -> None:
        """Inflate ``data`` into the message, bounded (see INFLATE_STEP and ``max_size``)."""
        try:
            while True:
                # Bounded inflate: never more than INFLATE_STEP bytes, nor one byte past the
                # limit, per call; the rest of the input waits in unconsumed_tail.
                budget = self.max_size - self.size
                step = INFLATE_STEP if budget >= INFLATE_STEP else budget + 1
                out = inflater.decompress(data, step)
                self.size += len(out)
                if self.size > self.max_size:
                    raise MessageTooBig(self.size)
                if out:
                    self._collect(out, False)
                if len(out) < step:
                    break
                # A full step may have left input in unconsumed_tail, or output in zlib's own
                # state: go round until a step falls short.
                data = inflater.unconsumed_tail
        except INFLATE_ERRORS as exc:
            raise InvalidData(f"invalid compressed data: {exc}") from None

    def _collect(self, data: bytes, final: bool) -> None:
        """Keep a piece of the message; decode text incrementally to fail on the first bad byte."""
        if not self.text:
            if data:
                self._parts.append(data)
            return
        decoder = self._decoder
        if decoder is None:
            if final and not self._parts:
                # The whole text message in one piece: one plain decode, no decoder object.
                try:
                    self._parts.append(data.decode())
                except UnicodeDecodeError as exc:
                    offset = self.size - len(exc.object) + exc.start
                    raise InvalidData(utf8_error(exc, offset)) from None
                return
            decoder = self._decoder = _utf8_decoder()
        try:
            text = decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            offset = self.size - len(exc.object) + exc.start
            raise InvalidData(utf8_error(exc, offset)) from None
        if not final and _surrogate_pending(decoder):
            raise InvalidData(
                f"invalid UTF-8 in text message at byte {self.size - 2}: "
                "encoded surrogate (ED A0..BF)"
            )
        if text:
            self._parts.append(text)

    def end(self) -> str | bytes:
        """The whole message, after a final :meth:`piece`; the assembler is then empty."""
        parts = self._parts
        data: str | bytes
        if self.text:
            data = parts[0] if len(parts) == 1 else "".join(parts)
        else:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.clear()
        return data

    def clear(self) -> None:
        """Drop whatever was collected: nothing is kept between messages."""
        self._parts = []
        self._decoder = None
        self.size = 0
        self.compressed = False


class BufferPool:
    """Payload buffers of large frames, kept for the next large frame.

    A fresh buffer for every large message costs more than the message's unmasking: the
    allocator zero-fills it and, for a megabyte, often maps new pages, each a page fault. At
    most ``count`` buffers of at most ``largest`` bytes each are kept. Whoever owns the pool
    decides how far it is shared: a codec makes its own (one buffer) unless it is given one,
    and a server may give all its connections one pool.
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


# A binary frame at least this large, arriving over several reads, is collected in one buffer.
DIRECT_MIN: Final = 64 * 1024
# The pool a codec makes for itself: one buffer, so that a connection's large messages after
# the first reuse it; 4 MiB at most, so that a rare huge one does not stay behind.
OWN_POOL_COUNT: Final = 1
# A server's pool, shared by its connections: up to 16 MiB kept, so that four frames of up to
# 4 MiB arriving at once each find a buffer.
SHARED_POOL_COUNT: Final = 4
POOL_LARGEST: Final = 4 * 1024 * 1024


class LargeFrameCollector:
    """One large binary frame's payload, collected still masked into one pooled buffer and
    unmasked once, into the message, at the end: no piece-by-piece unmasking, no join, no
    fresh zero-filled megabytes."""

    __slots__ = ("_buffer", "_end", "_mask", "_pos", "pool")

    def __init__(self, pool: BufferPool) -> None:
        self.pool = pool
        self._buffer = bytearray()
        self._pos = 0
        self._end = 0  # the payload's length (the buffer may be longer)
        self._mask = b""

    def start(self, length: int, mask: bytes, first: Buffer) -> None:
        """Begin a payload of ``length`` bytes with ``first``, its first bytes (fewer)."""
        buffer = self._buffer = self.pool.take(length)
        taken = len(first)
        buffer[:taken] = first
        self._pos = taken
        self._end = length
        self._mask = mask

    def feed(self, data: Buffer) -> int:
        """Copy in what ``data`` holds of the payload; return how many bytes were taken."""
        pos = self._pos
        take = min(self._end - pos, len(data))
        self._buffer[pos : pos + take] = data[:take]
        self._pos = pos + take
        return take

    def target(self) -> memoryview:
        """The part of the buffer still missing, to read into directly."""
        return memoryview(self._buffer)[self._pos : self._end]

    def advance(self, nbytes: int) -> bool:
        """``nbytes`` were written at the start of the view :meth:`target` returned; return
        whether the payload is complete."""
        end = self._end
        pos = self._pos = min(self._pos + nbytes, end)
        return pos >= end

    @property
    def complete(self) -> bool:
        return self._pos >= self._end

    def finish(self) -> bytes:
        """The unmasked payload (RFC 6455 §5.3); the buffer goes back to the pool."""
        buffer = self._buffer
        with memoryview(buffer) as view:
            payload = apply_mask(view[: self._end], self._mask)
        self.abandon()
        return payload

    def abandon(self) -> None:
        """Give the buffer back without a message (the connection failed)."""
        buffer = self._buffer
        self._buffer = bytearray()
        self._pos = self._end = 0
        if buffer:
            self.pool.give(buffer)
