"""--env-file: a dotenv file read before the options, so that ASGIWS_* in it count; the
environment and the command line win over it; the app sees its other variables; a missing
file, a directory, a bad value in it and a missing python-dotenv are clear errors."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from cli_process import ServerProcess, run_cli
from ports import free_port

import asgiws
from asgiws import cli
from asgiws.envfile import EnvFileError, read_env_file

DEADLINE_S = 30.0

APP = textwrap.dedent("""\
    import os

    async def app(scope, receive, send):
        assert scope["type"] == "http"
        body = os.environ.get("GREETING", "unset").encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
""")


def test_the_env_file_sets_the_port_and_the_apps_variables(tmp_path: Path) -> None:
    (tmp_path / "greet.py").write_text(APP, encoding="utf-8")
    port = free_port()
    env_file = tmp_path / "prod.env"
    env_file.write_text(
        f"# the port, and a variable for the app\nASGIWS_PORT={port}\n"
        "export GREETING='hello from the file'\nASGIWS_ACCESS_LOG=false\n",
        encoding="utf-8",
    )
    server = ServerProcess("greet:app", "--app-dir", str(tmp_path), "--env-file", str(env_file))
    try:
        server.wait_for_line(rf"running on http://127\.0\.0\.1:{port} ")
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE_S)
        assert response.text == "hello from the file"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=DEADLINE_S) == 0
        assert '"GET / ' not in server.output()  # ASGIWS_ACCESS_LOG=false counted too
    finally:
        server.stop()


def test_the_environment_and_the_command_line_win(tmp_path: Path) -> None:
    (tmp_path / "greet.py").write_text(APP, encoding="utf-8")
    port = free_port()
    env_file = tmp_path / ".env"
    env_file.write_text("ASGIWS_PORT=1\nGREETING=file\nASGIWS_HOST=::1\n", encoding="utf-8")
    server = ServerProcess(
        "greet:app", "--app-dir", str(tmp_path), "--port", str(port),
        GREETING="environment", ASGIWS_ENV_FILE=str(env_file), ASGIWS_HOST="127.0.0.1",
    )  # fmt: skip
    try:
        server.wait_for_line(rf"running on http://127\.0\.0\.1:{port} ")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE_S).text == "environment"
    finally:
        server.stop()


def test_parse_command_line_reads_the_file_before_the_options(tmp_path: Path) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text(
        'ASGIWS_WS_MAX_SIZE=1MiB\nASGIWS_HEADER="X-A: 1\nX-B: 2"\nASGIWS_PORT=9\nEMPTY\n',
        encoding="utf-8",
    )
    _, config = cli.parse_command_line(
        ["m:app", "--env-file", str(env_file), "--port", "7"], {"ASGIWS_WS_MAX_SIZE": "2048"}
    )
    assert (config.port, config.ws_max_size, config.header) == (7, 2048, ("X-A: 1", "X-B: 2"))
    assert config.env_file == str(env_file)
    assert read_env_file(str(env_file)) == {
        "ASGIWS_WS_MAX_SIZE": "1MiB",
        "ASGIWS_HEADER": "X-A: 1\nX-B: 2",
        "ASGIWS_PORT": "9",
    }


@pytest.mark.parametrize("source", ["flag", "environment"])
def test_a_missing_file_or_a_directory_is_an_error_naming_the_flag(
    tmp_path: Path, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    label = "--env-file" if source == "flag" else "ASGIWS_ENV_FILE"
    for path, reason in ((tmp_path / "nope.env", "no such file"), (tmp_path, "is a directory")):
        argv = ["m:app", "--env-file", str(path)] if source == "flag" else ["m:app"]
        environ = {"ASGIWS_ENV_FILE": str(path)} if source == "environment" else {}
        with pytest.raises(SystemExit) as info:
            cli.parse_command_line(argv, environ)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"asgiws: error: {label} {str(path)!r}: {reason}\n" in err


def test_a_bad_value_in_the_file_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("ASGIWS_PORT=eighty\n", encoding="utf-8")
    result = run_cli("asgiws.demo:app", "--env-file", str(env_file))
    assert result.returncode == 2
    assert "asgiws: error: ASGIWS_PORT: invalid value 'eighty' (expected a whole number" in (
        result.stderr
    )
    assert f"(set in --env-file {str(env_file)!r})" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("asgiws.demo:app", "--env-file", str(tmp_path / "missing.env"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"asgiws: error: --env-file {str(tmp_path / 'missing.env')!r}: no such file" in (
        result.stderr
    )


def test_without_python_dotenv_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text("ASGIWS_PORT=1\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "dotenv", None)  # import dotenv fails
    with pytest.raises(SystemExit):
        cli.parse_command_line(["m:app", "--env-file", str(env_file)], {})
    err = capsys.readouterr().err
    assert (
        f"asgiws: error: --env-file {str(env_file)!r}: reading a dotenv file needs "
        "python-dotenv: pip install 'asgiws[dotenv]'"
    ) in err


def test_run_and_server_read_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text("ASGIWS_PORT=eighty\nASGIWS_WS_MAX_SIZE=4096\n", encoding="utf-8")
    # run() changes os.environ: a copy of it, for this test only, without ASGIWS_* variables.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ASGIWS_")}
    monkeypatch.setattr(os, "environ", environ)
    with pytest.raises(ValueError, match=r"ASGIWS_PORT: invalid value 'eighty' .*\(set in run"):
        asgiws.run("asgiws.demo:app", env_file=str(env_file))
    # run() puts the file into os.environ (so the app sees it) and reads the options from it.
    env_file.write_text("ASGIWS_WS_MAX_SIZE=4096\nASGIWS_PORT=1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"run\(access_log_format=\.\.\.\)"):
        asgiws.run("asgiws.demo:app", env_file=str(env_file), access_log_format="{x}")
    assert (environ["ASGIWS_WS_MAX_SIZE"], environ["ASGIWS_PORT"]) == ("4096", "1")
    del environ["ASGIWS_PORT"], environ["ASGIWS_WS_MAX_SIZE"]
    with pytest.raises(EnvFileError, match=r"run\(env_file=\.\.\.\) '.*nope': no such file"):
        asgiws.run("asgiws.demo:app", env_file=str(tmp_path / "nope"))
    # A Server reads it as one more layer, without touching os.environ.
    env_file.write_text("ASGIWS_WS_MAX_SIZE=4096\nASGIWS_PORT=5\n", encoding="utf-8")
    server = asgiws.Server("asgiws.demo:app", env_file=str(env_file), port=0)
    assert (server.config.ws_max_size, server.config.port) == (4096, 0)
    assert "ASGIWS_WS_MAX_SIZE" not in os.environ
    env_file.write_text("ASGIWS_PORT=x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ASGIWS_PORT: invalid value 'x' .*\(set in Server"):
        asgiws.Server("asgiws.demo:app", env_file=str(env_file))
