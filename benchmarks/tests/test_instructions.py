"""benchmarks/instructions.py and its modules: the command line, callgrind's files, the clients.

No valgrind here: the callgrind output is a small fixture file shaped like a real dump taken
after `callgrind_control --zero` (its `totals:` larger than its `summary:`, as real ones are),
and the clients run against a real asgiws on 127.0.0.1 (the suite's raw app, no callgrind)
or a canned one-connection server for the answers asgiws never gives.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import random
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
instructions = importlib.import_module("benchmarks.instructions")
client = importlib.import_module("benchmarks.instructions_client")
callgrind = importlib.import_module("benchmarks.instructions_callgrind")
servers = importlib.import_module("benchmarks.servers")
processes = importlib.import_module("benchmarks.tests.processes")

pytestmark = pytest.mark.tooling
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "callgrind.out"


# ---- command line ------------------------------------------------------------------------


def test_defaults() -> None:
    args = instructions.parse_args([])
    assert (args.echoes, args.connections, args.handshakes) == (20_000, 10, 2_000)
    assert (args.repeat, args.json, args.python, args.keep) == (1, False, None, None)
    assert args.tree == [REPO]  # this checkout when no --tree is given
    assert (args.requests, args.http_connections, args.warmup_requests) == (5_000, 10, 50)
    assert args.server == ["asgiws"]


def test_peers_and_http_counts() -> None:
    args = instructions.parse_args(
        ["--server", "uvicorn-sansio", "--requests", "2,000", "--http-connections", "4"]
    )
    assert (args.server, args.requests, args.http_connections) == (["uvicorn-sansio"], 2_000, 4)
    both = instructions.parse_args(["--server", "asgiws", "--server", "uvicorn-sansio"])
    assert both.server == ["asgiws", "uvicorn-sansio"]
    assert instructions.parse_args(["--requests", "0"]).requests == 0  # no HTTP windows


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
        ["--requests", "-1"],
        ["--requests", "5", "--http-connections", "10"],  # fewer requests than connections
        ["--server", "hypercorn"],  # not a peer instructions.py knows how to slow its timers
        ["--server", "uvicorn-sansio", "--tree", "/a"],  # --tree is asgiws's
        ["--server", "uvicorn-sansio", "--requests", "0"],  # a peer has only HTTP windows
        ["--server", "uvicorn-sansio", "--metrics"],  # --metrics is asgiws's
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
    assert callgrind.parse_counts(text) == {"Ir": 1_234_567, "Dr": 89}
    assert callgrind.dump_trigger(text) == "dump echo"


def test_totals_stand_in_when_there_is_no_summary() -> None:
    text = "events: Ir\ntotals: 77\n"
    assert callgrind.parse_counts(text) == {"Ir": 77}


def test_trailing_zero_counts_may_be_left_out() -> None:
    assert callgrind.parse_counts("events: Ir Dr Dw\nsummary: 5\n") == {
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
        callgrind.parse_counts(text)


def test_trigger_is_none_when_the_file_does_not_say() -> None:
    assert callgrind.dump_trigger("events: Ir\nsummary: 1\n") is None


# ---- the server's command line ---------------------------------------------------------------


def test_server_runs_as_in_the_suite_with_the_copied_app_and_far_timers() -> None:
    suite = servers.SERVERS["asgiws"].argv("/py", 1234)
    mine = instructions.server_argv("/py", 1234)
    app = mine.index(f"{instructions.APP_MODULE}:echo")
    assert suite[app] == servers.RAW_APP
    assert mine[:app] + mine[app + 1 : len(suite)] == suite[:app] + suite[app + 1 :]
    far = str(instructions.FAR_TIMEOUT)
    assert mine[len(suite) :] == [
        "--ws-ping-interval", far, "--timeout-handshake", far, "--timeout-keep-alive", far,
    ]  # fmt: skip
    assert {"--loop", "uvloop", "--no-access-log", "--no-ws-per-message-deflate"} <= set(mine)


def test_metrics_on_adds_a_metrics_port_and_a_label() -> None:
    plain = instructions.server_argv("/py", 1234)
    assert instructions.server_argv("/py", 1234, metrics=True) == [
        *plain, "--metrics-port", "0",
    ]  # fmt: skip
    target = instructions.Target(REPO, "/py", "abc1234", "")
    on = dataclasses.replace(target, metrics=True)
    assert (target.label, on.label) == ("abc1234", "abc1234+metrics")
    assert on.argv(1234)[-2:] == ["--metrics-port", "0"]
    assert instructions.parse_args(["--metrics"]).metrics is True
    assert instructions.parse_args([]).metrics is False


@pytest.mark.parametrize("name", sorted(instructions.PEER_FLAGS))
def test_peers_run_as_in_the_suite_with_the_copied_app_and_no_keep_alive_timeout(
    name: str,
) -> None:
    suite = servers.SERVERS[name].argv("/py", 1234)
    mine = instructions.peer_argv(name, "/py", 1234)
    app = mine.index(f"{instructions.APP_MODULE}:echo")
    assert suite[app] == servers.RAW_APP
    assert mine[:app] + mine[app + 1 : len(suite)] == suite[:app] + suite[app + 1 :]
    assert mine[len(suite) :] == ["--timeout-keep-alive", str(instructions.FAR_TIMEOUT)]
    assert {"--http", "httptools", "--loop", "uvloop", "--no-access-log"} <= set(mine)
    target = instructions.Target(REPO, "/py", "abc1234", "", name, "uvicorn 1.0")
    assert target.label == name
    assert target.argv(1234) == mine


# ---- the client's pure parts ---------------------------------------------------------------


def test_spread_splits_evenly() -> None:
    assert client.spread(20_000, 10) == [2_000] * 10
    assert client.spread(7, 3) == [3, 2, 2]
    assert sum(client.spread(12_345, 7)) == 12_345


def test_payloads_are_32_ascii_bytes_unique_per_connection_and_message() -> None:
    seen = {client.payload_for(c, n) for c in range(20) for n in range(50)}
    assert len(seen) == 1000
    assert all(len(p) == client.SIZE and p.isascii() for p in seen)


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
    frame = client.client_frame(client.OP_TEXT, payload, random.Random(1))
    assert _unmask_client_frame(frame) == (client.OP_TEXT, payload)


def test_server_frames_are_parsed_as_they_complete() -> None:
    text = b"\x81\x05hello"
    ping = b"\x89\x04abcd"
    large = b"\x82\x7e\x01\x00" + b"x" * 256
    buffer = bytearray(text + ping + large[:100])
    assert list(client.parse_frames(buffer)) == [(0x1, b"hello"), (0x9, b"abcd")]
    assert buffer == large[:100]  # the incomplete frame waits
    buffer += large[100:]
    assert list(client.parse_frames(buffer)) == [(0x2, b"x" * 256)]
    assert buffer == b""


@pytest.mark.parametrize("frame", [b"\x81\x85abcdhello", b"\x01\x05hello"])
def test_masked_or_fragmented_server_frames_fail(frame: bytes) -> None:
    with pytest.raises(client.Failed):
        list(client.parse_frames(bytearray(frame)))


def _response(key: str, **changes: str) -> bytes:
    accept = base64.b64encode(hashlib.sha1(key.encode() + client.GUID).digest()).decode()
    fields = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept}
    fields.update(changes)
    lines = ["HTTP/1.1 101 Switching Protocols"]
    lines += [f"{name}: {value}" for name, value in fields.items() if value]
    return "\r\n".join(lines).encode()


def test_upgrade_checks() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = client.upgrade_request(8000, key)
    assert request.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n")
    assert f"Sec-WebSocket-Key: {key}\r\n".encode() in request and request.endswith(b"\r\n\r\n")
    client.check_upgrade(_response(key), key)
    for bad in (
        _response(key, **{"Sec-WebSocket-Accept": "wrong"}),
        _response(key, Upgrade=""),
        _response(key, Connection="keep-alive"),
        _response(key, **{"Sec-WebSocket-Extensions": "permessage-deflate"}),
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0",
    ):
        with pytest.raises(client.Failed):
            client.check_upgrade(bad, key)


# ---- the report --------------------------------------------------------------------------------


def _result(
    commit: str, tree: str, run: int, echo: int, handshake: int, get: int = 0, post: int = 0
) -> Any:
    return instructions.Result(
        tree=tree, commit=commit, server="asgiws", versions="", python="/py",
        asgiws_file=f"{tree}/asgiws/__init__.py", run=run, echoes=1_000, connections=10,
        echo_instructions=echo * 1_000, handshakes=100, handshake_instructions=handshake * 100,
        echo_seconds=1.0, handshake_seconds=1.0, requests=200, http_connections=10,
        get_instructions=get * 200 if get else None, get_seconds=1.0 if get else None,
        post_instructions=post * 200 if post else None, post_seconds=1.0 if post else None,
        idle_instructions=50_000, idle_seconds=0.5, seconds=10.0,
    )  # fmt: skip


def _peer(name: str, get: int, post: int) -> Any:
    return instructions.Result(
        tree=str(REPO), commit="ccccccc", server=name, versions="uvicorn 1.0, httptools 2.0",
        python="/py", asgiws_file="", run=1, echoes=0, connections=10, handshakes=0,
        requests=200, http_connections=10, get_instructions=get * 200, get_seconds=2.0,
        post_instructions=post * 200, post_seconds=2.0, idle_instructions=60_000,
        idle_seconds=0.5, seconds=10.0,
    )  # fmt: skip


def test_summary_prints_figures_spread_and_change_against_the_first_tree() -> None:
    results = [
        _result("aaaaaaa", "/before", 1, 31_000, 280_000, 180_000, 210_000),
        _result("aaaaaaa", "/before", 2, 31_062, 280_000, 180_360, 210_000),
        _result("bbbbbbb", "/after", 1, 27_900, 252_000, 162_000, 231_000),
    ]
    text = "\n".join(instructions.summary_lines(results))
    assert "echo: 31,000 instructions per message" in text
    assert "handshake: 280,000 per loop" in text
    assert "http-get: 180,000 instructions per request (200 keep-alive GET / over 10" in text
    assert "http-post: 210,000 per request (200 POST / with 1,024 bytes" in text
    assert "idle: 100,000 per second" in text
    assert "echo spread over 2 runs of aaaaaaa: 0.20 %" in text
    assert "handshake spread over 2 runs of aaaaaaa: 0.00 %" in text
    assert "http-get spread over 2 runs of aaaaaaa: 0.20 %" in text
    assert "echo: bbbbbbb vs aaaaaaa: 27,900 vs 31,031 (-10.09 %)" in text
    assert "handshake: bbbbbbb vs aaaaaaa: 252,000 vs 280,000 (-10.00 %)" in text
    assert "http-get: bbbbbbb vs aaaaaaa: 162,000 vs 180,180 (-10.09 %)" in text
    assert "http-post: bbbbbbb vs aaaaaaa: 231,000 vs 210,000 (+10.00 %)" in text


def test_a_peer_has_only_http_figures_and_compares_with_asgiws() -> None:
    results = [
        _result("aaaaaaa", "/here", 1, 31_000, 280_000, 180_000, 210_000),
        _peer("uvicorn-sansio", 90_000, 105_000),
    ]
    lines = instructions.summary_lines(results)
    text = "\n".join(lines)
    assert "uvicorn-sansio run 1 (uvicorn 1.0, httptools 2.0, 10 s):" in text
    peer = lines[lines.index("uvicorn-sansio run 1 (uvicorn 1.0, httptools 2.0, 10 s):") + 1 :]
    assert [line.split(":")[0].strip() for line in peer[:3]] == ["http-get", "http-post", "idle"]
    assert "http-get: uvicorn-sansio vs aaaaaaa: 90,000 vs 180,000 (-50.00 %)" in text
    assert "http-post: uvicorn-sansio vs aaaaaaa: 105,000 vs 210,000 (-50.00 %)" in text
    assert "echo: uvicorn-sansio" not in text and "handshake: uvicorn-sansio" not in text


def test_metrics_on_is_compared_with_metrics_off() -> None:
    off = _result("aaaaaaa", "/here", 1, 30_000, 300_000, 150_000, 180_000)
    on = dataclasses.replace(off, metrics=True, echo_instructions=30_900 * 1_000)
    text = "\n".join(instructions.summary_lines([off, on]))
    assert "aaaaaaa+metrics run 1 (/here, 10 s):" in text
    assert "echo: aaaaaaa+metrics vs aaaaaaa: 30,900 vs 30,000 (+3.00 %)" in text
    assert "handshake: aaaaaaa+metrics vs aaaaaaa: 300,000 vs 300,000 (+0.00 %)" in text


def test_json_keeps_every_figure_and_none_for_windows_not_run() -> None:
    row = json.loads(json.dumps(dataclasses.asdict(_peer("uvicorn-sansio", 90_000, 105_000))))
    assert (row["get_per_request"], row["post_per_request"], row["post_body"]) == (
        90_000, 105_000, 1_024,
    )  # fmt: skip
    assert row["echo_per_message"] is None and row["handshake_per_loop"] is None
    assert (row["server"], row["versions"]) == ("uvicorn-sansio", "uvicorn 1.0, httptools 2.0")
    no_http = dataclasses.asdict(_result("aaaaaaa", "/here", 1, 31_000, 280_000))
    assert no_http["get_per_request"] is None and no_http["echo_per_message"] == 31_000


# ---- the HTTP client's pure parts ---------------------------------------------------------


def test_requests_are_keep_alive_get_and_post_with_a_fixed_body() -> None:
    get = client.http_request(8000)
    assert get == b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
    post = client.http_request(8000, "POST", client.BODY_SIZE)
    head, _, body = post.partition(b"\r\n\r\n")
    assert head.startswith(b"POST / HTTP/1.1\r\n") and b"\r\nContent-Length: 1024" in head
    assert len(body) == 1024 and post == client.http_request(8000, "POST", 1024)


OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def test_responses_are_parsed_as_they_complete() -> None:
    buffer = bytearray(OK[:-1])
    assert client.parse_response(buffer) is None  # one body byte missing
    buffer += OK[-1:] + OK[:10]
    response = client.parse_response(buffer)
    assert response is not None and (response.status, response.body) == (200, b"ok")
    assert response.headers["content-length"] == "2"
    assert buffer == OK[:10]  # the next response's start waits
    client.check_response(response, 0)


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok",  # no length
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 4000,  # a head that never ends
    ],
)
def test_malformed_responses_fail(wire: bytes) -> None:
    with pytest.raises(client.Failed):
        client.parse_response(bytearray(wire))


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (OK.replace(b"200 OK", b"404 Not Found"), "status 404"),
        (OK.replace(b"Length: 2", b"Length: 1")[:-1], "body b'o'"),
        (OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"), "closes"),
    ],
)
def test_wrong_answers_fail_the_check(wire: bytes, message: str) -> None:
    response = client.parse_response(bytearray(wire))
    assert response is not None
    with pytest.raises(client.Failed, match=message):
        client.check_response(response, 3)


# ---- the clients against real servers -----------------------------------------------------


@pytest.fixture(scope="module")
def asgiws_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """asgiws with instructions.py's own command line and copied app, without valgrind."""
    app_dir = tmp_path_factory.mktemp("app")
    shutil.copyfile(REPO / "benchmarks" / "apps.py", app_dir / f"{instructions.APP_MODULE}.py")
    port = servers.free_port()
    env = {**os.environ, "PYTHONPATH": f"{app_dir}{os.pathsep}{REPO}"}
    with processes.listening(instructions.server_argv(sys.executable, port), port, env):
        yield port


def _http_connections(port: int, n: int) -> list[Any]:
    deadline = client.Deadline(60)
    return [client.HttpConnection(i, port, deadline) for i in range(n)]


def test_keep_alive_gets_and_posts_are_counted_and_checked(asgiws_port: int) -> None:
    connections = _http_connections(asgiws_port, 3)
    get = client.http_request(asgiws_port)
    post = client.http_request(asgiws_port, "POST", client.BODY_SIZE)
    assert client.http_phase(connections, client.spread(10, 3), get) == 10
    assert client.http_phase(connections, [0, 2, 1], post) == 3  # a connection may rest
    for conn in connections:
        conn.close()  # the server ends TCP after our FIN, with nothing unread


def test_an_error_status_from_asgiws_fails_the_phase(asgiws_port: int) -> None:
    connections = _http_connections(asgiws_port, 2)
    try:
        missing = client.http_request(asgiws_port, path="/missing")  # the raw app: 404
        with pytest.raises(client.Failed, match="status 404"):
            client.http_phase(connections, [1, 1], missing)
    finally:
        for conn in connections:
            conn.sock.close()


def test_websocket_echoes_and_handshakes_against_asgiws(asgiws_port: int) -> None:
    rng = random.Random(1)
    deadline = client.Deadline(60)
    connections = [client.Connection(i, asgiws_port, rng, deadline) for i in range(3)]
    assert client.echo_phase(connections, [4, 0, 2], 0) == 6
    for conn in connections:
        conn.close()
    for i in range(3):
        client.handshake_loop(i, asgiws_port, rng, deadline)


@contextlib.contextmanager
def _canned(answer: bytes) -> Iterator[int]:
    """One connection on 127.0.0.1 that reads a request head, sends `answer` and closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError), listener:
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(10)
                received = b""
                for _ in range(100):  # bounded: a request head is one or two reads
                    received += peer.recv(65536)
                    if b"\r\n\r\n" in received:
                        break
                peer.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(15)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (OK[:-1], "closed the connection \\(65 bytes of a reply"),  # short body, EOF
        (OK.replace(b"Length: 2", b"Length: 1"), "1 bytes after a response"),
        (OK.replace(b"200 OK", b"500 Internal Server Error"), "status 500"),
    ],
)
def test_a_short_body_or_a_wrong_length_fails_the_phase(answer: bytes, message: str) -> None:
    with _canned(answer) as port:
        connections = _http_connections(port, 1)
        try:
            with pytest.raises(client.Failed, match=message):
                client.http_phase(connections, [1], client.http_request(port))
        finally:
            connections[0].sock.close()
