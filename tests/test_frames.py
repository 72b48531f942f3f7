"""asgiws.frames: exact bytes in, events out; events in, exact bytes out."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import cast

import pytest

from asgiws import frames
from asgiws.deflate import negotiate
from asgiws.frames import (
    BufferPool,
    CloseReceived,
    FrameCodec,
    Message,
    Ping,
    Pong,
    ProtocolFailure,
    apply_mask_python,
    is_valid_close_code,
)

MASK = bytes.fromhex("37fa213d")  # the masking key of RFC 6455 §5.7


def masked(first: int, payload: bytes, mask: bytes = MASK, *, length_bytes: int = 0) -> bytes:
    """A client frame: ``first`` is FIN/RSV/opcode; the length is minimal unless asked."""
    n = len(payload)
    if length_bytes == 0:
        length_bytes = 0 if n < 126 else 2 if n < 0x10000 else 8
    if length_bytes == 0:
        header = bytes((first, 0x80 | n))
    elif length_bytes == 2:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + mask + apply_mask_python(payload, mask)


def feed_bytewise(codec: FrameCodec, data: bytes) -> list[object]:
    events: list[object] = []
    for i in range(len(data)):
        events += codec.receive_data(data[i : i + 1])
    return events


def failure(events: Sequence[object]) -> ProtocolFailure:
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, ProtocolFailure), events
    return last


# -- RFC 6455 §5.7 examples -------------------------------------------------------------------


def test_rfc_single_frame_unmasked_text_is_what_the_server_sends() -> None:
    assert FrameCodec().encode_message("Hello") == bytes.fromhex("810548656c6c6f")


def test_rfc_single_frame_masked_text_is_received() -> None:
    frame = bytes.fromhex("818537fa213d7f9f4d5158")
    assert masked(0x81, b"Hello") == frame
    assert FrameCodec().receive_data(frame) == [Message("Hello")]
    assert feed_bytewise(FrameCodec(), frame) == [Message("Hello")]


def test_rfc_unmasked_frame_from_a_client_fails_1002() -> None:
    # RFC 6455 §5.1: a server MUST close the connection on an unmasked frame.
    events = FrameCodec().receive_data(bytes.fromhex("810548656c6c6f"))
    assert events == [
        ProtocolFailure(1002, "unmasked frame from the client (opcode 0x1)"),
    ]


def test_rfc_fragmented_text_is_reassembled() -> None:
    # RFC 6455 §5.7: 0x01 0x03 "Hel", then 0x80 0x02 "lo", here masked as a client sends them.
    first = masked(0x01, b"Hel")
    second = masked(0x80, b"lo")
    assert first[:2] == b"\x01\x83" and second[:2] == b"\x80\x82"
    codec = FrameCodec()
    assert codec.receive_data(first) == []
    assert codec.receive_data(second) == [Message("Hello")]
    assert FrameCodec().receive_data(first + second) == [Message("Hello")]
    assert feed_bytewise(FrameCodec(), first + second) == [Message("Hello")]


def test_rfc_ping_and_pong() -> None:
    codec = FrameCodec()
    # RFC 6455 §5.7: unmasked Ping "Hello" is 0x89 0x05 ..., masked Pong is 0x8a 0x85 ...
    assert codec.encode_ping(b"Hello") == bytes.fromhex("890548656c6c6f")
    assert codec.encode_pong(b"Hello") == bytes.fromhex("8a0548656c6c6f")
    pong = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert masked(0x8A, b"Hello") == pong
    assert codec.receive_data(pong) == [Pong(b"Hello")]
    assert codec.receive_data(masked(0x89, b"Hello")) == [Ping(b"Hello")]
    assert codec.receive_data(masked(0x89, b"")) == [Ping(b"")]


def test_rfc_256_byte_binary_uses_a_16_bit_length() -> None:
    payload = bytes(range(256))
    sent = FrameCodec().encode_message(payload)
    assert sent[:4] == bytes.fromhex("827e0100") and sent[4:] == payload
    frame = masked(0x82, payload)
    assert frame[:4] == bytes.fromhex("82fe0100")
    assert FrameCodec().receive_data(frame) == [Message(payload)]


def test_rfc_64k_binary_uses_a_64_bit_length() -> None:
    payload = os.urandom(65536)
    sent = FrameCodec().encode_message(payload)
    assert sent[:10] == bytes.fromhex("827f0000000000010000") and sent[10:] == payload
    frame = masked(0x82, payload)
    assert frame[:10] == bytes.fromhex("82ff0000000000010000")
    assert FrameCodec().receive_data(frame) == [Message(payload)]


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, "8200"),
        (125, "827d"),
        (126, "827e007e"),
        (65535, "827effff"),
        (65536, "827f0000000000010000"),
    ],
)
def test_encode_uses_the_shortest_length(size: int, header: str) -> None:
    sent = FrameCodec().encode_message(bytes(size))
    assert sent == bytes.fromhex(header) + bytes(size)


def test_encode_text_and_bytes_like() -> None:
    codec = FrameCodec()
    assert codec.encode_message("é") == b"\x81\x02\xc3\xa9"
    assert codec.encode_message(bytearray(b"ab")) == b"\x82\x02ab"
    assert codec.encode_message(memoryview(b"ab")) == b"\x82\x02ab"


@pytest.mark.parametrize("length_bytes", [2, 8])
def test_non_minimal_length_encodings_are_accepted(length_bytes: int) -> None:
    # RFC 6455 §5.2 says the minimal number of bytes MUST be used, but Autobahn and browsers
    # do not fail a peer for it; being lenient here costs nothing.
    frame = masked(0x81, b"Hello", length_bytes=length_bytes)
    assert FrameCodec().receive_data(frame) == [Message("Hello")]


# -- control frames and close ----------------------------------------------------------------


def test_control_frames_between_fragments() -> None:
    stream = (
        masked(0x01, b"Hel")
        + masked(0x89, b"p1")
        + masked(0x00, b"l")
        + masked(0x8A, b"p2")
        + masked(0x80, b"o")
    )
    expected = [Ping(b"p1"), Pong(b"p2"), Message("Hello")]
    assert FrameCodec().receive_data(stream) == expected
    assert feed_bytewise(FrameCodec(), stream) == expected


def test_close_without_payload_is_1005() -> None:
    assert FrameCodec().receive_data(masked(0x88, b"")) == [CloseReceived(1005, "")]


def test_close_with_code_and_reason() -> None:
    frame = masked(0x88, b"\x03\xe8bye \xc3\xa9")
    assert FrameCodec().receive_data(frame) == [CloseReceived(1000, "bye é")]


def test_parsing_stops_after_close() -> None:
    codec = FrameCodec()
    stream = masked(0x81, b"a") + masked(0x88, b"\x03\xe8") + masked(0x81, b"b")
    assert codec.receive_data(stream) == [Message("a"), CloseReceived(1000, "")]
    assert codec.receive_data(masked(0x81, b"c")) == []
    assert codec.receive_data(b"\x00garbage") == []


@pytest.mark.parametrize(
    "code",
    # Autobahn 7.7.*, plus the IANA-registered 1012-1014 (see the decision in frames.py).
    [*range(1000, 1004), *range(1007, 1015), 3000, 3999, 4000, 4999],
)
def test_valid_close_codes(code: int) -> None:
    assert is_valid_close_code(code)
    frame = masked(0x88, code.to_bytes(2, "big") + b"ok")
    assert FrameCodec().receive_data(frame) == [CloseReceived(code, "ok")]


@pytest.mark.parametrize(
    "code",
    # Autobahn 7.9.*, plus 1015 (RFC 6455 §7.4.1: never on the wire), the rest of 1016-2999,
    # and the undefined 5000+ (Autobahn 7.13.*).
    [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535],
)
def test_invalid_close_codes_fail_1002(code: int) -> None:
    assert not is_valid_close_code(code)
    frame = masked(0x88, code.to_bytes(2, "big"))
    assert FrameCodec().receive_data(frame) == [ProtocolFailure(1002, f"invalid close code {code}")]


def test_close_with_one_byte_payload_fails_1002() -> None:
    assert FrameCodec().receive_data(masked(0x88, b"\x03")) == [
        ProtocolFailure(1002, "close frame with a 1-byte payload")
    ]


def test_close_reason_not_utf8_fails_1007() -> None:
    events = FrameCodec().receive_data(masked(0x88, b"\x03\xe8\xff"))
    assert failure(events).code == 1007
    assert failure(events).reason.startswith("close reason is not valid UTF-8")


# -- framing errors -------------------------------------------------------------------------


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_rsv_bits_without_extension_fail_1002(rsv: int) -> None:
    events = FrameCodec().receive_data(masked(0x81 | rsv, b"Hello"))
    assert failure(events).code == 1002
    assert failure(events).reason.startswith("reserved bits set without an extension for them")


def test_rsv_reason_names_the_bits() -> None:
    events = FrameCodec().receive_data(masked(0x81 | 0x20, b"x"))
    assert events == [
        ProtocolFailure(1002, "reserved bits set without an extension for them: RSV2 (opcode 0x1)")
    ]


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_fail_1002(opcode: int) -> None:
    events = FrameCodec().receive_data(masked(0x80 | opcode, b""))
    assert events == [ProtocolFailure(1002, f"reserved opcode {opcode:#x}")]


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_control_frame_over_125_bytes_fails_1002(opcode: int) -> None:
    codec = FrameCodec()
    frame = masked(0x80 | opcode, bytes(126))
    # Known from the first two bytes: the 125-byte rule is checked before any payload arrives.
    assert codec.receive_data(frame[:2]) == [
        ProtocolFailure(1002, f"control frame payload over 125 bytes (opcode {opcode:#x})")
    ]


def test_control_frame_of_exactly_125_bytes_is_fine() -> None:
    assert FrameCodec().receive_data(masked(0x89, bytes(125))) == [Ping(bytes(125))]


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_fragmented_control_frame_fails_1002(opcode: int) -> None:
    events = FrameCodec().receive_data(masked(opcode, b""))
    assert events == [
        ProtocolFailure(1002, f"fragmented control frame: FIN=0 on opcode {opcode:#x}")
    ]


def test_continuation_without_a_message_fails_1002() -> None:
    events = FrameCodec().receive_data(masked(0x80, b"x"))
    assert events == [ProtocolFailure(1002, "continuation frame without a message to continue")]


@pytest.mark.parametrize(("opcode", "kind"), [(0x1, "text"), (0x2, "binary")])
def test_new_data_frame_inside_a_fragmented_message_fails_1002(opcode: int, kind: str) -> None:
    events = FrameCodec().receive_data(masked(0x01, b"a") + masked(0x80 | opcode, b"b"))
    assert events == [
        ProtocolFailure(
            1002, f"new {kind} frame while a fragmented message is open; expected a continuation"
        )
    ]


def test_64_bit_length_with_top_bit_fails_1002() -> None:
    frame = b"\x82\xff" + (1 << 63 | 5).to_bytes(8, "big") + MASK
    events = FrameCodec().receive_data(frame)
    assert failure(events).code == 1002
    assert "64-bit payload length with the top bit set" in failure(events).reason


# -- strict ordering (Autobahn 3.2, 3.3, 4.1.3, 4.1.4, 4.2.3, 4.2.4, 5.15) ---------------------


@pytest.mark.parametrize(
    "bad",
    [
        masked(0x81 | 0x20, b"Hello, world!"),  # 3.2: RSV2
        masked(0x81 | 0x30, b"Hello, world!"),  # 3.3: RSV2+RSV3
        masked(0x85, b""),  # 4.1.3: opcode 5
        masked(0x86, b"Hello, world!"),  # 4.1.4: opcode 6 with payload
        masked(0x8B, b""),  # 4.2.3: opcode 11
        masked(0x8C, b"Hello, world!"),  # 4.2.4: opcode 12 with payload
    ],
)
def test_message_before_a_bad_frame_comes_first_and_nothing_after(bad: bytes) -> None:
    stream = masked(0x81, b"Hello, world!") + bad + masked(0x89, b"")
    for codec_events in (FrameCodec().receive_data(stream), feed_bytewise(FrameCodec(), stream)):
        assert codec_events[0] == Message("Hello, world!")
        assert len(codec_events) == 2
        assert failure(codec_events).code == 1002


def test_autobahn_5_15() -> None:
    stream = (
        masked(0x01, b"fragment1")
        + masked(0x80, b"fragment2")
        + masked(0x00, b"fragment3")
        + masked(0x81, b"fragment4")
    )
    assert FrameCodec().receive_data(stream) == [
        Message("fragment1fragment2"),
        ProtocolFailure(1002, "continuation frame without a message to continue"),
    ]


def test_failure_is_final() -> None:
    codec = FrameCodec()
    assert failure(codec.receive_data(masked(0x83, b""))).code == 1002
    assert codec.receive_data(masked(0x81, b"Hello")) == []
    assert codec.receive_data(masked(0x89, b"")) == []


# -- UTF-8 -----------------------------------------------------------------------------------

# Autobahn 6.4.1: "κόσμε" valid, then F4 90 80 80 (beyond U+10FFFF), then "edited".
PART1 = bytes.fromhex("cebae1bdb9cf83cebcceb5")
PART2 = bytes.fromhex("f4908080")
PART3 = b"edited"
PAYLOAD = PART1 + PART2 + PART3


def test_autobahn_6_4_1_fails_on_the_second_fragment() -> None:
    codec = FrameCodec()
    assert codec.receive_data(masked(0x01, PART1)) == []
    events = codec.receive_data(masked(0x00, PART2))
    assert failure(events).code == 1007
    assert "invalid UTF-8 in text message at byte 11" in failure(events).reason


def test_autobahn_6_4_2_fails_on_the_one_byte_fragment() -> None:
    codec = FrameCodec()
    assert codec.receive_data(masked(0x01, PAYLOAD[:12])) == []  # ends with F4: fine so far
    assert failure(codec.receive_data(masked(0x00, PAYLOAD[12:13]))).code == 1007


def test_autobahn_6_4_3_fails_within_one_frame_on_the_second_chunk() -> None:
    frame = masked(0x81, PAYLOAD)
    header = 6
    codec = FrameCodec()
    assert codec.receive_data(frame[: header + len(PART1)]) == []
    events = codec.receive_data(frame[header + len(PART1) : header + len(PART1) + len(PART2)])
    assert failure(events).code == 1007


def test_autobahn_6_4_4_fails_within_one_frame_on_the_bad_byte() -> None:
    frame = masked(0x81, PAYLOAD)
    codec = FrameCodec()
    assert codec.receive_data(frame[: 6 + 12]) == []
    assert failure(codec.receive_data(frame[6 + 12 : 6 + 13])).code == 1007


def test_encoded_surrogate_fails_at_its_second_byte() -> None:
    # ED A0 can only start a surrogate (U+D800..), which UTF-8 forbids (RFC 3629 §3). CPython's
    # incremental decoder waits for a third byte; the codec does not.
    frame = masked(0x81, b"ab\xed\xa0\x80cd")
    codec = FrameCodec()
    assert codec.receive_data(frame[: 6 + 3]) == []
    events = codec.receive_data(frame[6 + 3 : 6 + 4])
    assert events == [
        ProtocolFailure(
            1007, "invalid UTF-8 in text message at byte 2: encoded surrogate (ED A0..BF)"
        )
    ]


def test_code_point_split_across_fragments_is_fine() -> None:
    euro = "€".encode()  # E2 82 AC
    stream = masked(0x01, b"a" + euro[:1]) + masked(0x00, euro[1:2]) + masked(0x80, euro[2:])
    assert FrameCodec().receive_data(stream) == [Message("a€")]
    assert feed_bytewise(FrameCodec(), stream) == [Message("a€")]


def test_truncated_code_point_at_message_end_fails_1007() -> None:
    stream = masked(0x01, b"a") + masked(0x80, "€".encode()[:2])
    assert failure(FrameCodec().receive_data(stream)).code == 1007
    assert failure(FrameCodec().receive_data(masked(0x81, b"\xe2\x82"))).code == 1007


def test_invalid_utf8_in_a_single_frame_fails_1007() -> None:
    events = FrameCodec().receive_data(masked(0x81, b"ok\xffok"))
    assert events == [
        ProtocolFailure(1007, "invalid UTF-8 in text message at byte 2: invalid start byte")
    ]


def test_binary_messages_are_not_decoded() -> None:
    assert FrameCodec().receive_data(masked(0x82, b"\xff\xfe")) == [Message(b"\xff\xfe")]


# -- size limit ------------------------------------------------------------------------------


def test_message_of_exactly_max_size_is_fine() -> None:
    assert FrameCodec(max_size=5).receive_data(masked(0x81, b"Hello")) == [Message("Hello")]


def test_too_big_frame_fails_on_its_header() -> None:
    codec = FrameCodec(max_size=1000)
    frame = masked(0x82, bytes(1001))
    # Header and mask only: the payload has not arrived and never needs to.
    events = codec.receive_data(frame[:8])
    assert events == [
        ProtocolFailure(
            1009, "message too big: 1001 bytes announced by a header, the limit is 1000"
        )
    ]


def test_too_big_fragmented_message_fails_on_the_header_that_crosses_the_limit() -> None:
    codec = FrameCodec(max_size=15)
    assert codec.receive_data(masked(0x02, bytes(10))) == []
    events = codec.receive_data(masked(0x80, bytes(6))[:6])
    assert failure(events).code == 1009
    assert "16 bytes" in failure(events).reason


def test_too_big_64_bit_length_fails_without_payload() -> None:
    frame = b"\x82\xff" + (1 << 40).to_bytes(8, "big") + MASK
    assert failure(FrameCodec().receive_data(frame)).code == 1009


# -- streaming and masking -------------------------------------------------------------------


def test_large_frame_in_random_chunks_keeps_the_mask_phase() -> None:
    rng = random.Random(1)
    payload = bytes(rng.getrandbits(8) for _ in range(10_000))
    text = "ä€𝄞x" * 1000
    stream = masked(0x82, payload) + masked(0x81, text.encode()) + masked(0x89, b"end")
    for _ in range(20):
        codec = FrameCodec()
        events: list[object] = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 3000)
            events += codec.receive_data(stream[pos : pos + step])
            pos += step
        assert events == [Message(payload), Message(text), Ping(b"end")]


def test_payload_is_streamed_not_buffered() -> None:
    codec = FrameCodec()
    frame = masked(0x82, bytes(100_000))
    assert codec.receive_data(frame[:50_000]) == []
    # White-box, for the memory claim: only headers and control frames are ever buffered.
    assert len(codec._buffer) == 0
    assert codec.receive_data(frame[50_000:]) == [Message(bytes(100_000))]


def test_several_frames_and_a_partial_one_in_a_chunk() -> None:
    stream = masked(0x81, b"one") + masked(0x82, b"two") + masked(0x81, b"three")
    codec = FrameCodec()
    assert codec.receive_data(stream[:-3]) == [Message("one"), Message(b"two")]
    assert codec.receive_data(stream[-3:]) == [Message("three")]


def test_bytearray_and_memoryview_input() -> None:
    frame = masked(0x81, b"Hello")
    assert FrameCodec().receive_data(bytearray(frame)) == [Message("Hello")]
    assert FrameCodec().receive_data(memoryview(frame)) == [Message("Hello")]


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 31, 2047, 2048, 2049, 65537])
def test_python_mask_matches_the_definition(size: int) -> None:
    data = os.urandom(size)
    mask = os.urandom(4)
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert apply_mask_python(data, mask) == expected
    assert frames._apply_mask(data, mask) == expected


def test_codec_with_the_pure_python_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames, "_apply_mask", apply_mask_python)
    rng = random.Random(2)
    payload = os.urandom(70_000)
    stream = masked(0x81, b"Hello") + masked(0x02, payload[:3]) + masked(0x80, payload[3:])
    codec = FrameCodec()
    events: list[object] = []
    for pos in range(0, len(stream), 997):
        events += codec.receive_data(stream[pos : pos + 997])
    assert events == [Message("Hello"), Message(payload)]
    assert FrameCodec().receive_data(masked(0x81, b"fast path")) == [Message("fast path")]
    assert rng  # the random chunking above is fixed: 997-byte reads


def test_compiled_mask_is_used_when_installed() -> None:
    speedups = pytest.importorskip("websockets.speedups")
    assert frames._apply_mask is speedups.apply_mask


# -- sending close and control frames --------------------------------------------------------


def test_encode_close() -> None:
    codec = FrameCodec()
    assert codec.encode_close(None) == b"\x88\x00"
    assert codec.encode_close(1000) == b"\x88\x02\x03\xe8"
    assert codec.encode_close(1001, "bye") == b"\x88\x05\x03\xe9bye"
    reason = "é" * 61 + "x"  # 123 bytes of UTF-8: the most that fits
    assert codec.encode_close(4999, reason) == b"\x88\x7d\x13\x87" + reason.encode()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 5000, 65535])
def test_encode_close_refuses_codes_that_may_not_be_sent(code: int) -> None:
    with pytest.raises(
        ValueError, match=f"invalid close code {code}: it may not be sent in a Close frame"
    ):
        FrameCodec().encode_close(code)


def test_encode_close_refuses_a_long_reason_and_a_reason_without_code() -> None:
    with pytest.raises(ValueError, match="124 bytes of UTF-8; the limit is 123"):
        FrameCodec().encode_close(1000, "x" * 124)
    with pytest.raises(ValueError, match="needs a close code"):
        FrameCodec().encode_close(None, "why")


def test_encode_ping_refuses_a_long_payload() -> None:
    with pytest.raises(ValueError, match="ping payload is 126 bytes; the limit is 125"):
        FrameCodec().encode_ping(bytes(126))


def test_events_compare_and_print() -> None:
    assert Message("a") == Message("a") and Message("a") != Message(b"a")
    assert Ping(b"x") != cast(object, Pong(b"x"))
    assert repr(CloseReceived(1000, "")) == "CloseReceived(code=1000, reason='')"
    assert len({Message("a"), Message("a")}) == 1


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 65537, 1 << 20])
@pytest.mark.parametrize("text", [False, True])
def test_encode_message_into_matches_encode_message(size: int, text: bool) -> None:
    codec = FrameCodec()
    data: str | bytes = (
        "x" * size if text else bytes(range(256)) * (size // 256) + b"y" * (size % 256)
    )
    output: list[bytes] = []
    codec.encode_message_into(data, output)
    assert b"".join(output) == unmasked(0x81 if text else 0x82, _utf8(data))
    assert codec.encode_message(data) == b"".join(output)
    # A large payload goes out as it is: no copy joined to its header.
    assert len(output) == (2 if size >= 64 * 1024 else 1)


def _utf8(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def unmasked(first: int, payload: bytes) -> bytes:
    """A server frame as RFC 6455 §5.2 lays it out, written here independently of frames.py."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 0x10000:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


@pytest.mark.parametrize("size", [0, 32, 125, 126, 4000, 65536, 200_000])
@pytest.mark.parametrize("text", [False, True])
def test_one_object_sent_to_many_connections_is_framed_once(size: int, text: bool) -> None:
    # A broadcast: the same object to 50 codecs. Each output is the right frame, and a large
    # text's payload is the same object in every output: encoded once, never copied.
    data: str | bytes = "é" * (size // 2) + "x" * (size % 2) if text else os.urandom(size)
    outputs: list[list[bytes]] = [[] for _ in range(50)]
    for output in outputs:
        FrameCodec().encode_message_into(data, output)
    expected = unmasked(0x81 if text else 0x82, _utf8(data))
    assert all(b"".join(output) == expected for output in outputs)
    if text and size >= 65536:
        assert len({id(output[1]) for output in outputs}) == 1
    # An equal object that is not the same one is encoded afresh, rightly too.
    copy = (data + "!")[:-1] if isinstance(data, str) else bytes(bytearray(data))
    assert copy is not data or size == 0
    output = []
    FrameCodec().encode_message_into(copy, output)
    assert b"".join(output) == expected


def test_a_broadcast_object_is_still_compressed_where_the_connection_compresses_it() -> None:
    # The frame kept for one connection is uncompressed; a connection whose deflate minimum
    # the message reaches compresses it (RSV1 set), one below it takes the plain frame.
    text = "a broadcast message of a hundred bytes " * 2 + "x" * 22
    assert len(text) == 100
    plain: list[bytes] = []
    FrameCodec().encode_message_into(text, plain)
    for min_size, compressed in ((0, True), (64, True), (100, True), (101, False), (1024, False)):
        deflate = negotiate(["permessage-deflate"], window_bits=12, mem_level=5, min_size=min_size)
        assert deflate is not None
        output: list[bytes] = []
        FrameCodec(deflate=deflate[1]).encode_message_into(text, output)
        assert bool(output[0][0] & 0x40) is compressed
        if not compressed:
            assert output == plain
    plain_again: list[bytes] = []
    FrameCodec().encode_message_into(text, plain_again)
    assert plain_again == plain


# -- large binary frames, collected in one pooled buffer ------------------------------------------

BIG = bytes(random.Random(7).randbytes(200 * 1024))


def _split_randomly(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.choice((1, 7, 1000, 65536, 100_000))
        pieces.append(data[pos : pos + step])
        pos += step
    return pieces


@pytest.mark.parametrize("seed", range(5))
def test_large_binary_frame_fed_in_pieces_then_a_small_frame(seed: int) -> None:
    codec = FrameCodec()
    wire = masked(0x82, BIG) + masked(0x81, b"after")
    events: list[object] = []
    for piece in _split_randomly(wire, seed):
        events += codec.receive_data(memoryview(bytearray(piece)))  # a reused read buffer
    assert events == [Message(BIG), Message("after")]


def test_pooled_buffers_do_not_leak_into_messages() -> None:
    pool = BufferPool(count=1, largest=4 * 1024 * 1024)
    codec = FrameCodec(pool=pool)
    first_payload = b"\x01" * (100 * 1024)
    second_payload = b"\x02" * (100 * 1024)
    (first,) = codec.receive_data(masked(0x82, first_payload)[:5000]) + codec.receive_data(
        masked(0x82, first_payload)[5000:]
    )
    (kept,) = pool.buffers  # the first message's buffer, back in the pool
    second_wire = masked(0x82, second_payload)
    assert codec.receive_data(second_wire[:5000]) == []
    assert codec.collecting and pool.buffers == []  # collected in that buffer, taken again
    (second,) = codec.receive_data(second_wire[5000:])
    assert pool.buffers[0] is kept
    assert first == Message(first_payload)  # unchanged by the buffer's reuse
    assert second == Message(second_payload)


def test_large_text_and_fragmented_frames_stream_as_before() -> None:
    codec = FrameCodec()
    text = "é" * (50 * 1024)
    wire = masked(0x81, text.encode())
    assert codec.receive_data(wire[:1000]) == []
    assert not codec.collecting  # text is decoded as it arrives, to fail fast
    assert codec.receive_data(wire[1000:]) == [Message(text)]
    fragmented = masked(0x02, BIG) + masked(0x80, b"!")
    assert codec.receive_data(fragmented[:1000]) == []
    assert not codec.collecting
    assert codec.receive_data(fragmented[1000:]) == [Message(BIG + b"!")]
    bad_text = masked(0x81, b"\xff" + b"a" * (100 * 1024))
    assert failure(codec.receive_data(bad_text[:1000])).code == 1007  # on the first piece


def test_large_frame_over_the_limit_fails_before_any_buffer() -> None:
    codec = FrameCodec(max_size=100 * 1024)
    events = codec.receive_data(masked(0x82, BIG)[:1000])
    assert failure(events).code == 1009
    assert not codec.collecting


def test_python_mask_takes_memoryviews() -> None:
    data = bytes(range(256)) * 20
    view = memoryview(bytearray(MASK + data))
    assert apply_mask_python(view[4:], view[:4]) == apply_mask_python(data, MASK)


@pytest.mark.parametrize(("size", "length_bytes"), [(124, 2), (119, 8), (125, 2), (0, 8)])
def test_a_longer_length_field_is_not_mistaken_for_the_short_one(
    size: int, length_bytes: int
) -> None:
    # 126 or 127 in the 7-bit field announce a 2- or 8-byte length: a frame whose total size
    # happens to be 6 + 126 or 6 + 127 bytes must not be read as a 7-bit one with a mask at 2.
    payload = bytes(range(size))
    codec = FrameCodec()
    assert codec.receive_data(masked(0x82, payload, length_bytes=length_bytes)) == [
        Message(payload)
    ]


def test_large_binary_frame_read_into_the_codecs_buffer() -> None:
    codec = FrameCodec()
    wire = masked(0x82, BIG)
    assert not codec.collecting and codec.read_target() is None
    assert codec.receive_data(wire[:1000]) == []
    assert codec.collecting
    pos = 1000
    events: list[object] = []
    for _ in range(100):  # bounded: 200 KiB in at most 100 reads
        target = codec.read_target()
        if target is None:
            break
        n = min(len(target), 64 * 1024)
        target[:n] = wire[pos : pos + n]
        pos += n
        events += codec.received_into(n)
    assert pos == len(wire)
    assert events == [Message(BIG)]
    assert not codec.collecting
    with pytest.raises(RuntimeError, match="without a read_target"):
        codec.received_into(1)
    # The next frame starts from nothing.
    assert codec.receive_data(masked(0x82, b"x")) == [Message(b"x")]


def test_the_close_reply_is_the_checked_close_for_every_code_a_peer_may_send() -> None:
    """encode_close_reply skips the checks: it may only do so because every code and reason that
    comes in a valid Close frame passes them."""
    codec = FrameCodec()
    codes = [code for code in range(65536) if is_valid_close_code(code)]
    assert len(codes) == 12 + 2000
    for code in codes:
        for reason in ("", "bye", "é" * 61 + "x"):  # 123 bytes of UTF-8: the most that fits
            assert codec.encode_close_reply(code, reason) == codec.encode_close(code, reason)
