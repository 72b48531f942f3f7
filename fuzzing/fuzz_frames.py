"""Fuzz target: the frame codec (asgiws.frames), with and without permessage-deflate.

The first two bytes choose the setting: compression on or off and its parameters, ``max_size``,
and how the rest is cut into reads (large binary frames are then read in place through
``read_target`` / ``received_into``, as the I/O layer does). The rest is the client's byte
stream. Then:

- nothing raises: every failure of the peer is an event (``ProtocolFailure`` with 1002, 1007 or
  1009), and nothing comes after it or after a ``CloseReceived``, whose code is a valid one;
- memory stays bounded: no message over ``max_size`` (after decompression), the buffered bytes
  never more than a frame header and a control frame, a message being reassembled never past
  ``max_size``;
- what the server encodes, masked as a client would send it, decodes to the same messages
  through a second codec with the same compression; encoding refuses only with ValueError.

    python fuzzing/fuzz_frames.py fuzzing/corpus/frames -max_total_time=3600 -rss_limit_mb=1024
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import instrumented, main

with instrumented(__name__):
    from asgiws.deflate import PerMessageDeflate
    from asgiws.events import is_valid_close_code
    from asgiws.frames import (
        MAX_CONTROL_PAYLOAD,
        CloseReceived,
        Event,
        FrameCodec,
        Message,
        Ping,
        Pong,
        ProtocolFailure,
    )

MAX_SIZES = (1, 125, 4096, 1 << 20)
WINDOW_BITS = (9, 12, 15, 15)
# The most a codec buffers between reads: a 14-byte header and a 125-byte control payload.
MAX_BUFFERED = 14 + MAX_CONTROL_PAYLOAD
FAILURE_CODES = (1002, 1007, 1009)


def make_codec(setting: int) -> FrameCodec:
    deflate = None
    if setting & 1:
        deflate = PerMessageDeflate(
            client_no_context_takeover=bool(setting & 2),
            server_no_context_takeover=bool(setting & 2),
            client_max_window_bits=15,
            server_max_window_bits=WINDOW_BITS[(setting >> 2) & 3],
        )
    return FrameCodec(MAX_SIZES[(setting >> 4) & 3], deflate)


def reads(data: bytes, cut: int) -> list[bytes]:
    """``data`` in reads of 1 to 256 bytes, varying after ``cut``; all at once for 0."""
    if cut == 0:
        return [data]
    out, pos, size = [], 0, cut
    while pos < len(data):
        out.append(data[pos : pos + size])
        pos += size
        size = size * 7 % 256 + 1
    return out


def check_events(codec: FrameCodec, events: list[Event], ended: bool) -> bool:
    """Check what one read produced; True once the stream has ended (a Close or a failure)."""
    for event in events:
        assert not ended, f"{event!r} after the end of the stream"
        if type(event) is Message:
            data = event.data
            size = len(data.encode()) if isinstance(data, str) else len(data)
            assert size <= codec.max_size, f"a {size}-byte message over max_size {codec.max_size}"
        elif type(event) is Ping or type(event) is Pong:
            assert len(event.payload) <= MAX_CONTROL_PAYLOAD
        elif type(event) is CloseReceived:
            assert is_valid_close_code(event.code) or event.code == 1005, event
            ended = True
        elif type(event) is ProtocolFailure:
            assert event.code in FAILURE_CODES and event.reason, event
            ended = True
        else:
            raise AssertionError(f"unknown event {event!r}")
    assert len(codec._buffer) <= MAX_BUFFERED, len(codec._buffer)
    message = codec._message
    assert message is None or message.size <= codec.max_size
    return ended


def decode(setting: int, cut: int, stream: bytes) -> None:
    codec = make_codec(setting)
    ended = False
    for chunk in reads(stream, cut):
        while chunk:
            target = codec.read_target()
            if target is None:
                events = codec.receive_data(chunk)
                chunk = b""
            else:
                # A large binary frame, read in place as the I/O layer reads it.
                n = min(len(target), len(chunk))
                target[:n] = chunk[:n]
                chunk = chunk[n:]
                events = codec.received_into(n)
            ended = check_events(codec, events, ended)


def masked(frame: bytes, key: bytes) -> bytes:
    """A server frame as a client would send it: the mask bit, the key, the payload masked."""
    length = frame[1] & 0x7F
    start = 2 + {126: 2, 127: 8}.get(length, 0)
    payload = frame[start:]
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    body = bytes(a ^ b for a, b in zip(payload, repeated, strict=True))
    return frame[:1] + bytes((frame[1] | 0x80,)) + frame[2:start] + key + body


def round_trip(setting: int, data: bytes) -> None:
    """The server's encoding of ``data`` (cut into up to three messages, text where it is
    UTF-8) read back by a codec with the same compression."""
    sender = make_codec(setting)
    receiver = make_codec(setting | 0x30)  # max_size 1 MiB: these messages fit
    sent: list[str | bytes] = []
    for part in (data[: len(data) // 3], data[len(data) // 3 :], b""):
        message: str | bytes = part
        with contextlib.suppress(UnicodeDecodeError):
            message = part.decode()
        sent.append(message)
    got: list[str | bytes] = []
    for message in sent:
        for event in receiver.receive_data(
            masked(sender.encode_message(message), b"\x9d\x1a\x05\xe3")
        ):
            assert type(event) is Message, event
            got.append(event.data)
    assert got == sent
    for encode in (sender.encode_ping, sender.encode_pong):
        try:
            frame = encode(data)
        except ValueError:
            assert len(data) > MAX_CONTROL_PAYLOAD
        else:
            assert frame[2:] == data
    code = int.from_bytes(data[:2].rjust(2, b"\x00"), "big")
    reason = data[2:].decode("utf-8", "replace")
    try:
        frame = sender.encode_close(code, reason)
    except ValueError:
        pass
    else:
        events = receiver.receive_data(masked(frame, b"\x00\x01\x02\x03"))
        if is_valid_close_code(code):
            assert events == [CloseReceived(code, reason)], events
        else:  # sendable by an app, but not a code a peer may send (1016-2999)
            assert events == [ProtocolFailure(1002, f"invalid close code {code}")], events


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    setting, cut, stream = data[0], data[1], data[2:]
    decode(setting, cut, stream)
    if cut & 1:
        round_trip(setting, stream[:300])


if __name__ == "__main__":
    main(test_one_input, "frames")
