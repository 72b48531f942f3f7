"""The pure parts of benchmarks/instructions.py (the valgrind runs themselves are not tests)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytestmark = pytest.mark.tooling
instructions = importlib.import_module("benchmarks.instructions")


def test_the_total_is_read_from_a_callgrind_file() -> None:
    text = b"# callgrind format\nversion: 1\ncmd: python\nevents: Ir\nsummary: 770145463\n"
    assert instructions.callgrind_total(text) == 770145463
    assert instructions.callgrind_total(b"events: Ir\ntotals: 12\n") == 12
    with pytest.raises(ValueError, match="no 'summary:' or 'totals:' line"):
        instructions.callgrind_total(b"events: Ir\n")


def test_arguments() -> None:
    args = instructions.parse_args(["--echoes", "10", "20", "--json"])
    assert (tuple(args.echoes), tuple(args.handshakes), args.json) == ((10, 20), (100, 600), True)


@pytest.mark.parametrize("pair", [["20", "10"], ["0", "5"], ["5", "5"]])
def test_small_must_be_below_large(pair: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        instructions.parse_args(["--handshakes", *pair])
    assert "--handshakes: need 0 < SMALL < LARGE" in capsys.readouterr().err


def test_the_client_frames_are_masked_rfc_frames() -> None:
    frame = instructions.ECHO_FRAME
    assert frame[:2] == bytes([0x81, 0x80 | 32]) and frame[2:6] == instructions.MASK
    unmasked = bytes(b ^ frame[2 + i % 4] for i, b in enumerate(frame[6:]))
    assert unmasked == instructions.PAYLOAD
