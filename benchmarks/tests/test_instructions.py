"""benchmarks/instructions.py's pure parts: its command line, callgrind's files, its client.

No valgrind here: the callgrind output is a small fixture file shaped like a real dump taken
after `callgrind_control --zero` (its `totals:` larger than its `summary:`, as real ones are).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
instructions = importlib.import_module("benchmarks.instructions")
servers = importlib.import_module("benchmarks.servers")

pytestmark = pytest.mark.tooling
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "callgrind.out"


# ---- command line ------------------------------------------------------------------------


def test_defaults() -> None:
    args = instructions.parse_args([])
    assert (args.echoes, args.connections, args.handshakes) == (20_000, 10, 2_000)
    assert (args.repeat, args.json, args.python, args.keep) == (1, False, None, None)
    assert args.tree == [REPO]  # this checkout when no --tree is given


def test_counts_trees_and_flags() -> None:
    args = instructions.parse_args(
        [
            "--echoes", "50,000", "--handshakes", "1_000", "--connections", "4",
            "--tree", "/a", "--tree", "/b", "--python", "py", "--repeat", "2", "--json",
        ]
    )  # fmt: skip
    assert (args.echoes, args.handshakes, args.connections) == (50_000, 1_000, 4)
    assert args.tree == [Path("/a"), Path("/b")]
    assert (args.python, args.repeat, args.json) == ("py", 2, True)


@pytest.mark.parametrize(
    "argv",
    [
        ["--echoes", "0"],
        ["--handshakes", "-3"],
        ["--echoes", "many"],
        ["--echoes", "5", "--connections", "10"],  # fewer echoes than connections
        ["--connections", "1001", "--echoes", "5000"],
        ["--timeout", "0"],
        ["--unknown"],
    ],
)
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        instructions.parse_args(argv)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


# ---- callgrind's output ------------------------------------------------------------------


def test_counts_come_from_the_summary_line() -> None:
    text = FIXTURE.read_text()
    assert instructions.parse_counts(text) == {"Ir": 1_234_567, "Dr": 89}
    assert instructions.dump_trigger(text) == "dump echo"


def test_totals_stand_in_when_there_is_no_summary() -> None:
    text = "events: Ir\ntotals: 77\n"
    assert instructions.parse_counts(text) == {"Ir": 77}


def test_trailing_zero_counts_may_be_left_out() -> None:
    assert instructions.parse_counts("events: Ir Dr Dw\nsummary: 5\n") == {
        "Ir": 5,
        "Dr": 0,
        "Dw": 0,
    }


@pytest.mark.parametrize(
    "text",
    [
        "",
        "events: Ir\n",  # no counts
        "summary: 5\n",  # no events
        "events: Ir\nsummary: 5 6\n",  # more counts than events
        "events: Ir\nsummary: lots\n",
    ],
)
def test_files_that_are_not_callgrind_output_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        instructions.parse_counts(text)


def test_trigger_is_none_when_the_file_does_not_say() -> None:
    assert instructions.dump_trigger("events: Ir\nsummary: 1\n") is None


# ---- the server's command line ---------------------------------------------------------------


def test_server_runs_as_in_the_suite_with_the_copied_app_and_far_timers() -> None:
    suite = servers.SERVERS["asgiws"].argv("/py", 1234)
    mine = instructions.server_argv("/py", 1234)
    app = mine.index(f"{instructions.APP_MODULE}:echo")
    assert suite[app] == servers.RAW_APP
    assert mine[:app] + mine[app + 1 : len(suite)] == suite[:app] + suite[app + 1 :]
    far = str(instructions.FAR_TIMEOUT)
    assert mine[len(suite) :] == ["--ws-ping-interval", far, "--timeout-handshake", far]
    assert {"--loop", "uvloop", "--no-access-log", "--no-ws-per-message-deflate"} <= set(mine)


# ---- the client's pure parts ---------------------------------------------------------------


def test_spread_splits_evenly() -> None:
    assert instructions.spread(20_000, 10) == [2_000] * 10
    assert instructions.spread(7, 3) == [3, 2, 2]
    assert sum(instructions.spread(12_345, 7)) == 12_345


def test_payloads_are_32_ascii_bytes_unique_per_connection_and_message() -> None:
    seen = {instructions.payload_for(c, n) for c in range(20) for n in range(50)}
    assert len(seen) == 1000
    assert all(len(p) == instructions.SIZE and p.isascii() for p in seen)


def _unmask_client_frame(frame: bytes) -> tuple[int, bytes]:
    assert frame[0] & 0x80 and frame[1] & 0x80  # final, masked
    length, offset = frame[1] & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(frame[2:10], "big"), 10
    key, body = frame[offset : offset + 4], frame[offset + 4 :]
    assert len(body) == length
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


@pytest.mark.parametrize("size", [0, 1, 32, 125, 126, 65_535, 65_536])
def test_client_frames_are_masked_and_unmask_to_the_payload(size: int) -> None:
    payload = bytes(random.Random(size).randbytes(size))
    frame = instructions.client_frame(instructions.OP_TEXT, payload, random.Random(1))
    assert _unmask_client_frame(frame) == (instructions.OP_TEXT, payload)


def test_server_frames_are_parsed_as_they_complete() -> None:
    text = b"\x81\x05hello"
    ping = b"\x89\x04abcd"
    large = b"\x82\x7e\x01\x00" + b"x" * 256
    buffer = bytearray(text + ping + large[:100])
    assert list(instructions.parse_frames(buffer)) == [(0x1, b"hello"), (0x9, b"abcd")]
    assert buffer == large[:100]  # the incomplete frame waits
    buffer += large[100:]
    assert list(instructions.parse_frames(buffer)) == [(0x2, b"x" * 256)]
    assert buffer == b""


@pytest.mark.parametrize("frame", [b"\x81\x85abcdhello", b"\x01\x05hello"])
def test_masked_or_fragmented_server_frames_fail(frame: bytes) -> None:
    with pytest.raises(instructions.Failed):
        list(instructions.parse_frames(bytearray(frame)))


def _response(key: str, **changes: str) -> bytes:
    accept = base64.b64encode(hashlib.sha1(key.encode() + instructions.GUID).digest()).decode()
    fields = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept}
    fields.update(changes)
    lines = ["HTTP/1.1 101 Switching Protocols"]
    lines += [f"{name}: {value}" for name, value in fields.items() if value]
    return "\r\n".join(lines).encode()


def test_upgrade_checks() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = instructions.upgrade_request(8000, key)
    assert request.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n")
    assert f"Sec-WebSocket-Key: {key}\r\n".encode() in request and request.endswith(b"\r\n\r\n")
    instructions.check_upgrade(_response(key), key)
    for bad in (
        _response(key, **{"Sec-WebSocket-Accept": "wrong"}),
        _response(key, Upgrade=""),
        _response(key, Connection="keep-alive"),
        _response(key, **{"Sec-WebSocket-Extensions": "permessage-deflate"}),
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0",
    ):
        with pytest.raises(instructions.Failed):
            instructions.check_upgrade(bad, key)


# ---- the report --------------------------------------------------------------------------------


def _result(commit: str, tree: str, run: int, echo: int, handshake: int) -> object:
    return instructions.Result(
        tree=tree, commit=commit, python="/py", asgiws_file=f"{tree}/asgiws/__init__.py",
        run=run, echoes=1_000, connections=10, echo_instructions=echo * 1_000, handshakes=100,
        handshake_instructions=handshake * 100, echo_seconds=1.0, handshake_seconds=1.0,
        idle_instructions=50_000, idle_seconds=0.5, seconds=10.0,
    )  # fmt: skip


def test_summary_prints_figures_spread_and_change_against_the_first_tree() -> None:
    results = [
        _result("aaaaaaa", "/before", 1, 31_000, 280_000),
        _result("aaaaaaa", "/before", 2, 31_062, 280_000),
        _result("bbbbbbb", "/after", 1, 27_900, 252_000),
    ]
    text = "\n".join(instructions.summary_lines(results))
    assert "echo: 31,000 instructions per message" in text
    assert "handshake: 280,000 per loop" in text
    assert "idle: 100,000 per second" in text
    assert "echo spread over 2 runs of aaaaaaa: 0.20 %" in text
    assert "handshake spread over 2 runs of aaaaaaa: 0.00 %" in text
    assert "echo: bbbbbbb vs aaaaaaa: 27,900 vs 31,031 (-10.09 %)" in text
    assert "handshake: bbbbbbb vs aaaaaaa: 252,000 vs 280,000 (-10.00 %)" in text
