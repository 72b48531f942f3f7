"""asgiws.deflate: RFC 7692 negotiation, and compressed messages through FrameCodec."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest

from asgiws.deflate import (
    PerMessageDeflate,
    ZlibLibrary,
    negotiate,
    parse_extensions,
    zlib_library,
)
from asgiws.frames import FrameCodec, Message, Ping, ProtocolFailure, apply_mask_python

MASK = bytes.fromhex("37fa213d")


@pytest.fixture(autouse=True, params=["zlib", "zlib-ng"])
def library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ZlibLibrary:
    """Every test of this module runs on both libraries (--ws-deflate-zlib): the streams that
    negotiate() and PerMessageDeflate() make by default come from the one of this run."""
    chosen = zlib_library(request.param)
    for function in (PerMessageDeflate.__init__, negotiate):
        defaults = function.__kwdefaults__
        assert defaults is not None and "library" in defaults
        monkeypatch.setitem(defaults, "library", chosen)
    state = PerMessageDeflate()
    assert state.library == request.param and f"library={request.param}" in repr(state)
    return chosen


def masked(first: int, payload: bytes, mask: bytes = MASK) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 0x10000:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + mask + apply_mask_python(payload, mask)


def accept(*offers: str, window_bits: int = 12, mem_level: int = 5) -> str | None:
    result = negotiate(list(offers), window_bits=window_bits, mem_level=mem_level)
    return None if result is None else result[0]


def deflate_codec(
    offer: str = "permessage-deflate", max_size: int = 16 * 1024 * 1024
) -> tuple[FrameCodec, PerMessageDeflate]:
    result = negotiate([offer], window_bits=12, mem_level=5)
    assert result is not None
    return FrameCodec(max_size=max_size, deflate=result[1]), result[1]


# -- negotiation: RFC 7692 §7 offer shapes ---------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        # What browsers send.
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=15",
        ),
        (
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
        ),
        # RFC 7692 §7.1.2.1: the same or a smaller value than offered.
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "permessage-deflate; server_max_window_bits=14",
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=8",
        ),
        (
            'permessage-deflate; server_max_window_bits="10"',
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
        ),
        (
            "permessage-deflate ; server_no_context_takeover ;client_no_context_takeover ; "
            "server_max_window_bits = 9 ; client_max_window_bits = 8",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=9; client_max_window_bits=8",
        ),
        (
            "PerMessage-Deflate; Client_Max_Window_Bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=15",
        ),
    ],
)
def test_accepted_offers(offer: str, response: str) -> None:
    assert accept(offer) == response


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; foo",  # unknown parameter
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits",  # value-less
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",  # §7.1.2.1: no leading zero
        "permessage-deflate; server_max_window_bits=ten",
        'permessage-deflate; server_max_window_bits="16"',
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; server_no_context_takeover=1",  # §7.1.1.1: no value
        'permessage-deflate; client_no_context_takeover=""',
        "permessage-deflate; server_max_window_bits=1 0",  # syntax error
        "x-webkit-deflate-frame",
        "",
    ],
)
def test_declined_offers(offer: str) -> None:
    assert accept(offer) is None


def test_first_acceptable_offer_wins() -> None:
    # RFC 7692 §7.1.3: a client may offer a preferred configuration, then a fallback.
    assert (
        accept("permessage-deflate; server_max_window_bits=10, permessage-deflate")
        == "permessage-deflate; server_max_window_bits=10"
    )
    assert (
        accept(
            "permessage-deflate; server_max_window_bits=16, permessage-deflate; "
            "client_no_context_takeover"
        )
        == "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"
    )


def test_offers_across_several_headers() -> None:
    offers = ("x-webkit-deflate-frame", "foo, permessage-deflate; server_max_window_bits=9")
    assert accept(*offers) == "permessage-deflate; server_max_window_bits=9"
    assert accept("permessage-deflate; bad=1", "permessage-deflate") == (
        "permessage-deflate; server_max_window_bits=12"
    )


def test_a_malformed_element_is_declined_alone() -> None:
    assert accept('permessage-deflate; =x, permessage-deflate; x="a,b", permessage-deflate') == (
        "permessage-deflate; server_max_window_bits=12"
    )


def test_parse_extensions() -> None:
    assert parse_extensions('a; b=1; c="x\\"y,z", , D ;E') == [
        ("a", [("b", "1"), ("c", 'x"y,z')]),
        ("d", [("e", None)]),
    ]
    assert parse_extensions("a;;b") == [None]
    assert parse_extensions('a; b="unterminated') == [None]


def test_window_bits_configure_the_compressor() -> None:
    result = negotiate(
        ["permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"],
        window_bits=12,
        mem_level=5,
    )
    assert result is not None
    _, state = result
    # zlib has no raw 8-bit window: 9 serves for both directions (see PerMessageDeflate).
    assert state.server_max_window_bits == 9
    assert state.client_max_window_bits == 9
    assert state.mem_level == 5
    result = negotiate(["permessage-deflate"], window_bits=15, mem_level=8)
    assert result is not None
    assert result[0] == "permessage-deflate; server_max_window_bits=15"
    assert result[1].server_max_window_bits == 15 and result[1].client_max_window_bits == 15


def test_negotiate_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="window_bits must be 9 to 15, not 8"):
        negotiate(["permessage-deflate"], window_bits=8, mem_level=5)
    with pytest.raises(ValueError, match="mem_level must be 1 to 9, not 0"):
        negotiate(["permessage-deflate"], window_bits=12, mem_level=0)


def test_the_compression_level_is_the_one_negotiated_with() -> None:
    # Words drawn from a small vocabulary: level 9's lazy matching finds longer matches than
    # level 1's greedy one (6,821 bytes against 6,950 for these 3,000 words).
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randrange(3, 9))) for _ in range(300)]
    message = " ".join(rng.choice(words) for _ in range(3000)).encode()
    sizes = {}
    for level in (1, 9):
        result = negotiate(["permessage-deflate"], window_bits=15, mem_level=8, level=level)
        assert result is not None
        state = result[1]
        assert state.level == level and f"level={level}" in repr(state)
        compressed = state.compress(message)
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(compressed + b"\x00\x00\xff\xff") == message
        sizes[level] = len(compressed)
    assert sizes[9] < sizes[1]
    with pytest.raises(ValueError, match="level must be 1 to 9, not 0"):
        PerMessageDeflate(level=0)


def test_the_server_compresses_at_ws_deflate_level() -> None:
    from asgiws.config import Config
    from asgiws.handshake import accept_headers

    offers = ["permessage-deflate; client_max_window_bits"]
    for level in (1, 6):
        _, state = accept_headers(
            {"type": "websocket.accept"}, [], offers, Config(ws_deflate_level=level)
        )
        assert state is not None and state.level == level
    assert Config().ws_deflate_level == 1


def test_the_server_takes_the_library_of_ws_deflate_zlib() -> None:
    import zlib_ng.zlib_ng

    from asgiws.config import Config
    from asgiws.handshake import accept_headers

    assert zlib_library("zlib") is zlib
    assert zlib_library("zlib-ng") is zlib_ng.zlib_ng
    assert zlib_library("auto") is zlib_ng.zlib_ng  # installed here (the 'test' extra)
    with pytest.raises(ValueError, match="unknown zlib library 'gzip'"):
        zlib_library("gzip")
    assert Config().ws_deflate_zlib == "auto"
    offers = ["permessage-deflate; client_max_window_bits"]
    for name, expected in (("zlib", "zlib"), ("zlib-ng", "zlib-ng"), ("auto", "zlib-ng")):
        _, state = accept_headers(
            {"type": "websocket.accept"}, [], offers, Config(ws_deflate_zlib=name)
        )
        assert state is not None and state.library == expected


def test_a_9_bit_compressor_fits_a_peer_that_asked_for_8(library: ZlibLibrary) -> None:
    # PerMessageDeflate's docstring: the compressor's 512-byte window never reaches back more
    # than 256 bytes, so an 8-bit inflater reads it. Pieces repeat at every distance.
    rng = random.Random(8)
    pieces = [rng.randbytes(rng.randint(3, 40)) for _ in range(60)]
    for level in range(1, 10):
        result = negotiate(
            ["permessage-deflate; server_max_window_bits=8"],
            window_bits=15,
            mem_level=rng.randint(1, 9),
            level=level,
        )
        assert result is not None and "server_max_window_bits=8" in result[0]
        state = result[1]
        inflater = zlib.decompressobj(-8)
        for _ in range(5):
            message = b"".join(rng.choice(pieces) for _ in range(rng.randint(10, 400)))
            out = state.compress(message)
            assert inflater.decompress(out + b"\x00\x00\xff\xff") == message


def test_messages_below_the_minimum_size_go_out_uncompressed() -> None:
    result = negotiate(["permessage-deflate"], window_bits=12, mem_level=5, min_size=64)
    assert result is not None
    codec, state = FrameCodec(deflate=result[1]), result[1]
    assert state.min_size == 64 and "min_size=64" in repr(state)
    # RFC 7692 §6: RSV1 clear, the payload as it is; no compressor is made for it.
    for message, first in (("x" * 63, 0x81), (b"y" * 63, 0x82), ("", 0x81)):
        raw = message.encode() if isinstance(message, str) else message
        assert codec.encode_message(message) == bytes((first, len(raw))) + raw
        out: list[bytes] = []
        codec.encode_message_into(message, out)
        assert out == [bytes((first, len(raw))) + raw]
    assert not state.holds_deflater
    # From the minimum on: compressed, RSV1 set, and it inflates back.
    inflater = zlib.decompressobj(-12)
    for message in ("z" * 64, "z" * 5000):
        sent = codec.encode_message(message)
        assert sent[0] == 0xC1
        start = 2 if sent[1] < 126 else 4
        assert inflater.decompress(sent[start:] + b"\x00\x00\xff\xff") == message.encode()
    # An uncompressed message between compressed ones leaves the compressor's window alone:
    # the next compressed message still inflates in the same client stream.
    codec.encode_message("short")
    sent = codec.encode_message("z" * 64)
    assert inflater.decompress(sent[2:] + b"\x00\x00\xff\xff") == b"z" * 64


def test_a_minimum_size_of_0_compresses_every_message() -> None:
    codec, state = deflate_codec()
    assert state.min_size == 0
    assert codec.encode_message("")[0] == 0xC1
    with pytest.raises(ValueError, match="min_size must be 0 or more, not -1"):
        PerMessageDeflate(min_size=-1)
    with pytest.raises(ValueError, match="min_size must be 0 or more, not -1"):
        negotiate(["permessage-deflate"], window_bits=12, mem_level=5, min_size=-1)


def test_the_server_compresses_from_ws_deflate_min_size() -> None:
    from asgiws.config import Config
    from asgiws.handshake import accept_headers

    offers = ["permessage-deflate; client_max_window_bits"]
    for size in (0, 200):
        config = Config(ws_deflate_min_size=size)
        _, state = accept_headers({"type": "websocket.accept"}, [], offers, config)
        assert state is not None and state.min_size == size
    assert Config().ws_deflate_min_size == 1024


# -- RFC 7692 §7.2.3 examples ----------------------------------------------------------------


def test_rfc_7692_compressed_hello_is_what_the_server_sends() -> None:
    codec, _ = deflate_codec()
    # §7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00; §7.2.3.2: the same message again,
    # with the LZ77 window taken over, is f2 00 11 00 00.
    assert codec.encode_message("Hello") == bytes.fromhex("c107f248cdc9c90700")
    assert codec.encode_message("Hello") == bytes.fromhex("c105f200110000")


def test_rfc_7692_server_no_context_takeover_starts_each_message_afresh() -> None:
    codec, state = deflate_codec("permessage-deflate; server_no_context_takeover")
    assert codec.encode_message("Hello") == bytes.fromhex("c107f248cdc9c90700")
    assert codec.encode_message("Hello") == bytes.fromhex("c107f248cdc9c90700")
    assert not state.holds_deflater  # nothing kept between messages


def test_rfc_7692_compressed_hello_is_received() -> None:
    codec, state = deflate_codec()
    assert codec.receive_data(masked(0xC1, bytes.fromhex("f248cdc9c90700"))) == [Message("Hello")]
    assert state.holds_inflater  # context takeover: the window is kept for the next message
    # §7.2.3.2: the second one refers back into the first.
    assert codec.receive_data(masked(0xC1, bytes.fromhex("f200110000"))) == [Message("Hello")]


def test_rfc_7692_compressed_and_fragmented() -> None:
    # §7.2.3.1: 0x41 0x03 0xf2 0x48 0xcd, then 0x80 0x04 0xc9 0xc9 0x07 0x00.
    codec, _ = deflate_codec()
    stream = masked(0x41, bytes.fromhex("f248cd")) + masked(0x80, bytes.fromhex("c9c90700"))
    assert codec.receive_data(stream) == [Message("Hello")]


def test_rfc_7692_stored_block_and_bfinal() -> None:
    codec, state = deflate_codec()
    # §7.2.3.3: a DEFLATE block with no compression.
    stored = bytes.fromhex("0005 00faff 48656c6c6f 00".replace(" ", ""))
    assert codec.receive_data(masked(0xC1, stored)) == [Message("Hello")]
    # §7.2.3.4: a block with BFINAL set ends the stream; the next message starts a new one.
    assert codec.receive_data(masked(0xC1, bytes.fromhex("f348cdc9c9070000"))) == [Message("Hello")]
    assert not state.holds_inflater
    assert codec.receive_data(masked(0xC1, bytes.fromhex("f248cdc9c90700"))) == [Message("Hello")]


def test_uncompressed_message_with_deflate_negotiated() -> None:
    codec, _ = deflate_codec()
    # RFC 7692 §6.1: RSV1 clear means this message is not compressed.
    assert codec.receive_data(masked(0x81, b"Hello")) == [Message("Hello")]


def test_round_trip_with_a_client_stream() -> None:
    codec, _ = deflate_codec("permessage-deflate; client_max_window_bits")
    client = zlib.compressobj(wbits=-15)
    client_inflater = zlib.decompressobj(wbits=-12)
    messages: list[str | bytes] = ["Hello", "Hello" * 1000, b"\x00\xff" * 40_000, "", b""]
    for message in messages:
        raw = message.encode() if isinstance(message, str) else message
        compressed = client.compress(raw) + client.flush(zlib.Z_SYNC_FLUSH)
        assert compressed.endswith(b"\x00\x00\xff\xff")
        opcode = 0x1 if isinstance(message, str) else 0x2
        frame = masked(0xC0 | opcode, compressed[:-4])
        events = []
        for pos in range(0, len(frame), 1000):
            events += codec.receive_data(frame[pos : pos + 1000])
        assert events == [Message(message)]
        # And back: the server's frame inflates to the message in the client's stream.
        sent = codec.encode_message(message)
        assert sent[0] == 0xC0 | 0x80 | opcode
        length = sent[1] & 0x7F
        start = 2 if length < 126 else 4 if length == 126 else 10
        assert client_inflater.decompress(sent[start:] + b"\x00\x00\xff\xff") == raw


def test_client_no_context_takeover_drops_the_inflater() -> None:
    codec, state = deflate_codec("permessage-deflate; client_no_context_takeover")
    assert codec.receive_data(masked(0xC1, bytes.fromhex("f248cdc9c90700"))) == [Message("Hello")]
    assert not state.holds_inflater


def test_streams_are_made_lazily() -> None:
    _, state = deflate_codec()
    assert not state.holds_deflater and not state.holds_inflater


# -- errors ----------------------------------------------------------------------------------


def test_rsv1_without_deflate_fails_1002() -> None:
    events = FrameCodec().receive_data(masked(0xC1, bytes.fromhex("f248cdc9c90700")))
    assert events == [
        ProtocolFailure(1002, "reserved bits set without an extension for them: RSV1 (opcode 0x1)")
    ]


def test_rsv1_on_a_continuation_frame_fails_1002() -> None:
    codec, _ = deflate_codec()
    stream = masked(0x41, bytes.fromhex("f248cd")) + masked(0xC0, bytes.fromhex("c9c90700"))
    events = codec.receive_data(stream)
    assert len(events) == 1
    assert events[0] == ProtocolFailure(
        1002,
        "RSV1 set on a continuation frame (opcode 0x0); permessage-deflate allows it on a "
        "message's first frame only",
    )


def test_rsv1_on_a_control_frame_fails_1002() -> None:
    codec, _ = deflate_codec()
    events = codec.receive_data(masked(0xC9, b""))
    assert isinstance(events[0], ProtocolFailure) and events[0].code == 1002
    assert events[0].reason.startswith("RSV1 set on a control frame")


def test_corrupt_compressed_data_fails_1007() -> None:
    codec, _ = deflate_codec()
    events = codec.receive_data(masked(0xC1, b"\xff\xff\xff\xff"))
    assert isinstance(events[0], ProtocolFailure) and events[0].code == 1007
    assert events[0].reason.startswith("invalid compressed data")


def test_invalid_utf8_inside_a_compressed_message_fails_on_its_chunk() -> None:
    codec, _ = deflate_codec()
    client = zlib.compressobj(wbits=-15)
    first = client.compress(b"a" * 100) + client.flush(zlib.Z_SYNC_FLUSH)
    second = client.compress(b"\xff" + b"b" * 100) + client.flush(zlib.Z_SYNC_FLUSH)
    assert codec.receive_data(masked(0x41, first)) == []
    events = codec.receive_data(masked(0x00, second))
    assert isinstance(events[0], ProtocolFailure) and events[0].code == 1007


def test_compressed_message_of_exactly_max_size_is_fine() -> None:
    codec, _ = deflate_codec(max_size=100_000)
    compressed = zlib.compressobj(wbits=-15)
    payload = compressed.compress(bytes(100_000)) + compressed.flush(zlib.Z_SYNC_FLUSH)
    assert codec.receive_data(masked(0xC2, payload[:-4])) == [Message(bytes(100_000))]


def test_compressed_message_one_byte_over_max_size_fails_1009() -> None:
    codec, _ = deflate_codec(max_size=99_999)
    compressed = zlib.compressobj(wbits=-15)
    payload = compressed.compress(bytes(100_000)) + compressed.flush(zlib.Z_SYNC_FLUSH)
    events = codec.receive_data(masked(0xC2, payload[:-4]))
    assert events == [
        ProtocolFailure(
            1009, "message too big: 100000 bytes after decompression, the limit is 99999"
        )
    ]


def _deflated(compressor: zlib._Compress, data: bytes) -> bytes:
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize(
    ("first", "data", "max_size"),
    [
        (0xC1, b'{"n": 1, "text": "hello"}', 1 << 20),
        (0xC1, b"", 1 << 20),
        (0xC2, bytes(range(256)) * 16, 1 << 20),
        (0xC1, "fünf € ".encode() * 5000, 1 << 20),  # more than one inflate step
        (0xC1, b"a" * 40 + b"\xff" + b"b" * 40, 1 << 20),  # invalid UTF-8 at byte 40
        (0xC1, b"a" * 100_000 + b"\xc3", 1 << 20),  # truncated at the end, past one step
        (0xC2, bytes(1001), 1000),  # one byte past the limit, within the first step
        (0xC2, bytes(1000), 1000),
        (0xC2, bytes(70_000), 69_999),  # past the limit after the first step
        (0xC2, bytes(200_000), 1 << 20),
    ],
)
def test_a_whole_compressed_frame_reads_as_the_same_frame_in_pieces(
    first: int, data: bytes, max_size: int
) -> None:
    # One read holding the whole frame takes the one-frame inflate; seven-byte reads stream
    # the same frame through MessageAssembler.piece: the events must be the same.
    client = zlib.compressobj(wbits=-15)
    frame = masked(first, _deflated(client, data))
    whole, _ = deflate_codec(max_size=max_size)
    pieces, _ = deflate_codec(max_size=max_size)
    streamed = []
    for pos in range(0, len(frame), 7):
        streamed += pieces.receive_data(frame[pos : pos + 7])
    events = whole.receive_data(frame)
    assert events == streamed
    if len(data) > max_size:
        assert events == [
            ProtocolFailure(
                1009,
                f"message too big: {max_size + 1} bytes after decompression, the limit is "
                f"{max_size}",
            )
        ]
    elif first == 0xC2:
        assert events == [Message(data)]
    else:
        try:
            assert events == [Message(data.decode())]
        except UnicodeDecodeError as exc:
            assert events == [ProtocolFailure(1007, events[0].reason)]  # type: ignore[union-attr]
            assert f"at byte {exc.start}" in events[0].reason  # type: ignore[union-attr]
    # The codec goes on with the next message (unless it failed), the window kept: the
    # client's compressor refers back to the first message.
    if not isinstance(events[0], ProtocolFailure):
        repeat = data[-200:] + b"."
        again = masked(first, _deflated(client, repeat))
        expected = repeat if first == 0xC2 else repeat.decode()
        assert whole.receive_data(again) == [Message(expected)]


def zip_bomb(total: int, piece: int = 1 << 20) -> bytes:
    """A raw deflate stream of ``total`` zero bytes, without allocating them.

    Each 1 MiB of zeros is compressed from a reset state and ended with a full flush, so every
    piece compresses to the same bytes: compressing once and repeating gives the same stream
    as the loop would, at 1/1024 of the CPU time.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(piece)) + compressor.flush(zlib.Z_FULL_FLUSH)
    check = zlib.compressobj(9, zlib.DEFLATED, -15)
    again = check.compress(bytes(piece)) + check.flush(zlib.Z_FULL_FLUSH)
    assert again == block
    return block * (total // piece)


def test_zip_bomb_fails_1009_within_bounded_memory() -> None:
    max_size = 16 * 1024 * 1024
    bomb = zip_bomb(1 << 30)  # 1 GiB of zeros
    assert len(bomb) < 2 * 1024 * 1024  # about 1 MiB on the wire
    # Check the bomb is what it claims, by inflating a slice of it with a bounded step.
    probe = zlib.decompressobj(-15)
    assert probe.decompress(bomb[: len(bomb) // 1024], 1 << 21) == bytes(1 << 20)

    frame = masked(0xC2, bomb)
    codec, _ = deflate_codec(max_size=max_size)
    tracemalloc.start()
    try:
        events = []
        for pos in range(0, len(frame), 65536):
            events += codec.receive_data(frame[pos : pos + 65536])
            if events:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailure)
    assert events[0].code == 1009
    assert events[0].reason == (
        f"message too big: {max_size + 1} bytes after decompression, the limit is {max_size}"
    )
    assert peak < 2 * max_size, f"peak {peak} bytes"
    assert codec.receive_data(frame[-10:]) == []


def test_zip_bomb_after_a_good_message_and_a_ping() -> None:
    codec, _ = deflate_codec(max_size=1 << 20)
    stream = (
        masked(0xC1, bytes.fromhex("f248cdc9c90700"))
        + masked(0x89, b"p")
        + masked(0xC2, zip_bomb(1 << 24))
    )
    events = codec.receive_data(stream)
    assert events[:2] == [Message("Hello"), Ping(b"p")]
    assert isinstance(events[2], ProtocolFailure) and events[2].code == 1009
    assert len(events) == 3


@pytest.mark.parametrize(
    ("offer", "response_bits", "inflater_bits"),
    [
        ("permessage-deflate; client_max_window_bits", "client_max_window_bits=12", 12),
        ("permessage-deflate; client_max_window_bits=10", "client_max_window_bits=10", 10),
        ("permessage-deflate; client_max_window_bits=14", "client_max_window_bits=12", 12),
        # Without the offer the client may use 15: the server cannot ask for less.
        ("permessage-deflate", None, 15),
    ],
)
def test_client_window_is_capped_only_where_the_client_lets_the_server_choose(
    offer: str, response_bits: str | None, inflater_bits: int
) -> None:
    result = negotiate([offer], window_bits=12, mem_level=5, client_window_bits=12)
    assert result is not None
    response, state = result
    if response_bits is None:
        assert "client_max_window_bits" not in response
    else:
        assert response_bits in response.split("; ")
    assert state.client_max_window_bits == inflater_bits


def test_client_window_bits_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="client_window_bits must be 9 to 15, not 16"):
        negotiate(["permessage-deflate"], window_bits=12, mem_level=5, client_window_bits=16)


# -- one whole compressed message in one read: FrameCodec.receive_one ----------------------


@pytest.mark.parametrize(
    ("first", "data"),
    [
        (0xC1, b'{"n": 1, "text": "hello"}'),  # a 7-bit length
        (0xC1, b'{"seq": 1, "items": [' + b'{"id": 1, "text": "river stone"}, ' * 120 + b"]}"),
        (0xC2, bytes(range(256)) * 64),  # a 16-bit length: 16 KiB that barely compress
        (0xC1, "fünf € ".encode() * 5000),  # more than one inflate step
    ],
)
def test_receive_one_inflates_one_whole_compressed_frame(first: int, data: bytes) -> None:
    # What a browser sends: one compressed message in one frame, in one read. receive_one
    # gives the message without events, the window kept for the next one.
    client = zlib.compressobj(wbits=-12)
    codec, _ = deflate_codec("permessage-deflate; client_max_window_bits")
    expected = data if first == 0xC2 else data.decode()
    frame = masked(first, _deflated(client, data))
    assert len(frame) - len(_deflated(zlib.compressobj(wbits=-12), data)) in (6, 8)
    assert codec.receive_one(frame) == expected
    again = data[-300:]
    assert codec.receive_one(masked(first, _deflated(client, again))) == (
        again if first == 0xC2 else again.decode()
    )


def test_receive_one_leaves_other_compressed_reads_to_the_parsing_loop() -> None:
    client = zlib.compressobj(wbits=-15)
    hello = masked(0xC1, _deflated(client, b"Hello"))
    world = masked(0xC1, _deflated(client, b"world"))
    codec, _ = deflate_codec()
    for data in (hello + world, hello[:-1], masked(0x41, _deflated(client, b"first"))):
        assert codec.receive_one(data) is None  # two frames, part of one, a fragment
    assert codec.receive_declined(hello + world) == [Message("Hello"), Message("world")]
    # A 64-bit length (RFC 6455 §5.2 allows one for any size) goes to the loop as well.
    payload = _deflated(client, b"!")
    long_form = bytes((0xC1, 0x80 | 127)) + len(payload).to_bytes(8, "big") + MASK
    long_form += apply_mask_python(payload, MASK)
    assert codec.receive_one(long_form) is None
    assert codec.receive_declined(long_form) == [Message("!")]
    # Unmasked, or RSV1 without permessage-deflate: the loop fails them (1002).
    unmasked = bytes((0xC1, len(payload))) + payload
    assert codec.receive_one(unmasked) is None
    assert codec.receive_declined(unmasked)[0].code == 1002  # type: ignore[union-attr]
    plain = FrameCodec()
    assert plain.receive_one(hello) is None
    failure = plain.receive_declined(hello)
    assert isinstance(failure[0], ProtocolFailure) and failure[0].code == 1002


@pytest.mark.parametrize(
    ("payload", "max_size", "code", "reason"),
    [
        (b"\xff\xff\xff\xff", 1 << 20, 1007, "invalid compressed data"),
        (_deflated(zlib.compressobj(wbits=-15), b"ab\xffc"), 1 << 20, 1007, "invalid UTF-8"),
        (zip_bomb(1 << 24), 1 << 20, 1009, "message too big: 1048577 bytes after"),
    ],
)
def test_a_compressed_frame_receive_one_fails_is_reported_by_receive_declined_once(
    payload: bytes, max_size: int, code: int, reason: str
) -> None:
    codec, _ = deflate_codec(max_size=max_size)
    frame = masked(0xC1, payload)
    assert codec.receive_one(frame) is None
    (failure,) = codec.receive_declined(frame)
    assert isinstance(failure, ProtocolFailure) and failure.code == code
    assert failure.reason.startswith(reason)
    # Parsing stopped: nothing after it counts, and the failure is not reported twice.
    assert codec.receive_declined(frame) == []
    assert codec.receive_data(masked(0x81, b"late")) == []
    # receive_data (one then the other) gives the same single failure.
    again, _ = deflate_codec(max_size=max_size)
    assert again.receive_data(frame) == [failure]
