"""The frame codec's vocabulary: the events it returns, the opcodes and close codes of RFC 6455,
and the close-code rules, each written once. :mod:`asgiws.frames` re-exports all of it."""

from __future__ import annotations

import dataclasses
import enum
from typing import Final

# -- events ----------------------------------------------------------------------------------
# Not frozen: frozen=True makes __init__ assign through object.__setattr__, about 0.3 us more
# per event (a fifth of a whole echo), and nothing mutates an event. Hashed by value, as before.


@dataclasses.dataclass(slots=True, unsafe_hash=True)
class Message:
    """A complete message: ``str`` for a text message, ``bytes`` for a binary one."""

    data: str | bytes


@dataclasses.dataclass(slots=True, unsafe_hash=True)
class Ping:
    payload: bytes


@dataclasses.dataclass(slots=True, unsafe_hash=True)
class Pong:
    payload: bytes


@dataclasses.dataclass(slots=True, unsafe_hash=True)
class CloseReceived:
    """The peer's Close frame. ``code`` is 1005 when the frame had no payload (RFC 6455 §7.1.5)."""

    code: int
    reason: str


@dataclasses.dataclass(slots=True, unsafe_hash=True)
class ProtocolFailure:
    """The peer broke the protocol; ``code`` is the close code to fail the connection with."""

    code: int
    reason: str


Event = Message | Ping | Pong | CloseReceived | ProtocolFailure

# -- opcodes and close codes -----------------------------------------------------------------


class Opcode(enum.IntEnum):
    """RFC 6455 §5.2 opcodes; 0x3-0x7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """The close codes of RFC 6455 §7.4.1 and the IANA "WebSocket Close Code Number Registry".

    1004 is "Reserved" in both, with no name: see :func:`is_valid_close_code`.
    """

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


# Plain ints for the hot path and for the events (an app sees an int code, as before).
OP_CONTINUATION: Final = Opcode.CONTINUATION.value
OP_TEXT: Final = Opcode.TEXT.value
OP_BINARY: Final = Opcode.BINARY.value
OP_CLOSE: Final = Opcode.CLOSE.value
OP_PING: Final = Opcode.PING.value
OP_PONG: Final = Opcode.PONG.value
_CONTROL_LIKE: Final = 0x8  # opcodes 0x8-0xF are control frames (RFC 6455 §5.5)

PROTOCOL_ERROR: Final = CloseCode.PROTOCOL_ERROR.value
INVALID_DATA: Final = CloseCode.INVALID_DATA.value
MESSAGE_TOO_BIG: Final = CloseCode.MESSAGE_TOO_BIG.value
NO_STATUS_RCVD: Final = CloseCode.NO_STATUS_RCVD.value

FIN: Final = 0x80
# RFC 6455 §5.5: all control frames MUST have a payload length of 125 bytes or less.
MAX_CONTROL_PAYLOAD: Final = 125
# RFC 6455 §5.5.1: a Close payload is a 2-byte code, then the reason: 123 bytes of UTF-8 at most.
MAX_CLOSE_REASON: Final = MAX_CONTROL_PAYLOAD - 2

# -- the close-code rules, each written once -------------------------------------------------
#
# RFC 6455 §7.4.1 defines 1000-1003 and 1007-1011 for use in a Close frame; 1004 is reserved
# ("the specific meaning might be defined in the future"), and 1005, 1006 and 1015 MUST NOT be
# sent in one. §7.4.2: 0-999 are unused, 1000-2999 are reserved for the
# RFC and its registered extensions, 3000-4999 are for libraries, frameworks and applications.
# Autobahn|Testsuite 25.10.1 expects a clean close for 1000-1003, 1007-1011 and 3000-4999
# (cases 7.7.*) and a protocol error for 0, 999, 1004, 1005, 1006, 1016, 1100, 2000 and 2999
# (cases 7.9.*); it tests neither 1012-1014 nor 1015.
#
# Received: 1012 (Service Restart), 1013 (Try Again Later) and 1014 (Bad Gateway) are valid.
# They are registered in the IANA registry under §7.4.2's "registered extensions" rule,
# browsers send and accept them, and this server itself sends 1012 on a restart
# (Config.ws_shutdown_code), so refusing them from a peer would be inconsistent. 1004 is
# invalid: reserved, with no meaning defined, as Autobahn 7.9.x expects (1002). 1015 stays
# invalid (§7.4.1 forbids it on the wire), and so does the rest of 1016-2999, which nothing
# has registered. Codes of 5000 and up are undefined: invalid.
#
# Sent: 1000-4999 except 1004, 1005, 1006 and 1015. 1005, 1006 and 1015 because §7.4.1 says
# MUST NOT; 1004 because it is reserved and a peer (this server included) fails the
# connection on it, so an app that sends it gets an error at once rather than a 1002 back.
# The unregistered 1016-2999 stay sendable, as they always were here: the app decides.
_VALID_RFC_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
_UNSENDABLE_CLOSE_CODES: Final = frozenset({1004, 1005, 1006, 1015})


def is_valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a Close frame (see the decision above)."""
    return code in _VALID_RFC_CLOSE_CODES or 3000 <= code <= 4999


def is_sendable_close_code(code: int) -> bool:
    """Whether we may send ``code`` in a Close frame (see the decision above)."""
    return 1000 <= code <= 4999 and code not in _UNSENDABLE_CLOSE_CODES


def check_close(code: int, reason: str = "") -> bytes:
    """The payload of a Close frame we send: ``code`` then ``reason`` in UTF-8 (RFC 6455 §5.5.1).

    Raises ValueError for a code that may not be sent (see the decision above) and for a
    reason over MAX_CLOSE_REASON bytes of UTF-8.
    """
    if not is_sendable_close_code(code):
        raise ValueError(
            f"invalid close code {code}: it may not be sent in a Close frame; "
            "use 1000-4999 except 1004, 1005, 1006 and 1015 (RFC 6455 §7.4)"
        )
    encoded = reason.encode()
    if len(encoded) > MAX_CLOSE_REASON:
        raise ValueError(
            f"close reason is {len(encoded)} bytes of UTF-8; the limit is {MAX_CLOSE_REASON}"
        )
    return code.to_bytes(2, "big") + encoded
