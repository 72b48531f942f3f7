"""Process lifecycle through the real CLI: lifespan modes, Unix sockets, signals."""

from __future__ import annotations

import platform
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from cli_process import DEADLINE_S, ServerProcess

APP = textwrap.dedent(
    """
    import asyncio

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if FAIL_STARTUP:
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    scope["state"]["greeting"] = "hello from startup"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    print("lifespan shutdown ran", flush=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        await receive()
        if scope["path"] == "/hang":
            print("hanging request started", flush=True)
            await asyncio.Event().wait()
        if scope["path"] == "/exit":
            raise SystemExit(4)
        body = scope.get("state", {}).get("greeting", "no state").encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    FAIL_STARTUP = False

    async def failing_then_waiting(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
            try:
                await receive()  # never comes: the server exits without a lifespan shutdown
            finally:
                print("lifespan task ended", flush=True)

    async def failing(scope, receive, send):
        global FAIL_STARTUP
        FAIL_STARTUP = True
        await app(scope, receive, send)

    async def no_lifespan(scope, receive, send):
        if scope["type"] == "lifespan":
            raise RuntimeError("this app does not do lifespan")
        await app(scope, receive, send)
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "lifeapp.py").write_text(APP)
    return tmp_path


def start(servers: list[ServerProcess], app_dir: Path, *args: str) -> tuple[ServerProcess, int]:
    server = ServerProcess("lifeapp:" + args[0], "--app-dir", str(app_dir), *args[1:])
    servers.append(server)
    if "--uds" in args:
        server.wait_for_line(r"running on unix:")
        return server, 0
    found = server.wait_for_line(r"http://127\.0\.0\.1:(\d+)")
    return server, int(found[1])


def test_lifespan_state_reaches_requests_and_shutdown_runs(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    server, port = start(servers, app_dir, "app", "--port", "0", "--lifespan", "on")
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE_S)
    assert response.text == "hello from startup"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=DEADLINE_S) == 0
    assert "lifespan shutdown ran" in server.output()


def test_lifespan_startup_failure_exits_3_with_the_message(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    server = ServerProcess(
        "lifeapp:failing", "--app-dir", str(app_dir), "--port", "0", "--lifespan", "on"
    )
    servers.append(server)
    assert server.process.wait(timeout=DEADLINE_S) == 3
    output = server.output()
    assert "lifespan startup failed: no database" in output
    assert "Traceback" not in output


def test_lifespan_task_does_not_outlive_a_failed_startup(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    server = ServerProcess(
        "lifeapp:failing_then_waiting", "--app-dir", str(app_dir), "--port", "0",
        "--lifespan", "on",
    )  # fmt: skip
    servers.append(server)
    assert server.process.wait(timeout=DEADLINE_S) == 3
    output = server.output()
    assert "lifespan startup failed: no database" in output
    assert "lifespan task ended" in output
    assert "Traceback" not in output


def test_an_app_raising_system_exit_stops_the_server_with_its_status(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    # KeyboardInterrupt and SystemExit are not app errors to log and answer with a 500: they
    # propagate out of the server's task group, as they would out of any Python program.
    server, port = start(servers, app_dir, "app", "--port", "0")
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as client:
        client.sendall(b"GET /exit HTTP/1.1\r\nHost: t\r\n\r\n")
        assert server.process.wait(timeout=DEADLINE_S) == 4
    assert "Exception in ASGI application" not in server.output()


def test_lifespan_auto_goes_on_without_an_app_that_lacks_it(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    _server, port = start(servers, app_dir, "no_lifespan", "--port", "0")
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE_S)
    assert (response.status_code, response.text) == (200, "no state")


def test_lifespan_off_never_calls_it(servers: list[ServerProcess], app_dir: Path) -> None:
    server, port = start(servers, app_dir, "app", "--port", "0", "--lifespan", "off")
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE_S).text == "no state"
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=DEADLINE_S) == 0
    assert "lifespan shutdown ran" not in server.output()


def test_unix_socket(servers: list[ServerProcess], app_dir: Path) -> None:
    path = app_dir / "asgiws.sock"
    server, _ = start(servers, app_dir, "app", "--uds", str(path))
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, timeout=DEADLINE_S) as client:
        assert client.get("http://localhost/").text == "hello from startup"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=DEADLINE_S) == 0
    assert not path.exists()


def test_second_signal_forces_exit(servers: list[ServerProcess], app_dir: Path) -> None:
    server, port = start(
        servers, app_dir, "app", "--port", "0", "--timeout-graceful-shutdown", "60"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as client:
        client.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        server.wait_for_line("hanging request started")
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_line("shutting down")
        # The request in flight holds the graceful shutdown (60 s) ...
        with pytest.raises(Exception, match="timed out"):
            server.process.wait(timeout=0.5)
        # ... until a second signal cuts it short.
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=DEADLINE_S) == 1
    assert "forced exit" in server.output()


def test_requests_refused_before_the_app_are_logged(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    server, port = start(servers, app_dir, "app", "--port", "0")
    bad_handshake = (
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for request in (bad_handshake, b"NOT HTTP\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as client:
            client.sendall(request)
            while client.recv(4096):
                pass
    server.wait_for_line(r'127\.0\.0\.1:\d+ - "GET /ws" WebSocket rejected 400 in \d')
    server.wait_for_line(r'127\.0\.0\.1:\d+ - "- - HTTP/1\.1" 400 in \d')


def test_access_line_for_a_client_that_left_before_any_response(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    # /hang never answers; the client leaves; shutdown cancels the app. The access line says
    # "-" for the status instead of breaking the logging call.
    server, port = start(
        servers, app_dir, "app", "--port", "0", "--timeout-graceful-shutdown", "0.2"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as client:
        client.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        server.wait_for_line("hanging request started")
    server.process.send_signal(signal.SIGTERM)
    server.wait_for_line(r'127\.0\.0\.1:\d+ - "GET /hang HTTP/1\.1" - in \d')
    assert server.process.wait(timeout=DEADLINE_S) == 0
    assert "Logging error" not in server.output()


# -- --malloc-keep ----------------------------------------------------------------------------

_MALLOC_PROBE = """
import resource, sys
from asgiws.runtime import tune_malloc
print(tune_malloc(int(sys.argv[1]), 16 * 1024 * 1024))
def burst():  # a few large messages at once, then none: what a WebSocket echo does
    blocks = [bytearray(1024 * 1024) for _ in range(6)]
    del blocks
for _ in range(5):
    burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    burst()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt() is glibc's",
)
def test_malloc_keep_stops_large_blocks_from_faulting_in_fresh_pages() -> None:
    def faults(keep: int) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _MALLOC_PROBE, str(keep)],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        applied, count = out.stdout.split()
        return applied, int(count)

    applied, untuned = faults(0)
    assert applied == "False"
    assert untuned > 10_000  # glibc's defaults: each burst maps and faults in new pages
    applied, tuned = faults(64 * 1024 * 1024)
    assert applied == "True"
    assert tuned < untuned // 100


def test_limit_max_requests_ends_the_process_cleanly(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    server, port = start(
        servers, app_dir, "app", "--port", "0", "--limit-max-requests", "3", "--lifespan", "on"
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE_S) as client:
        for _ in range(2):
            assert client.get("/").status_code == 200
        assert server.process.poll() is None  # two requests: still serving
        response = client.get("/")
        assert response.status_code == 200
        assert response.text == "hello from startup"
    assert server.process.wait(timeout=DEADLINE_S) == 0
    output = server.output()
    assert "served 3 requests (--limit-max-requests), shutting down" in output
    assert "lifespan shutdown ran" in output


def test_limit_max_requests_jitter_adds_at_most_its_count(
    servers: list[ServerProcess], app_dir: Path
) -> None:
    server, port = start(
        servers,
        app_dir,
        "app",
        "--port",
        "0",
        "--limit-max-requests",
        "2",
        "--limit-max-requests-jitter",
        "3",
    )
    served = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE_S) as client:
        for _ in range(6):  # the limit is at most 5
            try:
                client.get("/")
            except httpx.TransportError:
                break  # the server stopped
            served += 1
    assert server.process.wait(timeout=DEADLINE_S) == 0
    limit = int(server.wait_for_line(r"served (\d+) requests")[1])
    assert 2 <= limit <= 5
    assert served >= limit
