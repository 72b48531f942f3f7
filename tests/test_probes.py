"""--metrics-port on real server processes: /ready turns 503 at SIGTERM while a WebSocket is
still draining, /live gets no answer while the app blocks the event loop, and under
--workers 2 the supervisor's /metrics adds up the workers' figures (and counts a restart)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import ServerProcess
from lines import DEADLINE_S
from test_metrics import Samples, parse, value
from wire import OP_CLOSE, OP_TEXT, client_frame, close_frame, http_request, ws_request

TESTS = str(Path(__file__).parent)
METRICS_LINE = r"metrics on http://127\.0\.0\.1:(\d+)/metrics"
CLOSE = [("Host", "test"), ("Connection", "close")]


@contextlib.contextmanager
def started(*args: str) -> Iterator[ServerProcess]:
    """A server of tests/metrics_app.py with ``args``, stopped at the end."""
    server = ServerProcess("metrics_app:app", "--app-dir", TESTS, "--port", "0", *args)
    try:
        yield server
    finally:
        server.stop()


def exchange(port: int, request: bytes, timeout: float = DEADLINE_S) -> bytes:
    """Send ``request`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def get(port: int, path: str, timeout: float = DEADLINE_S) -> tuple[int, bytes]:
    response = exchange(port, http_request("GET", path, CLOSE), timeout)
    return status_of(response), response.partition(b"\r\n\r\n")[2]


def samples(port: int) -> Samples:
    status, body = get(port, "/metrics")
    assert status == 200
    return parse(body.decode())


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", exactly(2))
    return first & 0x0F, exactly(length)


def open_ws(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    sock.sendall(ws_request())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def test_ready_is_503_from_sigterm_while_a_websocket_drains() -> None:
    with started("--metrics-port", "0", "--lifespan", "on") as server:
        port = int(server.wait_for_line(r"running on http://127\.0\.0\.1:(\d+)")[1])
        metrics_port = int(server.wait_for_line(METRICS_LINE)[1])
        assert get(metrics_port, "/ready") == (200, b"ready\n")
        with open_ws(port) as sock:
            sock.sendall(client_frame(OP_TEXT, "still here"))
            assert read_frame(sock) == (OP_TEXT, b"still here")
            server.process.send_signal(signal.SIGTERM)
            # The server's Close (1001) shows the drain has begun; it waits for our answer
            # (--ws-close-timeout), so the WebSocket is still open while /ready is asked.
            opcode, payload = read_frame(sock)
            assert (opcode, payload[:2]) == (OP_CLOSE, struct.pack("!H", 1001))
            status, body = get(metrics_port, "/ready")
            assert status == 503 and b"shutting down" in body
            assert get(metrics_port, "/live")[0] == 200  # draining, but alive
            sock.sendall(close_frame(1001))
            assert sock.recv(100) == b""
        assert server.process.wait(timeout=DEADLINE_S) == 0


def test_live_gets_no_answer_while_the_loop_is_blocked() -> None:
    with started("--metrics-port", "0") as server:
        port = int(server.wait_for_line(r"running on http://127\.0\.0\.1:(\d+)")[1])
        metrics_port = int(server.wait_for_line(METRICS_LINE)[1])
        assert get(metrics_port, "/live") == (200, b"live\n")
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as blocked:
            blocked.sendall(http_request("GET", "/block?2", CLOSE))
            server.wait_for_line("blocking the event loop")
            with pytest.raises(TimeoutError):
                get(metrics_port, "/live", timeout=0.5)
            assert blocked.recv(100).startswith(b"HTTP/1.1 200 ")
        assert get(metrics_port, "/live") == (200, b"live\n")
        lag = value(samples(metrics_port), "asgiws_event_loop_lag_seconds", worker="1")
        assert lag >= 1.0  # the sample taken when the loop turned again


def test_workers_figures_add_up() -> None:
    with started("--metrics-port", "0", "--workers", "2") as server:
        port = int(server.wait_for_line(r"running on http://127\.0\.0\.1:(\d+) with 2 workers")[1])
        metrics_port = int(server.wait_for_line(METRICS_LINE)[1])
        assert get(metrics_port, "/ready") == (200, b"ready\n")
        requests, sessions = 20, 6
        for _ in range(requests):
            assert status_of(exchange(port, http_request("GET", "/", CLOSE))) == 200
        for _ in range(sessions):
            with open_ws(port) as sock:
                sock.sendall(client_frame(OP_TEXT, "hi") + close_frame(1000))
                assert read_frame(sock) == (OP_TEXT, b"hi")
                assert read_frame(sock)[0] == OP_CLOSE
                assert sock.recv(100) == b""
        found = samples(metrics_port)
        assert value(found, "asgiws_http_requests_total", status_class="2xx") == requests
        assert value(found, "asgiws_websocket_sessions_total", close_code="1000") == sessions
        assert value(found, "asgiws_websocket_messages_total", direction="in") == sessions
        workers = {
            dict(labels)["worker"] for name, labels in found if name == "asgiws_connections_open"
        }
        assert workers == {"1", "2"}
        assert value(found, "asgiws_worker_restarts_total") == 0

        # A worker that dies is replaced, and counted.
        pid = int(server.wait_for_line(r"worker 1 \(pid (\d+)\) ready")[1])
        os.kill(pid, signal.SIGKILL)
        server.wait_for_line(r"worker 3 \(pid \d+\) ready")
        found = samples(metrics_port)
        assert value(found, "asgiws_worker_restarts_total") == 1
        workers = {
            dict(labels)["worker"] for name, labels in found if name == "asgiws_connections_open"
        }
        assert workers == {"2", "3"}
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=DEADLINE_S) == 0


def test_metrics_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with started("--metrics-port", str(busy)) as server:
            server.wait_for_line(rf"could not listen on --metrics-port 127\.0\.0\.1:{busy}: ")
            assert server.process.wait(timeout=DEADLINE_S) == 1
