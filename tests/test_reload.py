"""``--reload``: the real command on an app in a temporary directory, edited while it serves."""

from __future__ import annotations

import logging
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_process import DEADLINE_S, ServerProcess, listening_socket, run_cli

from asgiws.config import Config
from asgiws.options import build_config, env_values, options, options_by_name
from asgiws.reload import ChangeFilter, child_environ, option_text, run_reloader

pytest.importorskip("watchfiles")

APP = textwrap.dedent(
    """
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await send({{"type": "websocket.accept"}})
            while (await receive())["type"] != "websocket.disconnect":
                pass
            return
        if scope["type"] != "http":
            return
        await receive()
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        await send({{"type": "http.response.body", "body": b"{answer}"}})
    """
)

SERVING = r"running on http://127\.0\.0\.1:(\d+)"
RESTART = r"changed: (.*); restarting"


def write_app(directory: Path, answer: str) -> None:
    (directory / "app.py").write_text(APP.format(answer=answer))


def reloading(
    servers: list[ServerProcess], directory: Path, *args: str
) -> tuple[ServerProcess, int]:
    server = ServerProcess(
        "app:app", "--reload", "--port", "0", "--app-dir", str(directory),
        "--reload-dir", str(directory), "--no-access-log", *args,
    )  # fmt: skip
    servers.append(server)
    return server, int(server.wait_for_line(SERVING)[1])


def get(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE_S).text


# -- The command ---------------------------------------------------------------------------------


def test_an_edit_is_served_by_a_fresh_process_on_the_same_port(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    write_app(tmp_path, "one")
    server, port = reloading(servers, tmp_path)
    server.wait_for_line(r"reloader \(pid \d+\) watching .* for \*\.py, with watchfiles")
    assert get(port) == "one"
    with connect(f"ws://127.0.0.1:{port}/", open_timeout=DEADLINE_S) as ws:
        write_app(tmp_path, "two")
        # The old process is stopped gracefully before the new one starts.
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=DEADLINE_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert server.wait_for_count(RESTART, 1) == ["app.py"]
    assert server.wait_for_count(SERVING, 2) == [str(port)] * 2
    assert get(port) == "two"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=DEADLINE_S) == 0
    output = server.output()
    assert "Traceback" not in output
    assert output.count("shutting down") == 2  # each child's graceful shutdown, once


def test_a_syntax_error_is_logged_and_the_fix_is_picked_up(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    write_app(tmp_path, "one")
    server, port = reloading(servers, tmp_path)
    assert get(port) == "one"
    (tmp_path / "app.py").write_text("async def app(scope, receive, send)\n    pass\n")
    server.wait_for_line(r"asgiws: error: .*SyntaxError: .*app\.py, line 1")
    server.wait_for_line(r"exited with status 1: waiting for a file to change")
    # Nothing serves now, but the reloader keeps the socket: a client waits in the backlog and
    # is answered once the file is fixed.
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as waiting:
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        write_app(tmp_path, "fixed")
        server.wait_for_count(SERVING, 2)
        answer = b""
        while chunk := waiting.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"fixed")
    assert get(port) == "fixed"
    assert "Traceback" not in "".join(server.lines)


def test_include_and_exclude_globs(servers: list[ServerProcess], tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    for folder in ("skipped", ".hidden", "templates"):
        (tmp_path / folder).mkdir()
    server, port = reloading(
        servers, tmp_path, "--reload-include", "*.html", "--reload-exclude", "skipped",
        "--reload-exclude", "*_test.py",
    )  # fmt: skip
    # Written first, none of these restarts the app: a directory excluded by name, a file
    # excluded by a glob, a hidden directory, a file matching no include glob ...
    (tmp_path / "skipped" / "module.py").write_text("x = 1\n")
    (tmp_path / "app_test.py").write_text("x = 1\n")
    (tmp_path / ".hidden" / "module.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("notes\n")
    # ... and then one that does: the only restart names it alone.
    (tmp_path / "templates" / "page.html").write_text("<p>hi</p>\n")
    assert server.wait_for_count(RESTART, 1) == ["templates/page.html"]
    server.wait_for_count(SERVING, 2)
    assert get(port) == "one"
    (tmp_path / "other.py").write_text("x = 2\n")  # *.py is still watched
    assert server.wait_for_count(RESTART, 2)[1] == "other.py"


def test_sigint_stops_the_child_once_and_exits_0(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    write_app(tmp_path, "one")
    server, port = reloading(servers, tmp_path)
    assert get(port) == "one"
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=DEADLINE_S) == 0
    output = server.output()
    assert output.count("received SIGTERM, shutting down") == 1
    assert "forced exit" not in output and "Traceback" not in output
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S).close()


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    result = run_cli("asgiws.demo:app", "--reload", "--reload-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert f"--reload-dir: '{tmp_path / 'nowhere'}' is not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_watchfiles_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['watchfiles'] = None; from asgiws import cli; "
        "cli.main(['asgiws.demo:app', '--reload', '--port', '0'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "--reload needs watchfiles: pip install 'asgiws[reload]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_reload_with_workers_is_an_error_naming_both() -> None:
    if "workers" not in options_by_name():
        pytest.skip("--workers is added on another branch")
    result = run_cli("asgiws.demo:app", "--reload", "--workers", "2")
    assert result.returncode == 2
    assert "--reload and --workers cannot be used together" in result.stderr


# -- The pieces ----------------------------------------------------------------------------------


def test_the_filter(tmp_path: Path) -> None:
    accept = ChangeFilter([tmp_path], ["*.html", "static/*.css"], ["build", "*_test.py"])
    yes = ["app.py", "pkg/mod.py", "templates/page.html", "static/site.css"]
    no = [
        "app.pyc", "notes.md", "build/gen.py", "a/build/gen.py", "app_test.py", ".venv/x.py",
        "pkg/.hidden.py", "__pycache__/app.py", "app.py~", "other/site.css",
    ]  # fmt: skip
    for name in yes:
        assert accept(None, str(tmp_path / name)), name
    for name in no:
        assert not accept(None, str(tmp_path / name)), name


def test_the_child_gets_every_option_back_through_its_environment() -> None:
    config = build_config(
        (
            {
                "ws_allowed_origins": ("https://a.example", "https://*.b.example"),
                "reload_dir": ("src", "lib"),
                "timeout_keep_alive": 2.5,
                "limit_max_requests": 7,
                "ssl_certfile": None,
                "root_path": "/api",
                "ws_shutdown_code": 1012,
                "access_log": False,
                "reload": True,
            },
            lambda o: o.flag,
        )
    )
    env = child_environ(config, 9, {"PATH": "/bin", "ASGIWS_STALE": "x"})
    assert env["PATH"] == "/bin" and "ASGIWS_STALE" not in env
    again = build_config((env_values(env), lambda o: o.env))
    for option in options():
        expected = getattr(config, option.name)
        if option.name == "reload":
            expected = False
        elif option.name == "fd":
            expected = 9
        assert getattr(again, option.name) == expected, option.name


def test_option_text_of_each_default() -> None:
    from asgiws.options import convert

    defaults = Config()
    for option in options():
        value = getattr(defaults, option.name)
        text = option_text(option, value)
        assert convert(option, text, option.env, from_text=True) == value, option.name


def test_run_reloads_a_named_app_only(tmp_path: Path) -> None:
    import asgiws

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match=r"run\(reload=True\): the app must be a"):
        asgiws.run(app, reload=True)
    with pytest.raises(ValueError, match=r"Server\(reload=...\)"):
        asgiws.Server(app, reload=True)


def test_run_with_reload_true_runs_the_reloader(tmp_path: Path) -> None:
    write_app(tmp_path, "from run()")
    code = (
        "import asgiws, sys; sys.exit(asgiws.run('app:app', reload=True, port=0, "
        f"app_dir={str(tmp_path)!r}, reload_dir=[{str(tmp_path)!r}], access_log=False))"
    )

    class Run(ServerProcess):
        def __init__(self) -> None:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            self._read_lines()

    process = Run()
    try:
        port = int(process.wait_for_line(SERVING)[1])
        process.wait_for_line(r"reloader \(pid \d+\) watching")
        assert get(port) == "from run()"
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(timeout=DEADLINE_S) == 0
    finally:
        process.stop()


# -- The reloader in this process (so that coverage sees it) -------------------------------------


class LogLines(logging.Handler):
    """The messages logged to ``asgiws.error``, to wait on from another thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.messages.append(record.getMessage())
            self.changed.notify_all()

    def wait_for(self, pattern: str, count: int = 1) -> None:
        regex = re.compile(pattern)
        with self.changed:
            found = self.changed.wait_for(
                lambda: sum(1 for m in self.messages if regex.search(m)) >= count, DEADLINE_S
            )
        assert found, f"fewer than {count} messages match {pattern!r}: {self.messages!r}"


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    logger = logging.getLogger("asgiws.error")
    handler = LogLines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_the_reloader_restarts_after_a_syntax_error_is_fixed(
    tmp_path: Path, log_lines: LogLines
) -> None:
    write_app(tmp_path, "one")
    sock = listening_socket()
    port = sock.getsockname()[1]
    values = {"fd": sock.detach(), "reload_dir": (str(tmp_path),), "app_dir": str(tmp_path),
              "access_log": False}  # fmt: skip
    config = build_config((values, lambda o: o.flag))
    stop = threading.Event()
    answers: list[str] = []
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            log_lines.wait_for(r"reloader \(pid \d+\) watching")
            answers.append(get(port))  # waits in the backlog until the child serves
            (tmp_path / "app.py").write_text("async def app(scope, receive, send)\n")
            log_lines.wait_for(r"exited with status 1: waiting for a file to change")
            write_app(tmp_path, "two")
            log_lines.wait_for(r"changed: app\.py; restarting", 2)
            answers.append(get(port))
        except BaseException as exc:
            failures.append(exc)
        finally:
            stop.set()

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        status = run_reloader("app:app", config, stop)
    finally:
        stop.set()
        driver.join(DEADLINE_S)
    assert not failures, failures
    assert status == 0
    assert answers == ["one", "two"]
    with pytest.raises(OSError):  # the socket is closed with the reloader
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S).close()


def test_the_reloader_refuses_a_missing_directory(tmp_path: Path, log_lines: LogLines) -> None:
    config = build_config(({"reload_dir": (str(tmp_path / "gone"),)}, lambda o: o.flag))
    assert run_reloader("app:app", config) == 1
    log_lines.wait_for(r"--reload-dir: '.*gone' is not a directory")
