"""What the first two bytes of a received frame may be (RFC 6455 §5.2, §5.4, §5.5, RFC 7692 §6),
and the event a whole control frame makes (§5.5). The rules :class:`asgiws.frames.FrameCodec`
applies to every frame header outside its one-frame fast path; sans-IO, no state."""

from __future__ import annotations

import struct
from typing import Final

from .events import (
    _CONTROL_LIKE,
    FIN,
    INVALID_DATA,
    MAX_CONTROL_PAYLOAD,
    NO_STATUS_RCVD,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PROTOCOL_ERROR,
    CloseReceived,
    Event,
    Ping,
    Pong,
    ProtocolFailure,
    is_valid_close_code,
)

__all__ = ["MASK_BIT", "RSV1", "RSV2", "RSV3", "UNCHECKED", "check_header", "control_event"]

RSV1: Final = 0x40
RSV2: Final = 0x20
RSV3: Final = 0x10
MASK_BIT: Final = 0x80

_unpack_short: Final = struct.Struct("!H").unpack_from


def check_header(
    first: int, second: int, message_opcode: int, extended: bool
) -> ProtocolFailure | None:
    """The checks that the first two bytes of a frame allow (RFC 6455 §5.2, §5.4, §5.5), with
    ``message_opcode`` that of the open fragmented message (0: none) and ``extended`` whether
    permessage-deflate was negotiated."""
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
        if rsv != RSV1 or not extended:
            names = "+".join(
                name for bit, name in ((RSV1, "RSV1"), (RSV2, "RSV2"), (RSV3, "RSV3")) if rsv & bit
            )
            return ProtocolFailure(
                PROTOCOL_ERROR,
                f"reserved bits set without an extension for them: {names} (opcode {opcode:#x})",
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
        if not message_opcode:
            return ProtocolFailure(
                PROTOCOL_ERROR, "continuation frame without a message to continue"
            )
    elif message_opcode:
        kind = "text" if opcode == OP_TEXT else "binary"
        return ProtocolFailure(
            PROTOCOL_ERROR,
            f"new {kind} frame while a fragmented message is open; expected a continuation",
        )
    return None


def control_event(opcode: int, payload: bytes) -> Event:
    """The event of a whole, unmasked control frame (RFC 6455 §5.5)."""
    if opcode == OP_PING:
        return Ping(payload)
    if opcode == OP_PONG:
        return Pong(payload)
    # OP_CLOSE. RFC 6455 §5.5.1: an optional body of a 2-byte code then a UTF-8 reason.
    if not payload:
        return CloseReceived(NO_STATUS_RCVD, "")  # RFC 6455 §7.1.5: no status code -> 1005
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


def _unchecked_first_bytes() -> bytes:
    """For each first byte of a frame, 1 when a masked frame starting with it passes every
    check of :func:`check_header` whatever its length, outside a fragmented message and
    without extensions (the data frames 0x01, 0x02, 0x81 and 0x82). Computed from the checks
    themselves, so that the parsing loop skips the call for them without writing any rule a
    second time (the call costs ~700 instructions per frame)."""
    return bytes(
        all(check_header(first, MASK_BIT | n, 0, False) is None for n in (0, 125, 126, 127))
        for first in range(256)
    )


UNCHECKED: Final = _unchecked_first_bytes()
