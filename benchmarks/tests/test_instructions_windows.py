"""instructions.py's compressed and fanout windows: their options, the permessage-deflate and
fanout clients, the report, and one short real run under valgrind.

The clients run against a real asgiws on 127.0.0.1 with instructions.py's own command line
(compression allowed, as `--compressed` starts it; and once with every message compressed,
so that the client's inflating path runs too). The last test runs the whole tool under
callgrind with small windows (50 compressed echoes, 10 messages to 5 subscribers); it is
skipped where valgrind is not installed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
instructions = importlib.import_module("benchmarks.instructions")
client = importlib.import_module("benchmarks.instructions_client")
servers = importlib.import_module("benchmarks.servers")
processes = importlib.import_module("benchmarks.tests.processes")
wsload = importlib.import_module("benchmarks.wsload")

pytestmark = pytest.mark.tooling


# ---- command line ------------------------------------------------------------------------


def test_the_new_windows_are_off_by_default() -> None:
    args = instructions.parse_args([])
    assert (args.compressed, args.compressed_connections, args.compressed_size) == (0, 10, 32)
    assert (args.fanout, args.fanout_subscribers, args.warmup_publishes) == (0, 100, 5)


def test_the_new_windows_counts() -> None:
    args = instructions.parse_args(
        [
            "--compressed", "2,000", "--compressed-connections", "4", "--fanout", "200",
            "--fanout-subscribers", "50", "--warmup-publishes", "3",
        ]
    )  # fmt: skip
    assert (args.compressed, args.compressed_connections) == (2_000, 4)
    assert (args.fanout, args.fanout_subscribers, args.warmup_publishes) == (200, 50, 3)
    assert instructions.parse_args(["--compressed-size", "4,096"]).compressed_size == 4096
    assert instructions.parse_args(["--compressed-size", "33"]).compressed_size == 33


@pytest.mark.parametrize(
    "argv",
    [
        ["--compressed", "-1"],
        ["--fanout", "many"],
        ["--compressed", "5", "--compressed-connections", "10"],
        ["--compressed-connections", "1001", "--compressed", "5000"],
        ["--fanout-subscribers", "1001", "--fanout", "5"],
        ["--fanout-subscribers", "0"],
        ["--warmup-publishes", "0"],
        ["--compressed-size", "0"],
        ["--compressed-size", "31"],  # 32 is the short messages; wsload's start at 33
        ["--compressed-size", "4097"],  # wsload pre-masks larger bodies, from a pool of 4
        ["--server", "uvicorn-sansio", "--compressed", "10"],  # asgiws's windows only
        ["--server", "uvicorn-sansio", "--fanout", "10"],
    ],
)
def test_bad_window_arguments_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        instructions.parse_args(argv)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_deflate_drops_only_the_suites_compression_off_flag() -> None:
    plain = instructions.server_argv("/py", 1234)
    allowed = instructions.server_argv("/py", 1234, deflate=True)
    assert "--no-ws-per-message-deflate" in plain
    assert [part for part in plain if part != "--no-ws-per-message-deflate"] == allowed
    assert allowed == [
        *instructions._with_copied_app(servers.SERVERS["asgiws"].argv("/py", 1234, True)),
        *plain[len(servers.SERVERS["asgiws"].argv("/py", 1234)) :],
    ]
    target = instructions.Target(REPO, "/py", "abc1234", "")
    assert target.argv(1234, deflate=True) == allowed and target.argv(1234) == plain


# ---- the clients' pure parts -------------------------------------------------------------


def test_a_compressed_frame_sets_rsv1() -> None:
    frame = client.client_frame(client.OP_TEXT, b"abc", random.Random(1), rsv1=True)
    assert frame[0] == 0x80 | 0x40 | client.OP_TEXT and frame[1] & 0x80
    plain = client.client_frame(client.OP_TEXT, b"abc", random.Random(1))
    assert plain[0] == 0x81 and plain[1:] == frame[1:]


def test_rsv1_is_read_and_refused_where_nothing_was_negotiated() -> None:
    buffer = bytearray(b"\xc1\x03abc\x81\x02de")
    assert list(client.parse_frames_rsv1(buffer)) == [(0x1, True, b"abc"), (0x1, False, b"de")]
    with pytest.raises(client.Failed, match="RSV1"):
        list(client.parse_frames(bytearray(b"\xc1\x03abc")))
    with pytest.raises(client.Failed, match="RSV2 or RSV3"):
        list(client.parse_frames_rsv1(bytearray(b"\xa1\x03abc")))


def test_the_upgrade_offers_deflate_and_wants_it_answered() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = client.upgrade_request(8000, key, "/x", client.BROWSER_DEFLATE_OFFER)
    assert request.startswith(b"GET /x HTTP/1.1\r\n") and request.endswith(b"\r\n\r\n")
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" in (
        request
    )
    assert b"Extensions" not in client.upgrade_request(8000, key)
    accept = base64.b64encode(hashlib.sha1(key.encode() + client.GUID).digest()).decode()
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12"
    ).encode()
    answer = client.check_upgrade(head, key, offered=True)
    assert answer == "permessage-deflate; client_max_window_bits=12"
    with pytest.raises(client.Failed, match="never offered"):
        client.check_upgrade(head, key)


@pytest.mark.parametrize(
    ("answer", "params"),
    [
        ("permessage-deflate", (15, False)),
        ("permessage-deflate; client_max_window_bits=12", (12, False)),
        ("permessage-deflate; client_max_window_bits=8", (9, False)),
        ('permessage-deflate; client_max_window_bits="10"', (10, False)),
        ("permessage-deflate; server_no_context_takeover; server_max_window_bits=10", (15, False)),
        ("permessage-deflate; client_no_context_takeover", (15, True)),
    ],
)
def test_the_deflate_answer_sets_the_clients_compressor(
    answer: str, params: tuple[int, bool]
) -> None:
    found = client.deflate_answer(answer)
    assert (found.client_window_bits, found.client_no_context_takeover) == params


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; client_max_window_bits",  # a value is required in an answer
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; unknown=1",
    ],
)
def test_answers_the_client_cannot_follow_fail(answer: str | None) -> None:
    with pytest.raises(client.Failed):
        client.deflate_answer(answer)


def test_json_payloads_are_32_bytes_and_the_same_however_connections_interleave() -> None:
    first, second = client.JsonPayloads(7), client.JsonPayloads(7)
    in_order = [first(c, n) for c in range(3) for n in range(100)]
    interleaved = {(c, n): second(c, n) for n in range(100) for c in range(3)}
    assert in_order == [interleaved[(c, n)] for c in range(3) for n in range(100)]
    assert all(len(p) == client.SIZE and p.isascii() for p in in_order)
    message = json.loads(in_order[5])
    assert message["seq"] == 5 and message["text"].isalpha()
    assert len(set(in_order)) == 300
    assert client.JsonPayloads(8)(0, 0) != in_order[0]
    assert len(client.json_payload(10**9, random.Random(1))) == client.SIZE


@pytest.mark.parametrize("size", [33, 100, 256, 1000, 4096])
def test_wsload_json_payloads_are_json_objects_of_the_size_stamped_per_message(size: int) -> None:
    payloads = client.WsloadJsonPayloads(size)
    messages = [payloads(c, n) for c in range(3) for n in range(300)]
    assert all(len(m) == size for m in messages) and len(set(messages)) == len(messages)
    first = json.loads(payloads(2, 0x1234))
    assert first["seq"] == "0000123400000002"
    if size >= 256:  # an array of items, as compressed-4k sends
        assert {"id", "ts", "user", "kind", "text", "tags", "score", "read"} <= set(
            first["items"][0]
        )
    # The body is the pooled one wsload picks: (counter + 7 * connection) % 256.
    assert payloads(1, 249)[24:] == payloads(0, 256)[24:] == payloads.bodies[0][24:]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
@pytest.mark.parametrize("size", [32, 255, 256, 4096])
def test_wsload_json_bodies_are_what_wsload_sends(size: int) -> None:
    binary = wsload.build()
    assert binary is not None
    argv = [str(binary), "--print-json", "--size", str(size)]
    printed = subprocess.run(argv, capture_output=True, timeout=60, check=True).stdout
    assert printed.split(b"\n")[:-1] == client.wsload_json_bodies(size)


def test_fanout_payloads_carry_the_sequence_number() -> None:
    payloads = [client.fanout_payload(seq) for seq in (0, 7, 1_234_567)]
    assert all(len(p) == client.SIZE and p.isascii() for p in payloads)
    assert [int(p[:10]) for p in payloads] == [0, 7, 1_234_567]


# ---- the clients against real servers -------------------------------------------------------


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    app_dir = tmp_path_factory.mktemp("app")
    shutil.copyfile(REPO / "benchmarks" / "apps.py", app_dir / f"{instructions.APP_MODULE}.py")
    return {**os.environ, "PYTHONPATH": f"{app_dir}{os.pathsep}{REPO}"}


@pytest.fixture(scope="module")
def deflate_port(app_env: dict[str, str]) -> Iterator[int]:
    """asgiws as `--compressed` starts it, without valgrind."""
    port = servers.free_port()
    argv = instructions.server_argv(sys.executable, port, deflate=True)
    with processes.listening(argv, port, app_env):
        yield port


def test_compressed_echoes_against_asgiws(deflate_port: int) -> None:
    rng, deadline = random.Random(1), client.Deadline(60)
    connections = [client.DeflateConnection(i, deflate_port, rng, deadline) for i in range(3)]
    assert connections[0].params == client.DeflateParams(12, False)  # asgiws's default
    payloads = client.JsonPayloads(3)
    assert client.echo_phase(list(connections), [20, 0, 5], 0, payloads) == 25
    # Under --ws-deflate-min-size (1 KiB) asgiws answers uncompressed.
    assert [(c.compressed_received, c.plain_received) for c in connections] == [
        (0, 20), (0, 0), (0, 5),
    ]  # fmt: skip
    for conn in connections:
        conn.close()


def test_4k_compressed_echoes_come_back_compressed(deflate_port: int) -> None:
    rng, deadline = random.Random(5), client.Deadline(60)
    connections = [client.DeflateConnection(i, deflate_port, rng, deadline) for i in range(2)]
    payloads = client.WsloadJsonPayloads(4096)
    assert client.echo_phase(list(connections), [12, 7], 0, payloads) == 19
    # Over --ws-deflate-min-size (1 KiB): asgiws compresses every answer.
    assert [(c.compressed_received, c.plain_received) for c in connections] == [(12, 0), (7, 0)]
    for conn in connections:
        conn.close()


def test_compressed_answers_are_inflated(app_env: dict[str, str]) -> None:
    port = servers.free_port()
    argv = [*instructions.server_argv(sys.executable, port, deflate=True)]
    argv += ["--ws-deflate-min-size", "0"]  # every message compressed
    with processes.listening(argv, port, app_env):
        rng, deadline = random.Random(2), client.Deadline(60)
        connections = [client.DeflateConnection(i, port, rng, deadline) for i in range(2)]
        assert client.echo_phase(list(connections), [15, 10], 0, client.JsonPayloads(4)) == 25
        assert [(c.compressed_received, c.plain_received) for c in connections] == [
            (15, 0), (10, 0),
        ]  # fmt: skip
        for conn in connections:
            conn.close()


def test_what_the_client_sends_is_one_raw_deflate_stream_with_its_tail_left_out() -> None:
    conn = client.DeflateConnection.__new__(client.DeflateConnection)
    conn.negotiated("permessage-deflate; client_max_window_bits=12")
    sent: list[bytes] = []

    class Sock:
        def settimeout(self, timeout: float) -> None:
            pass

        def sendall(self, data: bytes) -> None:
            sent.append(data)

    conn.sock, conn.deadline, conn.rng = Sock(), client.Deadline(10), random.Random(1)
    messages = [client.JsonPayloads(1)(0, n) for n in range(5)]
    for message in messages:
        conn.send_text(message)
    inflater = zlib.decompressobj(-12)
    for frame, message in zip(sent, messages, strict=True):
        assert frame[0] == 0xC1  # final, RSV1, text
        body = bytes(b ^ frame[2 + i % 4] for i, b in enumerate(frame[6:]))
        assert inflater.decompress(body + client.DEFLATE_TAIL) == message
    assert len(sent[-1]) < len(sent[0])  # the kept context makes later messages shorter


def test_a_server_that_does_not_negotiate_deflate_fails_the_connection(
    app_env: dict[str, str],
) -> None:
    port = servers.free_port()
    argv = instructions.server_argv(sys.executable, port)  # the suite's: compression off
    with (
        processes.listening(argv, port, app_env),
        pytest.raises(client.Failed, match="permessage-deflate not chosen"),
    ):
        client.DeflateConnection(0, port, random.Random(1), client.Deadline(30))


def test_fanout_delivers_every_message_to_every_subscriber(deflate_port: int) -> None:
    rng, deadline = random.Random(3), client.Deadline(60)
    subscribers = [client.subscribe(i, deflate_port, rng, deadline) for i in range(5)]
    publisher = client.Connection(5, deflate_port, rng, deadline, client.FANOUT_PUB)
    assert client.fanout_phase(publisher, subscribers, 0, 2) == 10
    assert client.fanout_phase(publisher, subscribers, 2, 10) == 50
    for conn in [publisher, *subscribers]:
        conn.close()


def test_a_copy_of_another_message_fails_the_fanout_phase(deflate_port: int) -> None:
    rng, deadline = random.Random(4), client.Deadline(60)
    subscribers = [client.subscribe(i, deflate_port, rng, deadline) for i in range(2)]
    publisher = client.Connection(2, deflate_port, rng, deadline, client.FANOUT_PUB)
    try:
        assert client.fanout_phase(publisher, subscribers[:1], 0, 1) == 1  # 1's copy unread
        with pytest.raises(client.Failed, match="subscriber 1: got 0x1 b'0000000000"):
            client.fanout_phase(publisher, subscribers, 1, 1)
    finally:
        for conn in [publisher, *subscribers]:
            conn.sock.close()


# ---- the report ----------------------------------------------------------------------------


def _result(commit: str, compressed: int | None, delivery: int | None) -> Any:
    return instructions.Result(
        tree="/t", commit=commit, server="asgiws", versions="", python="/py",
        asgiws_file="/t/asgiws/__init__.py", run=1, echoes=1_000, connections=10,
        echo_instructions=31_000_000, echo_seconds=1.0, handshakes=100,
        handshake_instructions=28_000_000, handshake_seconds=1.0, requests=0,
        http_connections=10, idle_instructions=50_000, idle_seconds=0.5, seconds=10.0,
        **({} if compressed is None else {
            "compressed": 2_000, "compressed_connections": 10, "compressed_replies": 0,
            "compressed_instructions": compressed * 2_000, "compressed_seconds": 2.0,
        }),
        **({} if delivery is None else {
            "fanout": 200, "fanout_subscribers": 100,
            "fanout_instructions": delivery * 20_000, "fanout_seconds": 3.0,
        }),
    )  # fmt: skip


def test_the_report_gives_each_new_window_and_compares_trees() -> None:
    results = [_result("aaaaaaa", 50_000, 15_000), _result("bbbbbbb", 45_000, 16_500)]
    text = "\n".join(instructions.summary_lines(results))
    assert (
        "  compressed: 50,000 instructions per message (2,000 permessage-deflate echoes of 32 "
        "bytes over 10 connections, 0 answered compressed, 100,000,000 in all, 2 s)"
    ) in text
    assert (
        "  fanout: 15,000 instructions per delivery, 1,500,000 per published message "
        "(200 messages to 100 subscribers, 300,000,000 in all, 3 s)"
    ) in text
    assert "compressed: bbbbbbb vs aaaaaaa: 45,000 vs 50,000 (-10.00 %)" in text
    assert "fanout: bbbbbbb vs aaaaaaa: 16,500 vs 15,000 (+10.00 %)" in text


def test_windows_not_run_are_left_out_and_none_in_json() -> None:
    result = _result("aaaaaaa", None, None)
    text = "\n".join(instructions.result_lines(result))
    assert "compressed" not in text and "fanout" not in text
    row = json.loads(json.dumps(dataclasses.asdict(result)))
    assert row["compressed_per_message"] is None and row["fanout_per_delivery"] is None
    assert row["fanout_per_message"] is None and row["compressed"] == row["fanout"] == 0
    ran = dataclasses.asdict(_result("aaaaaaa", 50_000, 15_000))
    assert (ran["compressed_per_message"], ran["fanout_per_delivery"]) == (50_000, 15_000)
    assert ran["fanout_per_message"] == 1_500_000


# ---- one short real run under callgrind ---------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
    reason="valgrind is not installed",
)
def test_a_short_run_under_callgrind_counts_both_windows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(instructions, "IDLE", 0.5)  # the idle window is not under test
    argv = [
        "--echoes", "2", "--connections", "1", "--warmup-echoes", "1", "--handshakes", "1",
        "--warmup-handshakes", "1", "--requests", "0", "--compressed", "50",
        "--compressed-connections", "2", "--fanout", "10", "--fanout-subscribers", "5",
        "--warmup-publishes", "2", "--python", sys.executable, "--tree", str(REPO),
        "--timeout", "300", "--json",
    ]  # fmt: skip
    try:
        assert instructions.main(argv) == 0
    finally:
        # main() sets SIGTERM to raise KeyboardInterrupt and pins this process to a core.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert (row["compressed"], row["compressed_connections"], row["compressed_replies"]) == (
        50, 2, 0,
    )  # fmt: skip
    assert (row["fanout"], row["fanout_subscribers"], row["compressed_size"]) == (10, 5, 32)
    # What one 32-byte message costs a server under callgrind, within wide bounds.
    assert 5_000 < row["compressed_per_message"] < 1_000_000
    assert 1_000 < row["fanout_per_delivery"] < 1_000_000
    assert row["fanout_per_message"] == pytest.approx(5 * row["fanout_per_delivery"])
