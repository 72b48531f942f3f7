"""The asgiws command, run as a real subprocess, and its in-process pieces."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from cli_process import DEADLINE_S, ServerProcess, clean_env, listening_socket, run_cli

import asgiws
from asgiws import cli
from asgiws.config import Config
from asgiws.options import options

# -- Help, version, argument errors --------------------------------------------------------------


def test_help_lists_every_option() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("usage: asgiws [options] APP")
    for option in options():
        assert option.flag in text, option.name
        assert option.env in text, option.name
        if option.negative_flag:
            assert option.negative_flag in text
    assert "[bytes; default 16777216 (16 MiB); env ASGIWS_WS_MAX_SIZE]" in text
    assert "0: no pings" in text
    for section in ("Application:", "Socket:", "Runtime:", "HTTP:", "WebSocket:"):
        assert section in text


def test_help_texts_are_complete() -> None:
    for option in options():
        text = cli.help_text(option)
        assert f"default {option.default_text()}" in text
        assert f"env {option.env}" in text
        if option.spec.zero_means:
            assert f"0: {option.spec.zero_means}" in text


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"asgiws {asgiws.__version__} (")
    assert "h11 " in result.stdout


def test_console_script_version() -> None:
    script = shutil.which("asgiws", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the asgiws console script is not installed next to this Python")
    result = subprocess.run(
        [script, "--version"], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"asgiws {asgiws.__version__}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x:app", "--ws-max-size", "ten"],
         "asgiws: error: --ws-max-size: invalid value 'ten' "
         "(expected a whole number of bytes, at least 1)"),
        (["x:app", "--port", "65536"],
         "asgiws: error: --port: invalid value '65536' (expected a whole number, from 0 to 65535)"),
        (["x:app", "--lifespan", "maybe"],
         "asgiws: error: --lifespan: invalid value 'maybe' (expected one of 'auto', 'on', 'off')"),
        (["x:app", "--ws-ping-interval", "soon"],
         "asgiws: error: --ws-ping-interval: invalid value 'soon' "
         "(expected a number of seconds, at least 0)"),
        (["x:app", "--uds", "/tmp/a.sock", "--fd", "3"],
         "asgiws: error: --uds and --fd cannot be used together"),
        (["x:app", "--no-such-flag"], "asgiws: error: unrecognized arguments: --no-such-flag"),
        (["x:app", "--ws-max"], "asgiws: error: unrecognized arguments: --ws-max"),
        (["x:app", "--port"], "asgiws: error: argument --port: expected one argument"),
        ([], "asgiws: error: the following arguments are required: APP"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_bad_environment_value_exits_2() -> None:
    result = run_cli("x:app", env=clean_env(ASGIWS_WS_MAX_SIZE="ten"))
    assert result.returncode == 2
    assert (
        "asgiws: error: ASGIWS_WS_MAX_SIZE: invalid value 'ten' "
        "(expected a whole number of bytes, at least 1)"
    ) in result.stderr


def test_zlib_ng_asked_for_but_not_installed_exits_2(tmp_path: Path) -> None:
    # A zlib_ng package that cannot be imported stands for one that is not installed.
    (tmp_path / "zlib_ng").mkdir()
    (tmp_path / "zlib_ng" / "__init__.py").write_text("raise ImportError('not here')\n")
    env = clean_env(PYTHONPATH=str(tmp_path))
    result = run_cli("x:app", "--ws-deflate-zlib", "zlib-ng", env=env)
    assert result.returncode == 2
    assert (
        "asgiws: error: --ws-deflate-zlib zlib-ng: the zlib-ng package is not installed "
        "(pip install 'asgiws[fast]')"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("x:app", env={**env, "ASGIWS_WS_DEFLATE_ZLIB": "zlib-ng"})
    assert result.returncode == 2
    assert "asgiws: error: ASGIWS_WS_DEFLATE_ZLIB zlib-ng: the zlib-ng package" in result.stderr
    # 'auto' falls back to CPython's zlib: the option is accepted, the app import fails next.
    result = run_cli("asgiws_no_such_module:app", "--ws-deflate-zlib", "auto", env=env)
    assert result.returncode == 1 and "asgiws_no_such_module" in result.stderr


def test_command_line_value_is_checked_before_the_app_is_imported() -> None:
    # The module does not exist; the bad flag is reported first, with status 2.
    result = run_cli("asgiws_no_such_module:app", "--backlog", "0")
    assert result.returncode == 2
    assert "--backlog: invalid value '0'" in result.stderr


# -- Import errors -------------------------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "goodapp.py").write_text(
        textwrap.dedent(
            """
            async def app(scope, receive, send):
                pass
            """
        )
    )
    (tmp_path / "brokenapp.py").write_text("import json\nvalue = json.loads('{')\n")
    (tmp_path / "depapp.py").write_text("import asgiws_missing_dependency\n")
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("asgiws_no_such_module:app",
         "could not import module 'asgiws_no_such_module': "
         "No module named 'asgiws_no_such_module'"),
        ("goodapp:aap", "module 'goodapp' has no attribute 'aap' (did you mean 'app'?)"),
        ("goodapp", "'goodapp' is not of the form module:attribute"),
        ("brokenapp:app", "error while importing module 'brokenapp': JSONDecodeError: "),
        ("depapp:app", "error while importing module 'depapp': it imports a module that is "
                       "missing: ModuleNotFoundError: No module named 'asgiws_missing_dependency'"),
    ],
)  # fmt: skip
def test_import_errors_exit_1_without_traceback(app_dir: Path, spec: str, message: str) -> None:
    result = run_cli(spec, "--app-dir", str(app_dir))
    assert result.returncode == 1, result.stderr
    assert f"asgiws: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_error_traceback_with_debug(app_dir: Path) -> None:
    result = run_cli("brokenapp:app", "--app-dir", str(app_dir), "--log-level", "debug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'brokenapp.py", line 2' in result.stderr
    assert (
        result.stderr.rstrip()
        .splitlines()[-1]
        .startswith("asgiws: error: error while importing module 'brokenapp': JSONDecodeError")
    )


def test_factory_error_exits_1(app_dir: Path) -> None:
    result = run_cli("goodapp:app", "--factory", "--app-dir", str(app_dir))
    assert result.returncode == 1
    assert "asgiws: error: --factory: calling goodapp:app failed: " in result.stderr


def test_app_dir_from_environment(app_dir: Path) -> None:
    result = run_cli("goodapp:aap", env=clean_env(ASGIWS_APP_DIR=str(app_dir)))
    assert result.returncode == 1
    assert "module 'goodapp' has no attribute 'aap'" in result.stderr


def test_unknown_environment_variable_is_warned_about() -> None:
    result = run_cli("asgiws_no_such_module:app", env=clean_env(ASGIWS_WS_MAXSIZE="1"))
    assert result.returncode == 1
    assert "ignoring unknown environment variable ASGIWS_WS_MAXSIZE" in result.stderr
    assert "did you mean ASGIWS_WS_MAX_SIZE?" in result.stderr


# -- In process: precedence and the pipeline into serve() ---------------------------------------


def test_precedence_cli_over_env_over_default() -> None:
    environ = {"ASGIWS_PORT": "2", "ASGIWS_HOST": "::1", "ASGIWS_ACCESS_LOG": "yes"}
    app, config = cli.parse_command_line(["m:app", "--port", "1", "--no-access-log"], environ)
    assert app == "m:app"
    assert config.port == 1
    assert config.host == "::1"
    assert config.access_log is False
    assert config.ws_max_size == Config().ws_max_size


# Values for options whose text has a format of its own.
SAMPLES = {
    "forwarded_allow_ips": "10.0.0.1",
    "ws_allowed_origins": "https://a.example",
    "header": "X-Team: web",
    "env_file": os.devnull,  # read before the options: it must exist
}


def test_every_option_round_trips_through_the_command_line() -> None:
    argv = ["m:app"]
    for option in options():
        if option.name in ("uds", "reload"):
            continue  # they conflict with --fd and with --workers
        if option.name in SAMPLES:
            argv += [option.flag, SAMPLES[option.name]]
        elif option.kind is bool:
            argv.append(option.negative_flag if option.default else option.flag)  # type: ignore[arg-type]
        elif option.spec.choices is not None:
            argv += [option.flag, str(option.spec.choices[-1])]
        elif option.kind is str:
            argv += [option.flag, "x"]
        else:
            low = option.spec.minimum if option.spec.minimum is not None else 0
            argv += [option.flag, str(int(low) + 1)]
    _, config = cli.parse_command_line(argv, {})
    for option in options():
        if option.name not in ("uds", "reload"):
            assert getattr(config, option.name) != option.default, option.name


def test_main_configures_logging_imports_and_serves(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    calls: list[tuple[Any, Config]] = []

    def serve(app: Any, config: Config) -> int:
        calls.append((app, config))
        return 3

    module = types.ModuleType("asgiws.runtime")
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "asgiws.runtime", module)
    for name in [n for n in os.environ if n.startswith("ASGIWS_")]:
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as info:
        cli.main(["asgiws.demo:app", "--port", "0", "--log-level", "warning"])
    assert info.value.code == 3
    from asgiws import demo

    assert calls[0][0] is demo.app
    assert calls[0][1].port == 0
    import logging

    assert logging.getLogger("asgiws").level == logging.WARNING


# -- With the real server ------------------------------------------------------------------------


def test_startup_logs_the_real_url(servers: list[ServerProcess]) -> None:
    import httpx

    server = ServerProcess("asgiws.demo:app", "--port", "0")
    servers.append(server)
    found = server.wait_for_line(r"http://127\.0\.0\.1:(\d+)")
    port = int(found[1])
    assert port != 0
    response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=DEADLINE_S)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_access_log_lines_and_switching_them_off(servers: list[ServerProcess]) -> None:
    import httpx

    with listening_socket() as sock:
        port = sock.getsockname()[1]
        server = ServerProcess("asgiws.demo:app", "--fd", str(sock.fileno()),
                               pass_fds=(sock.fileno(),))  # fmt: skip
        servers.append(server)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=DEADLINE_S).status_code == 200
        server.wait_for_line(r'127\.0\.0\.1:\d+ - "GET /health HTTP/1\.1" 200 in \d+\.\d{3}s')

    with listening_socket() as sock:
        port = sock.getsockname()[1]
        quiet = ServerProcess("asgiws.demo:app", "--fd", str(sock.fileno()), "--no-access-log",
                              pass_fds=(sock.fileno(),))  # fmt: skip
        servers.append(quiet)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=DEADLINE_S).status_code == 200
        quiet.process.send_signal(signal.SIGTERM)
        assert quiet.process.wait(timeout=DEADLINE_S) == 0
        assert '"GET /health' not in quiet.output()


@pytest.mark.parametrize("code", [1001, 1012])
def test_sigterm_closes_websockets_and_exits_0(servers: list[ServerProcess], code: int) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with listening_socket() as sock:
        port = sock.getsockname()[1]
        server = ServerProcess(
            "asgiws.demo:app",
            "--fd",
            str(sock.fileno()),
            "--ws-shutdown-code",
            str(code),
            pass_fds=(sock.fileno(),),
        )
        servers.append(server)
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=DEADLINE_S) as client:
            client.send("before shutdown")
            assert client.recv(timeout=DEADLINE_S) == "before shutdown"
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                client.recv(timeout=DEADLINE_S)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == code
        assert server.process.wait(timeout=DEADLINE_S) == 0


def test_large_messages_on_uvloop_one_vectored_write(servers: list[ServerProcess]) -> None:
    # Under uvloop a large message's header and payload go out in one writelines() (writev):
    # echo large and small messages, one at a time and then many in flight at once.
    pytest.importorskip("uvloop")
    from websockets.sync.client import connect

    server = ServerProcess("apps:ws_echo", "--app-dir", str(Path(__file__).parent),
                           "--port", "0", "--loop", "uvloop", "--no-access-log")  # fmt: skip
    servers.append(server)
    port = int(server.wait_for_line(r"http://127\.0\.0\.1:(\d+)")[1])
    rng = random.Random(5)
    payloads = [rng.randbytes(size) for size in (1 << 20, 100, 300_000, 65536, 3, 2 << 20)]
    with connect(f"ws://127.0.0.1:{port}/", max_size=None, compression=None,
                 open_timeout=DEADLINE_S, close_timeout=DEADLINE_S) as ws:  # fmt: skip
        for payload in payloads:
            ws.send(payload)
            assert ws.recv(timeout=DEADLINE_S) == payload
        for payload in payloads * 2:  # 7 MiB in flight: fits the server's inbox (--max-queue)
            ws.send(payload)
        for payload in payloads * 2:
            assert ws.recv(timeout=DEADLINE_S) == payload
