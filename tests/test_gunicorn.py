"""``gunicorn -k asgiws.workers.AsgiwsWorker``: gunicorn itself as a subprocess, two workers on a
loopback port, driven with its real signals and settings; plus the mapping of its settings."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_process import DEADLINE_S, clean_env, stop_process
from lines import OutputLines

gunicorn_config = pytest.importorskip("gunicorn.config")

from asgiws.options import OptionError  # noqa: E402 (after the skip)
from asgiws.workers import AsgiwsWorker, worker_config  # noqa: E402

APP = textwrap.dedent(
    """
    import os
    import time

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                await send({"type": "websocket.send", "text": f"{os.getpid()} {message['text']}"})
        await receive()
        if scope["path"] == "/block":
            time.sleep(60)  # blocks the worker's event loop
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
    """
)

# gunicorn 24 and later keep a control socket in $HOME unless told not to.
NO_CONTROL_SOCKET = (
    ["--no-control-socket"]
    if any(s.name == "control_socket_disable" for s in gunicorn_config.KNOWN_SETTINGS)
    else []
)
BOOTED = r"Booting worker with pid: (\d+)"
SERVING = r"\[(\d+)\] \[INFO\] asgiws \S+ running on"


class Gunicorn(OutputLines):
    """gunicorn with the asgiws worker, its output (stdout and stderr) read line by line."""

    what = "gunicorn"

    def __init__(self, app_dir: Path, *args: str, bind: str = "127.0.0.1:0") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "asgiws.workers.AsgiwsWorker",
             "-b", bind, "--chdir", str(app_dir), "--graceful-timeout", "10",
             *NO_CONTROL_SOCKET, *args, "gapp:app"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_env(),
        )  # fmt: skip
        self._read_lines()

    def port(self) -> int:
        return int(self.wait_for_line(r"Listening at: http://127\.0\.0\.1:(\d+)")[1])

    def serving(self, count: int = 2) -> list[str]:
        """The pids of the first ``count`` workers, once each serves."""
        return self.wait_for_count(SERVING, count)

    def stop(self) -> None:
        stop_process(self.process, signal.SIGQUIT)  # gunicorn's graceful stop


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "gapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def started(servers: list[Gunicorn]) -> list[Gunicorn]:
    """The gunicorn processes a test starts (conftest's ``servers``: stopped after it)."""
    return servers


def start(started: list[Gunicorn], app_dir: Path, *args: str, workers: int = 2) -> Gunicorn:
    process = Gunicorn(app_dir, "-w", str(workers), *args)
    started.append(process)
    return process


def get_pid(port: int, path: str = "/") -> str:
    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=DEADLINE_S)
    assert response.status_code == 200
    return response.text


# -- Serving -------------------------------------------------------------------------------------


def test_http_and_websocket_are_served_by_the_workers(
    started: list[Gunicorn], app_dir: Path
) -> None:
    from websockets.sync.client import connect

    gunicorn = start(started, app_dir)
    port = gunicorn.port()
    workers = set(gunicorn.serving())
    assert set(gunicorn.wait_for_count(BOOTED, 2)) == workers
    answered = {get_pid(port) for _ in range(10)}
    assert answered <= workers
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=DEADLINE_S) as ws:
        ws.send("hello")
        pid, text = str(ws.recv(timeout=DEADLINE_S)).split(" ", 1)
    assert text == "hello" and pid in workers


def test_sigterm_closes_websockets_with_1001_and_gunicorn_exits_0(
    started: list[Gunicorn], app_dir: Path
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    gunicorn = start(started, app_dir)
    port = gunicorn.port()
    gunicorn.serving()
    with contextlib.ExitStack() as stack:
        url = f"ws://127.0.0.1:{port}/ws"
        clients = [stack.enter_context(connect(url, open_timeout=DEADLINE_S)) for _ in range(4)]
        for client in clients:
            client.send("ping")
            assert str(client.recv(timeout=DEADLINE_S)).endswith(" ping")
        gunicorn.process.send_signal(signal.SIGTERM)
        for client in clients:
            with pytest.raises(ConnectionClosed) as info:
                client.recv(timeout=DEADLINE_S)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert gunicorn.process.wait(timeout=DEADLINE_S) == 0
    assert "Traceback" not in gunicorn.output()


def test_sigquit_is_a_quick_shutdown_that_still_sends_1001(
    started: list[Gunicorn], app_dir: Path
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    gunicorn = start(started, app_dir, "--graceful-timeout", "60")
    port = gunicorn.port()
    gunicorn.serving()
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=DEADLINE_S) as client:
        client.send("ping")
        client.recv(timeout=DEADLINE_S)
        began = time.monotonic()
        gunicorn.process.send_signal(signal.SIGQUIT)
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=DEADLINE_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert gunicorn.process.wait(timeout=DEADLINE_S) == 0
    # Quick: far from the 60 s graceful timeout, without waiting for the client's Close.
    assert time.monotonic() - began < 20
    gunicorn.wait_for_count(r"asgiws: quick shutdown", 2)
    assert "exited with code" not in gunicorn.output()


def test_sighup_restarts_the_workers_and_old_websockets_get_1012(
    started: list[Gunicorn], app_dir: Path
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    gunicorn = start(started, app_dir)
    port = gunicorn.port()
    old = set(gunicorn.serving())
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=DEADLINE_S) as client:
        client.send("ping")
        client.recv(timeout=DEADLINE_S)
        gunicorn.process.send_signal(signal.SIGHUP)
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=DEADLINE_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    new = set(gunicorn.serving(4)) - old
    assert len(new) == 2
    gunicorn.wait_for_count(r"asgiws: replaced by a new worker", 2)
    # The old workers are gone once they drained; only new ones answer from then on.
    exited = gunicorn.wait_for_count(r"Worker exiting \(pid: (\d+)\)", 2)
    assert set(exited) == old
    assert {get_pid(port) for _ in range(6)} <= new
    # A later SIGTERM is a shutdown again: 1001, not 1012.
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=DEADLINE_S) as client:
        client.send("ping")
        client.recv(timeout=DEADLINE_S)
        gunicorn.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=DEADLINE_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert gunicorn.process.wait(timeout=DEADLINE_S) == 0


def test_max_requests_recycles_a_worker(started: list[Gunicorn], app_dir: Path) -> None:
    gunicorn = start(started, app_dir, "--max-requests", "3")
    port = gunicorn.port()
    first = set(gunicorn.serving())
    answered: set[str] = set()
    for _ in range(40):  # 2 workers x 3 requests: a recycle comes within 5 requests
        answered.add(get_pid(port))
        if len(answered - first) > 0:
            break
    gunicorn.wait_for_line(r"served 3 requests \(--limit-max-requests\), shutting down")
    assert len(gunicorn.wait_for_count(BOOTED, 3)) == 3
    assert answered - first, "no request was answered by a fresh worker"
    assert "Traceback" not in "".join(gunicorn.lines)


def test_websockets_of_a_recycled_worker_get_1012(started: list[Gunicorn], app_dir: Path) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    gunicorn = start(started, app_dir, "--max-requests", "2", workers=1)
    port = gunicorn.port()
    (first,) = gunicorn.serving(1)
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=DEADLINE_S) as client:
        client.send("ping")
        client.recv(timeout=DEADLINE_S)
        assert get_pid(port) == get_pid(port) == first  # the second request is the last one
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=DEADLINE_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    second = gunicorn.serving(2)[1]
    assert get_pid(port) == second != first


def test_timeout_kills_a_worker_whose_event_loop_is_blocked(
    started: list[Gunicorn], app_dir: Path
) -> None:
    gunicorn = start(started, app_dir, "--timeout", "2")
    port = gunicorn.port()
    workers = set(gunicorn.serving())
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as blocked:
        blocked.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        killed = gunicorn.wait_for_line(r"WORKER TIMEOUT \(pid:(\d+)\)")[1]
        assert killed in workers
        # The worker's SIGABRT handler raised in the app: the request ends, as a 500.
        answer = blocked.recv(1024)
        assert answer.startswith(b"HTTP/1.1 500 "), answer
    replacement = gunicorn.wait_for_count(BOOTED, 3)[2]
    assert replacement not in workers
    # The loop of a live worker keeps telling the arbiter it is alive: no other timeout.
    gunicorn.serving(3)
    answered = {get_pid(port) for _ in range(6)}
    assert killed not in answered
    timeouts = [line for line in gunicorn.lines if "WORKER TIMEOUT" in line]
    assert len(timeouts) == 1, timeouts


def test_unix_socket_stays_when_a_worker_is_recycled(
    started: list[Gunicorn], app_dir: Path, tmp_path: Path
) -> None:
    # A recycled worker must not remove the arbiter's socket file on its way out.
    path = tmp_path / "g.sock"
    gunicorn = Gunicorn(app_dir, "-w", "1", "--max-requests", "1", bind=f"unix:{path}")
    started.append(gunicorn)
    gunicorn.serving(1)
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, timeout=DEADLINE_S) as client:
        first = client.get("http://gunicorn/", headers={"connection": "close"}).text
        gunicorn.serving(2)
        assert path.exists()
        second = client.get("http://gunicorn/", headers={"connection": "close"}).text
    assert first != second


def test_https_and_wss_with_gunicorn_certfile_and_keyfile(
    started: list[Gunicorn], app_dir: Path, tmp_path: Path
) -> None:
    import trustme
    from tls_certs import client_context, write_server_cert
    from websockets.sync.client import connect

    ca = trustme.CA()
    _cert, certfile, keyfile = write_server_cert(ca, tmp_path, "127.0.0.1")
    context = client_context(ca)
    gunicorn = start(started, app_dir, "--certfile", certfile, "--keyfile", keyfile)
    port = int(gunicorn.wait_for_line(r"Listening at: https://127\.0\.0\.1:(\d+)")[1])
    workers = gunicorn.serving()
    response = httpx.get(f"https://127.0.0.1:{port}/", verify=context, timeout=DEADLINE_S)
    assert response.text in workers
    with connect(f"wss://127.0.0.1:{port}/", ssl=context, open_timeout=DEADLINE_S) as ws:
        ws.send("secure")
        assert str(ws.recv(timeout=DEADLINE_S)).endswith(" secure")


def test_a_value_asgiws_refuses_stops_gunicorn_naming_it(app_dir: Path) -> None:
    command = [sys.executable, "-m", "gunicorn", "-k", "asgiws.workers.AsgiwsWorker",
               "-b", "127.0.0.1:0", "--chdir", str(app_dir), *NO_CONTROL_SOCKET,
               "gapp:app"]  # fmt: skip
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=clean_env(ASGIWS_WS_MAX_SIZE="lots"),
        timeout=60,
    )
    assert result.returncode == 1
    assert "Error: asgiws: ASGIWS_WS_MAX_SIZE: invalid value 'lots'" in result.stderr
    assert "Traceback" not in result.stderr


# -- Settings ------------------------------------------------------------------------------------


def make_cfg(**settings: object) -> Any:
    cfg = gunicorn_config.Config()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


def test_gunicorn_settings_become_asgiws_options() -> None:
    cfg = make_cfg(
        keepalive=7,
        graceful_timeout=12,
        limit_request_fields=40,
        max_requests=100,
        max_requests_jitter=10,
        forwarded_allow_ips="10.0.0.1,10.0.0.2",  # gunicorn 23 takes no networks
        loglevel="debug",
        accesslog="-",
    )
    config = worker_config(cfg, {"ASGIWS_WS_MAX_SIZE": "1MiB", "ASGIWS_TIMEOUT_KEEP_ALIVE": "99"})
    assert config.timeout_keep_alive == 7.0  # gunicorn's setting wins over ASGIWS_*
    assert config.timeout_graceful_shutdown == 12.0
    assert config.max_header_count == 40
    assert config.limit_max_requests == 100 and config.limit_max_requests_jitter == 10
    assert config.forwarded_allow_ips == "10.0.0.1,10.0.0.2,unix"
    assert config.log_level == "debug" and config.access_log is True
    assert config.ws_max_size == 1 << 20  # from the environment: gunicorn has no such setting
    assert config.ws_shutdown_code == 1012  # a worker recycled by max_requests is replaced
    assert config.ssl_certfile is None


def test_gunicorn_defaults() -> None:
    config = worker_config(make_cfg(), {})
    assert config.limit_max_requests is None  # gunicorn's 0: no limit
    assert config.access_log is False  # gunicorn logs no access lines without --access-logfile
    assert config.timeout_keep_alive == 2.0  # gunicorn's default keepalive


def test_tls_files_are_passed_on(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    config = worker_config(make_cfg(certfile=str(cert), keyfile=str(key)), {})
    assert (config.ssl_certfile, config.ssl_keyfile) == (str(cert), str(key))


def test_a_bad_environment_value_is_named() -> None:
    with pytest.raises(OptionError, match="ASGIWS_WS_PING_INTERVAL: invalid value 'often'"):
        worker_config(make_cfg(), {"ASGIWS_WS_PING_INTERVAL": "often"})


def test_check_config_refuses_what_asgiws_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGIWS_WS_MAX_SIZE", "lots")
    with pytest.raises(RuntimeError, match="asgiws: ASGIWS_WS_MAX_SIZE: invalid value 'lots'"):
        AsgiwsWorker.check_config(make_cfg(), RecordingLog())


class RecordingLog:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: object) -> None:
        self.warnings.append(message % args)


def test_settings_not_applied_are_warned_about_only_when_set() -> None:
    log = RecordingLog()
    AsgiwsWorker.check_config(make_cfg(), log)
    assert log.warnings == []
    # A boolean before gunicorn 24, a mode ("v1", "v2", "auto") since.
    proxy_on = True if isinstance(make_cfg().proxy_protocol, bool) else "v1"
    AsgiwsWorker.check_config(make_cfg(threads=4, proxy_protocol=proxy_on), log)
    assert sorted(log.warnings) == [
        "asgiws does not apply gunicorn's proxy_protocol setting: asgiws does not read the "
        "PROXY protocol",
        "asgiws does not apply gunicorn's threads setting: one event loop serves every "
        "connection of a worker",
    ]


def test_a_reload_is_told_from_a_shutdown_by_the_configuration_object() -> None:
    from asgiws.workers import _Generation

    generation = _Generation()
    first, reloaded = make_cfg(), make_cfg()
    generation.worker_created(first, 1)
    generation.worker_created(first, 2)
    generation.worker_created(first, 3)  # a replacement (max-requests, a crash): same config
    assert not any(generation.replaced(age) for age in (1, 2, 3))
    generation.worker_created(reloaded, 4)  # SIGHUP: the arbiter made a new config object
    generation.worker_created(reloaded, 5)
    assert generation.replaced(1) and generation.replaced(3)
    assert not generation.replaced(4) and not generation.replaced(5)


async def test_the_heartbeat_beats_until_cancelled() -> None:
    import asyncio

    from asgiws.workers import _Heartbeat

    beats: list[float] = []
    three = asyncio.Event()

    def beat() -> None:
        beats.append(asyncio.get_running_loop().time())
        if len(beats) == 3:
            three.set()

    heartbeat = _Heartbeat(asyncio.get_running_loop(), 0.01, beat)
    assert len(beats) == 1  # the first one at once
    await asyncio.wait_for(three.wait(), DEADLINE_S)
    heartbeat.cancel()
    assert heartbeat.handle is None
    assert beats[2] - beats[0] >= 0.015


# -- A worker in this process (so that coverage sees it) ----------------------------------------


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
    elif scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"in process"})


@pytest.fixture
def asgiws_loggers() -> Iterator[None]:
    """The worker points asgiws's loggers at gunicorn's handlers: put them back after."""
    import logging

    saved = []
    for name in ("asgiws", "asgiws.access"):
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def serve_in_process(
    monkeypatch: pytest.MonkeyPatch, stop: str, drive: Callable[[int], object]
) -> tuple[list[object], list[BaseException], AsgiwsWorker]:
    """Run an AsgiwsWorker's run() here, on a socket of ours; ``drive(port)`` in a thread, then
    the worker's ``stop`` method ("_graceful" or "_quick") called in its loop."""
    import os
    import threading
    import types

    from gunicorn.glogging import Logger

    monkeypatch.setenv("ASGIWS_MALLOC_KEEP", "0")  # leave this process's allocator alone
    cfg = make_cfg(graceful_timeout=5)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    worker = AsgiwsWorker(1, os.getppid(), [types.SimpleNamespace(sock=sock)], None, 0.5, cfg,
                          Logger(cfg))  # fmt: skip
    worker.wsgi = echo_app
    results: list[object] = []
    failures: list[BaseException] = []

    def driver() -> None:
        try:
            # Served once the worker's loop accepts: the connection waits in the backlog.
            results.append(get_text(port))
            results.append(drive(port))
        except BaseException as exc:
            failures.append(exc)
        finally:
            server = worker.server  # set before it serves: get_text() waited for that
            if server is not None:
                server.loop.call_soon_threadsafe(getattr(worker, stop))

    thread = threading.Thread(target=driver)
    thread.start()
    try:
        worker.run()
    finally:
        thread.join(DEADLINE_S)
        sock.close()
        worker.tmp.close()
    return results, failures, worker


def get_text(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE_S).text


def test_a_worker_serves_until_its_graceful_stop(
    monkeypatch: pytest.MonkeyPatch, asgiws_loggers: None
) -> None:
    from websockets.sync.client import connect

    def drive(port: int) -> str:
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=DEADLINE_S):
            return get_text(port)

    results, failures, worker = serve_in_process(monkeypatch, "_graceful", drive)
    assert not failures, failures
    assert results == ["in process", "in process"]
    assert worker.alive is False and worker.server.started.is_set()


def test_a_worker_quick_stop_still_closes_websockets_with_1001(
    monkeypatch: pytest.MonkeyPatch, asgiws_loggers: None
) -> None:
    import threading

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    codes: list[int] = []
    opened = threading.Event()

    def client(port: int) -> None:
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=DEADLINE_S) as ws:
            opened.set()
            try:
                ws.recv(timeout=DEADLINE_S)
            except ConnectionClosed as exc:
                codes.append(exc.rcvd.code if exc.rcvd else -1)

    def drive(port: int) -> threading.Thread:
        thread = threading.Thread(target=client, args=(port,))
        thread.start()
        assert opened.wait(DEADLINE_S)
        return thread

    results, failures, _ = serve_in_process(monkeypatch, "_quick", drive)
    assert not failures, failures
    waiter = results[1]
    assert isinstance(waiter, threading.Thread)
    waiter.join(DEADLINE_S)
    assert codes == [1001]


def test_worker_class_is_a_gunicorn_worker() -> None:
    from gunicorn.workers.base import Worker

    assert issubclass(AsgiwsWorker, Worker)
