"""FrameCodec against an oracle: wsproto's server Connection, on random client streams.

Hypothesis builds streams of client frames, valid and not: messages cut into fragments with
control frames between them, text with bad UTF-8, close frames with good and bad codes and
reasons, stray and malformed frames (random FIN, RSV bits and opcodes, unmasked frames, a 64-bit
length with its top bit set). The stream is masked, cut at random points and fed to both
parsers; they must report the same messages, pings and pongs in the same order, then the same
close code.

Where wsproto differs from what RFC 6455 and Autobahn|Testsuite require, FrameCodec keeps the
stricter behaviour and the difference is excluded here, explicitly, in ``compare``:

1. Close code 1014 (Bad Gateway) is IANA-registered and accepted by FrameCodec (see the
   decision in asgiws/frames.py); wsproto has no 1014 in its CloseReason enum and fails 1002.
2. UTF-8 fail-fast: CPython's incremental decoder waits for a third byte after ED A0..BF (the
   start of an encoded surrogate, which no continuation can make valid). FrameCodec fails on
   the second byte, so Autobahn 6.4.x-style streams fail on the chunk that carries it; wsproto
   fails later, and may report pings and pongs, or a different error, from frames after it.
3. Non-minimal length encodings are accepted by FrameCodec and refused by wsproto; RFC 6455
   §5.2 does not make them an error, so they are not generated here (test_frames.py covers
   them).
4. With permessage-deflate, wsproto resets its "message is compressed" flag when a control
   frame ends in the middle of a fragmented compressed message, and then inflates nothing of
   the continuations. So the deflate streams put no control frame inside a compressed
   message, and a malformed frame only at the very end.

``max_size`` is left at its default and the messages are small: wsproto has no size limit.
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

from asgiws import frames
from asgiws.deflate import negotiate
from asgiws.frames import FrameCodec, apply_mask_python

SETTINGS = settings(
    max_examples=int(os.environ.get("ORACLE_EXAMPLES", "200")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Close codes: Autobahn's valid and invalid sets, the edges, the registered 1012-1014, any.
CLOSE_CODES = st.one_of(
    st.sampled_from(
        [
            *(1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999),
            *(0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535),
        ]
    ),
    st.integers(0, 0xFFFF),
)

# Byte sequences that break UTF-8, spliced into otherwise valid text.
BAD_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong
    b"\xed\xa0\x80",  # surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF (Autobahn 6.4.1)
    b"\xe2\x82",  # truncated
    b"\x80",  # lone continuation byte
]


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv: int = 0
    masked: bool = True
    mask: bytes = b"\x00\x00\x00\x00"
    huge_length: bool = False  # a 64-bit length with the top bit set

    def serialize(self) -> bytes:
        first = (0x80 if self.fin else 0) | self.rsv | self.opcode
        mask_bit = 0x80 if self.masked else 0
        n = len(self.payload)
        if self.huge_length:
            header = bytes((first, mask_bit | 127)) + ((1 << 63) | n).to_bytes(8, "big")
        elif n < 126:
            header = bytes((first, mask_bit | n))
        elif n < 0x10000:
            header = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
        if not self.masked:
            return header + self.payload
        return header + self.mask + apply_mask_python(self.payload, self.mask)


@dataclass
class Stream:
    frames: list[Frame] = field(default_factory=list)


masks = st.binary(min_size=4, max_size=4)


@st.composite
def text_payload(draw: st.DrawFn) -> bytes:
    text = draw(st.text(max_size=40)).encode()
    if draw(st.integers(0, 4)) == 0:
        bad = draw(st.sampled_from(BAD_UTF8))
        at = draw(st.integers(0, len(text)))
        text = text[:at] + bad + text[at:]
    return text


@st.composite
def control_frame(draw: st.DrawFn, *, valid: bool = True) -> Frame:
    opcode = draw(st.sampled_from([0x9, 0xA]))
    size = draw(st.integers(0, 125) if valid else st.integers(0, 130))
    return Frame(True, opcode, draw(st.binary(min_size=size, max_size=size)), mask=draw(masks))


@st.composite
def close_frame(draw: st.DrawFn) -> Frame:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        payload = b""
    elif kind == 1:
        payload = draw(st.binary(min_size=1, max_size=1))
    else:
        code = draw(CLOSE_CODES)
        reason = draw(text_payload())[:100]
        payload = code.to_bytes(2, "big") + reason
    return Frame(True, 0x8, payload, mask=draw(masks))


@st.composite
def malformed_frame(draw: st.DrawFn) -> Frame:
    return Frame(
        fin=draw(st.booleans()),
        opcode=draw(st.integers(0, 15)),
        payload=draw(st.binary(max_size=20)),
        rsv=draw(st.sampled_from([0, 0, 0x40, 0x20, 0x10, 0x70])),
        masked=draw(st.integers(0, 5)) > 0,
        mask=draw(masks),
        huge_length=draw(st.integers(0, 20)) == 0,
    )


def fragments(draw: st.DrawFn, payload: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    bounds = [0, *cuts, len(payload)]
    return [payload[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def plain_streams(draw: st.DrawFn) -> list[Frame]:
    """Streams for a codec without extensions."""
    out: list[Frame] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["text", "text", "binary", "control", "close", "bad"]))
        if kind in ("text", "binary"):
            payload = draw(text_payload()) if kind == "text" else draw(st.binary(max_size=60))
            pieces = fragments(draw, payload)
            for index, piece in enumerate(pieces):
                if index and draw(st.integers(0, 3)) == 0:
                    out.append(draw(control_frame()))
                opcode = (0x1 if kind == "text" else 0x2) if index == 0 else 0x0
                out.append(Frame(index == len(pieces) - 1, opcode, piece, mask=draw(masks)))
        elif kind == "control":
            out.append(draw(control_frame(valid=draw(st.integers(0, 5)) > 0)))
        elif kind == "close":
            out.append(draw(close_frame()))
        else:
            out.append(draw(malformed_frame()))
    return out


@st.composite
def deflate_streams(draw: st.DrawFn) -> list[Frame]:
    """Streams for a codec with permessage-deflate (default parameters, context takeover)."""
    compressor = zlib.compressobj(wbits=-15)
    out: list[Frame] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["text", "binary", "plain", "control", "close"]))
        if kind in ("text", "binary"):
            raw = draw(text_payload()) if kind == "text" else draw(st.binary(max_size=200))
            if draw(st.booleans()):
                raw = raw * draw(st.integers(2, 20))  # something to compress
            data = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
            # RFC 7692 §7.2.1: the sender removes the 00 00 ff ff tail.
            pieces = fragments(draw, data[:-4])
            for index, piece in enumerate(pieces):
                opcode = (0x1 if kind == "text" else 0x2) if index == 0 else 0x0
                rsv = 0x40 if index == 0 else 0
                out.append(Frame(index == len(pieces) - 1, opcode, piece, rsv, mask=draw(masks)))
        elif kind == "plain":  # RFC 7692 §6.1: a message may go uncompressed, RSV1 clear
            out.append(Frame(True, 0x1, draw(text_payload()), mask=draw(masks)))
        elif kind == "control":
            out.append(draw(control_frame()))
        else:
            out.append(draw(close_frame()))
    if draw(st.integers(0, 3)) == 0:
        out.append(draw(malformed_frame()))
    return out


def chunked(draw: Callable[..., Any], data: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=12))))
    bounds = [0, *[c for c in cuts if c < len(data)], len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- running both ----------------------------------------------------------------------------

Outcome = tuple[object, ...]


def run_asgiws(chunks: list[bytes], codec: FrameCodec) -> tuple[list[Outcome], str]:
    outcomes: list[Outcome] = []
    reason = ""
    for chunk in chunks:
        for event in codec.receive_data(chunk):
            if isinstance(event, frames.Message):
                outcomes.append(("message", event.data))
            elif isinstance(event, frames.Ping):
                outcomes.append(("ping", event.payload))
            elif isinstance(event, frames.Pong):
                outcomes.append(("pong", event.payload))
            elif isinstance(event, frames.CloseReceived):
                outcomes.append(("end", event.code))
                reason = event.reason
            else:
                outcomes.append(("end", event.code))
                reason = event.reason
    return outcomes, reason


def run_wsproto(chunks: list[bytes], connection: Connection) -> tuple[list[Outcome], str]:
    outcomes: list[Outcome] = []
    parts: list[str | bytes] = []
    for chunk in chunks:
        connection.receive_data(chunk)
        for event in connection.events():
            if isinstance(event, TextMessage | BytesMessage):
                parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
                if event.message_finished:
                    joined = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)  # type: ignore[arg-type]
                    outcomes.append(("message", joined))
                    parts = []
            elif isinstance(event, Ping):
                outcomes.append(("ping", bytes(event.payload)))
            elif isinstance(event, Pong):
                outcomes.append(("pong", bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                outcomes.append(("end", int(event.code)))
                return outcomes, event.reason or ""
    return outcomes, ""


def compare(ours: tuple[list[Outcome], str], theirs: tuple[list[Outcome], str]) -> None:
    our_events, our_reason = ours
    their_events, their_reason = theirs
    if our_events and our_events[-1] == ("end", 1007) and "encoded surrogate" in our_reason:
        # Difference 2 (module docstring): we failed earlier than wsproto can.
        before = our_events[:-1]
        assert their_events[: len(before)] == before
        rest = their_events[len(before) :]
        assert all(kind in ("ping", "pong") for kind, *_ in rest[:-1])
        return
    if their_reason == "CLOSE with unknown reserved code" and our_events[-1] != ("end", 1002):
        # Difference 1 (module docstring): of the codes wsproto calls unknown, only 1014 is
        # valid here; its Close is received, or fails 1007 when its reason is not UTF-8.
        assert our_events[-1] == ("end", 1014) or (
            our_events[-1] == ("end", 1007) and our_reason.startswith("close reason")
        )
        assert their_events[:-1] == our_events[:-1]
        return
    assert our_events == their_events, (our_reason, their_reason)


def serialize(stream: list[Frame]) -> bytes:
    return b"".join(frame.serialize() for frame in stream)


@SETTINGS
@given(st.data())
def test_same_events_as_wsproto(data: st.DataObject) -> None:
    stream = data.draw(plain_streams())
    chunks = chunked(data.draw, serialize(stream))
    compare(
        run_asgiws(chunks, FrameCodec()),
        run_wsproto(chunks, Connection(ConnectionType.SERVER)),
    )


@SETTINGS
@given(st.data())
def test_same_events_as_wsproto_with_deflate(data: st.DataObject) -> None:
    stream = data.draw(deflate_streams())
    chunks = chunked(data.draw, serialize(stream))
    negotiated = negotiate(["permessage-deflate"], window_bits=12, mem_level=5)
    assert negotiated is not None
    extension = WsprotoDeflate()
    extension.finalize("permessage-deflate")  # enabled, with the defaults negotiated above
    compare(
        run_asgiws(chunks, FrameCodec(deflate=negotiated[1])),
        run_wsproto(chunks, Connection(ConnectionType.SERVER, extensions=[extension])),
    )


@SETTINGS
@given(st.data())
def test_chunking_does_not_change_the_events(data: st.DataObject) -> None:
    """FrameCodec against itself: one read versus random reads, same events.

    Only the reason text may differ: a surrogate cut at a read boundary is reported as such,
    where one plain decode of the whole payload names CPython's "invalid continuation byte".
    """
    stream = serialize(data.draw(plain_streams()))
    chunks = chunked(data.draw, stream)
    assert run_asgiws(chunks, FrameCodec())[0] == run_asgiws([stream], FrameCodec())[0]
