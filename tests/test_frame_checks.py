"""asgiws.frame_checks: the header rules of a received frame and the events of control frames."""

from __future__ import annotations

import pytest

from asgiws.events import CloseReceived, Ping, Pong, ProtocolFailure
from asgiws.frame_checks import MASK_BIT, RSV1, UNCHECKED, check_header, control_event


def test_unchecked_are_exactly_the_plain_data_frames() -> None:
    # FIN or not, text or binary, no RSV bit: what passes every check at any length.
    assert [first for first in range(256) if UNCHECKED[first]] == [0x01, 0x02, 0x81, 0x82]


@pytest.mark.parametrize(
    ("first", "second", "message_opcode", "extended", "reason"),
    [
        (0x81, 0x05, 0, False, "unmasked frame from the client (opcode 0x1)"),
        (0x83, MASK_BIT, 0, False, "reserved opcode 0x3"),
        (0x8B, MASK_BIT, 0, False, "reserved opcode 0xb"),
        (0x81 | RSV1, MASK_BIT, 0, False, "reserved bits set without an extension for them: RSV1"),
        (0x80 | RSV1, MASK_BIT, 1, True, "RSV1 set on a continuation frame"),
        (0x89 | RSV1, MASK_BIT, 0, True, "RSV1 set on a control frame"),
        (0x09, MASK_BIT, 0, False, "fragmented control frame: FIN=0 on opcode 0x9"),
        (0x89, MASK_BIT | 126, 0, False, "control frame payload over 125 bytes"),
        (0x80, MASK_BIT, 0, False, "continuation frame without a message to continue"),
        (0x82, MASK_BIT, 1, False, "new binary frame while a fragmented message is open"),
    ],
)
def test_each_header_rule_names_its_failure(
    first: int, second: int, message_opcode: int, extended: bool, reason: str
) -> None:
    failure = check_header(first, second, message_opcode, extended)
    assert isinstance(failure, ProtocolFailure)
    assert failure.code == 1002 and failure.reason.startswith(reason), failure.reason


def test_legal_headers_pass() -> None:
    assert check_header(0x81 | RSV1, MASK_BIT | 10, 0, True) is None  # compressed first frame
    assert check_header(0x80, MASK_BIT | 10, 1, False) is None  # the last continuation
    assert check_header(0x89, MASK_BIT | 125, 2, False) is None  # a ping amid a message


def test_control_events() -> None:
    assert control_event(0x9, b"hi") == Ping(b"hi")
    assert control_event(0xA, b"") == Pong(b"")
    assert control_event(0x8, b"") == CloseReceived(1005, "")
    assert control_event(0x8, b"\x03\xe8bye") == CloseReceived(1000, "bye")
    assert control_event(0x8, b"\x03") == ProtocolFailure(1002, "close frame with a 1-byte payload")
    assert control_event(0x8, b"\x03\xed") == ProtocolFailure(1002, "invalid close code 1005")
    failure = control_event(0x8, b"\x03\xe8\xff")
    assert isinstance(failure, ProtocolFailure) and failure.code == 1007
