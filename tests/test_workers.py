"""--workers N through the real command: a supervisor and its worker processes, real signals.

Every worker answers with its pid, so that tests count the processes that serve; waits are on
the supervisor's log lines and on the processes, each bounded.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from cli_process import ServerProcess
from lines import DEADLINE_S
from websockets.asyncio.client import ClientConnection, connect

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

APP = textwrap.dedent(
    """
    import asyncio
    import os
    import time

    PID = os.getpid()

    def say(text):
        # One write: the workers and the supervisor share the test's pipe.
        os.write(1, (text + "\\n").encode())

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    say(f"lifespan startup pid={PID}")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    say(f"lifespan shutdown pid={PID}")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": str(PID)})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    say(f"ws disconnect pid={PID} code={message['code']}")
                    return
        await receive()
        if scope["path"] == "/block":
            say(f"blocking the loop of pid={PID}")
            time.sleep(600)
        if scope["path"] == "/hang":
            say(f"hanging request pid={PID}")
            await asyncio.Event().wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(PID).encode()})
    """
)

READY = r"worker (\d+) \(pid (\d+)\) ready"
RUNNING = r"running on http://127\.0\.0\.1:(\d+) with (\d+) workers"
REQUESTS_MAX = 500  # requests made at most while waiting for a pid to answer


class Supervised(ServerProcess):
    """``asgiws app:app --workers ...`` with the test app, on a free port."""

    port = 0

    def matches(self, pattern: str) -> list[re.Match[str]]:
        """The lines printed so far that match ``pattern``."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)  # the end, for whoever waits next
                break
            self.lines.append(line)
        regex = re.compile(pattern)
        return [m for m in map(regex.search, self.lines) if m is not None]

    def wait_for_lines(
        self, pattern: str, count: int, timeout: float = DEADLINE_S
    ) -> list[re.Match[str]]:
        """The first ``count`` output lines matching ``pattern`` (seen already or to come)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matches(pattern)
            if len(found) >= count:
                return found[:count]
            self._next_line(deadline, f"{count} lines matching {pattern!r}")

    def wait_ready(self, workers: int) -> set[int]:
        """Wait for the 'running on' line; the pids of the workers ready by then."""
        found = self.wait_for_line(RUNNING, timeout=90)
        assert int(found[2]) == workers
        self.port = int(found[1])
        return {int(m[2]) for m in self.matches(READY)}

    def new_ready_pid(self, known: set[int], timeout: float = 90) -> int:
        """The pid of the next worker reported ready that is not in ``known``."""
        count = len(self.matches(READY)) + 1
        while True:
            for match in self.wait_for_lines(READY, count, timeout):
                if int(match[2]) not in known:
                    return int(match[2])
            count += 1

    def exit_status(self, timeout: float = 60) -> int:
        """Wait for the exit; every line printed is in ``lines`` then."""
        status = self.process.wait(timeout=timeout)
        self.output()
        return status

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "pidapp.py").write_text(APP, encoding="utf-8")
    return tmp_path


@pytest.fixture
def start(app_dir: Path) -> Iterator[type[Supervised]]:
    started: list[Supervised] = []

    class Started(Supervised):
        def __init__(self, *args: str, app: str = "pidapp:app", **env: str) -> None:
            super().__init__(
                app, "--app-dir", str(app_dir), "--port", "0", *args, pass_fds=(), **env
            )
            started.append(self)

    yield Started
    for server in started:
        if server.process.poll() is None:
            # A second SIGTERM forces; the supervisor kills what is left soon after.
            server.process.terminate()
            server.process.terminate()
        server.stop()


def get(port: int, path: str = "/", timeout: float = 10.0) -> int:
    """GET on a fresh connection; the pid in the answer. Raises OSError on a refused or reset
    connection, AssertionError on an answer that is not a 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return int(body)


def pids_answering(port: int, wanted: set[int]) -> set[int]:
    """Make requests until every pid of ``wanted`` has answered (at most REQUESTS_MAX)."""
    seen: set[int] = set()
    for _ in range(REQUESTS_MAX):
        seen.add(get(port))
        if wanted <= seen:
            break
    return seen


class Load:
    """Threads making requests on fresh connections until stopped; what each one got."""

    def __init__(self, port: int, threads: int = 2) -> None:
        self.port = port
        self.results: list[tuple[float, int | str]] = []  # (when, pid or error)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                outcome: int | str = get(self.port)
            except (OSError, AssertionError, ValueError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            self.results.append((time.monotonic(), outcome))

    def wait_for_pid(self, pid: int, timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while not any(outcome == pid for _, outcome in self.results[-200:]):
            assert time.monotonic() < deadline, f"pid {pid} did not answer: {self.results[-5:]}"
            assert all(t.is_alive() for t in self._threads)
            self._stop.wait(0.05)  # polling the results list the threads fill

    def stop(self) -> list[tuple[float, int | str]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=DEADLINE_S)
        return self.results

    def errors(self) -> list[str]:
        return [outcome for _, outcome in self.results if isinstance(outcome, str)]


async def websockets_on(port: int, pids: set[int]) -> list[tuple[int, ClientConnection]]:
    """Open WebSockets until each pid of ``pids`` holds at least one; (pid, connection) each."""
    opened: list[tuple[int, ClientConnection]] = []
    for _ in range(100):
        ws = await connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10)
        pid = int(await asyncio.wait_for(ws.recv(), 10))
        opened.append((pid, ws))
        if pids <= {p for p, _ in opened}:
            return opened
    raise AssertionError(f"no WebSocket reached every pid of {pids}: {opened}")


async def close_code(ws: ClientConnection, timeout: float = DEADLINE_S) -> int | None:
    """The code of the Close frame the server sends."""
    try:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), timeout)
    finally:
        await ws.close()
    assert info.value.rcvd is not None
    return info.value.rcvd.code


# -- starting ------------------------------------------------------------------------------------


def test_web_concurrency_workers_each_serve_and_run_lifespan_once(
    start: type[Supervised],
) -> None:
    server = start(WEB_CONCURRENCY="3")
    pids = server.wait_ready(3)
    assert len(pids) == 3 and os.getpid() not in pids
    assert pids_answering(server.port, pids) == pids
    # The URL once, from the supervisor; each worker's pid once.
    assert len(server.matches(r"running on ")) == 1
    started = [int(m[1]) for m in server.matches(r"lifespan startup pid=(\d+)")]
    assert sorted(started) == sorted(pids)
    server.signal(signal.SIGTERM)
    assert server.exit_status() == 0
    stopped = [int(m[1]) for m in server.matches(r"lifespan shutdown pid=(\d+)")]
    assert sorted(stopped) == sorted(pids)


def test_an_app_that_cannot_be_imported_gives_up_with_exit_3(tmp_path: Path) -> None:
    began = time.monotonic()
    server = ServerProcess(
        "nosuchmodule_here:app", "--workers", "2", "--port", "0", "--app-dir", str(tmp_path)
    )
    try:
        assert server.process.wait(timeout=120) == 3
    finally:
        server.stop()
    output = server.output()
    assert time.monotonic() - began < 120
    assert "Traceback" not in output
    assert "failed to start: could not import module 'nosuchmodule_here'" in output
    assert "starting another in 0.25 s (1 failed start in a row)" in output
    assert (
        "giving up: the last 5 worker starts failed the same way; the last one: "
        "could not import module 'nosuchmodule_here'"
    ) in output
    assert "running on" not in output


# -- replacing -----------------------------------------------------------------------------------


def test_a_killed_worker_is_replaced_while_the_other_serves(start: type[Supervised]) -> None:
    server = start("--workers", "2")
    pids = server.wait_ready(2)
    victim, survivor = sorted(pids)
    load = Load(server.port)
    try:
        load.wait_for_pid(victim)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        server.wait_for_line(
            rf"worker \d+ \(pid {victim}\) died \(killed by SIGKILL\); starting a replacement"
        )
        replacement = server.new_ready_pid(pids)
        ready_at = time.monotonic()
        load.wait_for_pid(replacement)
    finally:
        results = load.stop()
    # Only the requests the killed worker had in hand fail (one per load thread at most); the
    # other worker answered throughout.
    assert len(load.errors()) <= 2, load.errors()
    between = [outcome for when, outcome in results if killed_at < when < ready_at]
    assert survivor in between
    assert victim not in [outcome for when, outcome in results if when > ready_at]
    assert "failed start" not in "".join(server.lines)


def test_a_blocked_worker_is_killed_after_the_healthcheck_timeout(
    start: type[Supervised],
) -> None:
    server = start("--workers", "2", "--timeout-worker-healthcheck", "2")
    pids = server.wait_ready(2)
    blocked: queue.Queue[str] = queue.Queue()

    def block() -> None:
        try:
            get(server.port, "/block", timeout=60)
        except (OSError, AssertionError) as exc:
            blocked.put(type(exc).__name__)
        else:
            blocked.put("answered")

    thread = threading.Thread(target=block)
    thread.start()
    victim = int(server.wait_for_line(r"blocking the loop of pid=(\d+)")[1])
    (other,) = pids - {victim}
    # While that loop is blocked, the other worker takes every connection.
    assert get(server.port) == other
    server.wait_for_line(
        rf"worker \d+ \(pid {victim}\): it did not answer within 2 s "
        r"\(--timeout-worker-healthcheck\), killing it \(SIGKILL\)"
    )
    server.wait_for_line(rf"\(pid {victim}\) died \(it did not answer .*starting a replacement")
    replacement = server.new_ready_pid(pids)
    thread.join(timeout=DEADLINE_S)
    assert blocked.get_nowait() != "answered"
    assert pids_answering(server.port, {replacement}) >= {replacement}


def test_limit_max_requests_recycles_workers_without_a_failure(
    start: type[Supervised],
) -> None:
    server = start("--workers", "2", "--limit-max-requests", "5")
    pids = server.wait_ready(2)
    seen: list[int] = []
    deadline = time.monotonic() + 60
    # Until both first workers have been recycled and their replacements answered.
    while len(server.matches(r"reached --limit-max-requests")) < 2 or len(set(seen) - pids) < 2:
        assert time.monotonic() < deadline, server.lines
        seen.append(get(server.port))
    server.wait_for_lines(r"reached --limit-max-requests: draining, starting another", 2)
    for pid in pids:
        server.wait_for_line(rf"\(pid {pid}\) exited \(exit status 0\)")
    output = "".join(server.lines)
    assert "failed to start" not in output and "died" not in output


# -- signals -------------------------------------------------------------------------------------


async def test_sigterm_drains_every_worker_websockets_get_1001(start: type[Supervised]) -> None:
    server = await asyncio.to_thread(start, "--workers", "2")
    pids = await asyncio.to_thread(server.wait_ready, 2)
    opened = await websockets_on(server.port, pids)
    server.signal(signal.SIGTERM)
    codes = await asyncio.gather(*(close_code(ws) for _, ws in opened))
    assert codes == [1001] * len(opened)
    assert await asyncio.to_thread(server.exit_status) == 0
    # Every session's disconnect reached the app; every worker ran its lifespan shutdown.
    assert len(server.matches(r"ws disconnect pid=\d+ code=1001")) == len(opened)
    assert {int(m[1]) for m in server.matches(r"lifespan shutdown pid=(\d+)")} == pids


async def test_sighup_restarts_under_load_without_a_lost_request(start: type[Supervised]) -> None:
    server = await asyncio.to_thread(start, "--workers", "2")
    old = await asyncio.to_thread(server.wait_ready, 2)
    opened = await websockets_on(server.port, old)
    load = Load(server.port)
    try:
        await asyncio.to_thread(load.wait_for_pid, min(old))
        server.signal(signal.SIGHUP)
        codes = await asyncio.gather(*(close_code(ws, timeout=90) for _, ws in opened))
        await asyncio.to_thread(server.wait_for_line, r"rolling restart done: 2 workers serving")
        new = {int(m[2]) for m in server.matches(READY)} - old
        assert len(new) == 2
        for pid in new:
            await asyncio.to_thread(load.wait_for_pid, pid)
        for pid in old:
            await asyncio.to_thread(server.wait_for_line, rf"\(pid {pid}\) exited \(exit")
    finally:
        results = await asyncio.to_thread(load.stop)
    assert load.errors() == []
    assert codes == [1012] * len(opened)
    assert len(results) > 20
    # Each old worker drained only once a new one was ready.
    lines = server.lines
    first_new_ready = min(i for i, line in enumerate(lines) if re.search(READY, line) and any(
        f"(pid {pid}) ready" in line for pid in new))  # fmt: skip
    first_drain = min(i for i, line in enumerate(lines) if "draining it" in line)
    assert first_new_ready < first_drain
    for pid in old:  # each old worker says why it closes its WebSockets
        assert (
            len(server.matches(rf"\(pid {pid}\): received SIGHUP: closing WebSockets with 1012"))
            == 1
        )
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.exit_status) == 0


def test_sigttin_and_sigttou_add_and_remove_a_worker(start: type[Supervised]) -> None:
    server = start("--workers", "2")
    pids = server.wait_ready(2)
    server.signal(signal.SIGTTIN)
    server.wait_for_line(r"received SIGTTIN: 3 workers")
    added = server.new_ready_pid(pids)
    assert pids_answering(server.port, pids | {added}) == pids | {added}
    server.signal(signal.SIGTTOU)
    server.wait_for_line(r"received SIGTTOU: 2 workers")
    removed = int(server.wait_for_line(r"\(pid (\d+)\): one worker fewer, draining it")[1])
    server.wait_for_line(rf"\(pid {removed}\) exited \(exit status 0\)")
    serving = (pids | {added}) - {removed}
    assert pids_answering(server.port, serving) == serving
    server.signal(signal.SIGTTOU)
    server.wait_for_line(r"received SIGTTOU: 1 workers")
    second = int(server.wait_for_lines(r"\(pid (\d+)\): one worker fewer, draining it", 2)[1][1])
    server.wait_for_line(rf"\(pid {second}\) exited \(exit status 0\)")
    server.signal(signal.SIGTTOU)
    server.wait_for_line(r"received SIGTTOU: keeping the last worker")
    server.signal(signal.SIGINT)  # CTRL+C
    assert server.exit_status() == 0
    server.wait_for_line(r"received SIGINT: stopping 1 workers")


def test_a_second_sigterm_forces_the_workers(start: type[Supervised]) -> None:
    server = start("--workers", "2", "--timeout-graceful-shutdown", "300")
    server.wait_ready(2)
    outcome: queue.Queue[str] = queue.Queue()

    def hang() -> None:
        try:
            outcome.put(str(get(server.port, "/hang", timeout=120)))
        except (OSError, AssertionError) as exc:
            outcome.put(type(exc).__name__)

    hanging = threading.Thread(target=hang)
    hanging.start()
    server.wait_for_line(r"hanging request pid=")
    began = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_for_lines(r"received SIGTERM, shutting down", 2)
    server.signal(signal.SIGTERM)
    assert server.exit_status(timeout=60) == 1
    assert time.monotonic() - began < 60
    server.wait_for_line(r"received SIGTERM again: forcing the workers to exit")
    hanging.join(timeout=DEADLINE_S)
    assert outcome.get_nowait() in ("AssertionError", "ConnectionResetError")  # cut off


def test_what_has_not_stopped_after_the_timeout_is_killed(
    app_dir: Path, start: type[Supervised]
) -> None:
    (app_dir / "stuckapp.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            from pidapp import app as serve

            async def app(scope, receive, send):
                if scope["type"] != "lifespan":
                    return await serve(scope, receive, send)
                await receive()
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await asyncio.Event().wait()  # the lifespan shutdown never completes
            """
        ),
        encoding="utf-8",
    )
    server = start("--workers", "2", "--timeout-graceful-shutdown", "1", app="stuckapp:app")
    server.wait_ready(2)
    began = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.exit_status() == 1
    assert time.monotonic() - began < 30
    assert len(server.matches(r"it was still running after it was asked to stop, killing")) == 2


def test_a_unix_socket_is_bound_once_and_removed_at_the_end(
    tmp_path: Path, start: type[Supervised]
) -> None:
    import httpx

    path = tmp_path / "workers.sock"
    server = start("--workers", "2", "--uds", str(path))
    found = server.wait_for_line(rf"running on unix:{re.escape(str(path))} with 2 workers", 90)
    assert found
    pids = {int(m[2]) for m in server.matches(READY)}
    seen: set[int] = set()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=10) as client:
        for _ in range(REQUESTS_MAX):
            seen.add(int(client.get("http://workers/", headers={"Connection": "close"}).text))
            if seen == pids:
                break
    assert seen == pids
    server.signal(signal.SIGTERM)
    assert server.exit_status() == 0
    assert not path.exists()


def test_workers_need_an_app_named_by_string_and_no_embedded_server_takes_them() -> None:
    import asgiws

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    with pytest.raises(TypeError, match=r"run\(workers=2\): pass the app as a 'module:attr"):
        asgiws.run(app, workers=2)
    with pytest.raises(ValueError, match=r"Server\(workers=3\): a Server runs in one process"):
        asgiws.Server(app, workers=3)
    # WEB_CONCURRENCY in the environment is for the command, not for an embedded server.
    assert asgiws.Server(app, environ={"WEB_CONCURRENCY": "4"}).config.workers == 4


def test_workers_values_and_their_environment_variables() -> None:
    from cli_process import clean_env, run_cli

    from asgiws import cli

    for argv, env, message in [
        (["x:app", "--workers", "0"], {}, "--workers: invalid value '0'"),
        (["x:app"], {"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY: invalid value 'many'"),
        (["x:app", "--timeout-worker-healthcheck", "-1"], {}, "--timeout-worker-healthcheck: "),
    ]:
        result = run_cli(*argv, env=clean_env(**env))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    # The command line, then ASGIWS_WORKERS, then WEB_CONCURRENCY.
    both = {"ASGIWS_WORKERS": "3", "WEB_CONCURRENCY": "5"}
    assert cli.parse_command_line(["x:app"], both)[1].workers == 3
    assert cli.parse_command_line(["x:app"], {"WEB_CONCURRENCY": "5"})[1].workers == 5
    assert cli.parse_command_line(["x:app", "--workers", "2"], both)[1].workers == 2
    assert cli.parse_command_line(["x:app"], {})[1].workers == 1
