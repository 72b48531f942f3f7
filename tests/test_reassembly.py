"""asgiws.reassembly: payload pieces in, one message out; large frames in one pooled buffer."""

from __future__ import annotations

import zlib

import pytest

from asgiws.deflate import PerMessageDeflate
from asgiws.masking import apply_mask_python
from asgiws.reassembly import (
    INFLATE_STEP,
    BufferPool,
    InvalidData,
    LargeFrameCollector,
    MessageAssembler,
    MessageTooBig,
)

MASK = bytes.fromhex("37fa213d")  # the masking key of RFC 6455 §5.7


def text_assembler(max_size: int = 1 << 20) -> MessageAssembler:
    assembler = MessageAssembler(max_size, None)
    assembler.text = True
    return assembler


def test_binary_pieces_are_joined_once_into_bytes() -> None:
    assembler = MessageAssembler(100, None)
    assembler.piece(b"ab", False)
    assembler.piece(b"", False)
    assembler.piece(b"cd", True)
    assert assembler.size == 4
    assert assembler.end() == b"abcd"
    assert assembler.size == 0  # nothing kept for the next message


def test_one_piece_is_returned_as_it_is() -> None:
    assembler = MessageAssembler(100, None)
    piece = b"whole"
    assembler.piece(piece, True)
    assert assembler.end() is piece


def test_text_split_inside_a_character_is_decoded_across_pieces() -> None:
    assembler = text_assembler()
    encoded = "κόσμε".encode()  # 11 bytes, cut inside the second character
    assembler.piece(encoded[:3], False)
    assembler.piece(encoded[3:], True)
    assert assembler.end() == "κόσμε"


@pytest.mark.parametrize(
    ("pieces", "final", "reason"),
    [
        ([b"ok", b"\xff"], False, "invalid UTF-8 in text message at byte 2: invalid start byte"),
        # An encoded surrogate fails on the piece that carries it, not at the message's end.
        (
            [b"ab", b"c\xed\xa0"],
            False,
            "invalid UTF-8 in text message at byte 3: encoded surrogate (ED A0..BF)",
        ),
        ([b"ok", b"\xc3"], True, "invalid UTF-8 in text message at byte 2: unexpected end of data"),
    ],
)
def test_invalid_utf8_fails_on_the_piece_that_carries_it(
    pieces: list[bytes], final: bool, reason: str
) -> None:
    assembler = text_assembler()
    assembler.piece(pieces[0], False)
    with pytest.raises(InvalidData) as info:
        assembler.piece(pieces[1], final)
    assert str(info.value) == reason


def test_invalid_utf8_in_a_single_whole_piece() -> None:
    assembler = text_assembler()
    with pytest.raises(InvalidData, match=r"^invalid UTF-8 in text message at byte 1: "):
        assembler.piece(b"a\x80", True)


def test_clear_drops_the_pieces_and_the_decoder() -> None:
    assembler = text_assembler()
    assembler.piece(b"abc\xc3", False)
    assembler.clear()
    assembler.text = True
    assembler.piece(b"new", True)  # no pending \xc3 to join with
    assert assembler.end() == "new"


def compressed(data: bytes) -> bytes:
    stream = zlib.compressobj(wbits=-15)
    out = stream.compress(data) + stream.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]  # RFC 7692 §7.2.1: the sender removes the tail


def test_compressed_message_is_inflated_in_pieces() -> None:
    assembler = MessageAssembler(1 << 20, PerMessageDeflate())
    assembler.text = True
    assembler.compressed = True
    wire = compressed(b"Hello, world! " * 100)
    assembler.piece(wire[:5], False)
    assembler.piece(wire[5:], True)
    assert assembler.end() == "Hello, world! " * 100


def test_inflate_stops_one_byte_past_the_limit() -> None:
    limit = 3 * INFLATE_STEP + 10
    assembler = MessageAssembler(limit, PerMessageDeflate())
    assembler.compressed = True
    with pytest.raises(MessageTooBig) as info:
        assembler.piece(compressed(bytes(10 * INFLATE_STEP)), True)
    assert info.value.size == limit + 1  # never more than one byte past the limit is made


def test_bad_compressed_data_is_invalid_data() -> None:
    assembler = MessageAssembler(100, PerMessageDeflate())
    assembler.compressed = True
    with pytest.raises(InvalidData, match=r"^invalid compressed data: "):
        assembler.piece(b"\xff\xff\xff\xff", True)


def test_pool_gives_back_a_large_enough_buffer_and_keeps_at_most_count() -> None:
    pool = BufferPool(count=2, largest=100)
    small, large, huge = bytearray(10), bytearray(100), bytearray(101)
    pool.give(small)
    pool.give(huge)  # over largest: not kept
    pool.give(large)
    pool.give(bytearray(50))  # the pool is full
    assert pool.buffers == [small, large]
    assert pool.take(20) is large
    assert pool.take(20) is not small  # too small: a new buffer
    assert pool.buffers == [small]


def test_collector_unmasks_once_and_returns_its_buffer() -> None:
    pool = BufferPool(count=1, largest=1 << 20)
    collector = LargeFrameCollector(pool)
    payload = bytes(range(256)) * 300
    wire = apply_mask_python(payload, MASK)
    collector.start(len(payload), MASK, wire[:1000])
    assert collector.feed(wire[1000:5000]) == 4000
    target = collector.target()
    assert len(target) == len(payload) - 5000
    target[:1000] = wire[5000:6000]
    assert not collector.advance(1000)
    assert not collector.complete
    assert collector.feed(wire[6000:] + b"next frame") == len(payload) - 6000
    assert collector.complete
    assert collector.finish() == payload
    (buffer,) = pool.buffers
    # The next frame reuses that buffer; the first message is unaffected by it.
    collector.start(10, MASK, apply_mask_python(b"0123456789", MASK))
    assert pool.buffers == []
    assert collector.finish() == b"0123456789"
    assert pool.buffers == [buffer]


def test_abandoned_collection_gives_the_buffer_back() -> None:
    pool = BufferPool(count=1, largest=1 << 20)
    collector = LargeFrameCollector(pool)
    collector.start(100_000, MASK, b"x" * 10)
    collector.abandon()
    assert len(pool.buffers) == 1 and len(pool.buffers[0]) >= 100_000
