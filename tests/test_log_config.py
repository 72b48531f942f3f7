"""--log-config and --access-log-format with real server processes: a file that routes the
access lines to a file (read back line by line), a configuration of the root logger alone that
receives asgiws's lines, JSON, YAML and INI files, JSON access lines parsed, time zones in the
timestamps, each line written once in the default setup, and bad files and templates refused
with the flag and the value named."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_process import DEADLINE_S, ServerProcess, listening_socket, run_cli
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from asgiws import cli
from asgiws.accesslog import FIELDS, AccessFormat
from asgiws.demo import HEALTH_BYTES
from asgiws.protocol import AccessRecord

# ISO 8601 with milliseconds and the offset (asgiws.logs.Formatter).
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


def serve_and_stop(servers: list[ServerProcess], *args: str, **env: str) -> str:
    """Run the demo app on a listening socket handed over with --fd, make one HTTP request
    and one WebSocket session (closed with 1000), stop it with SIGTERM and return its merged
    stdout and stderr. The socket listens before the server starts, so nothing waits for a
    startup line (which may have been routed away from stdout)."""
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        server = ServerProcess(
            "asgiws.demo:app", "--fd", str(sock.fileno()), *args,
            pass_fds=(sock.fileno(),), **env,
        )  # fmt: skip
        servers.append(server)
        response = httpx.get(f"http://127.0.0.1:{port}/health?x=1", timeout=DEADLINE_S)
        assert response.status_code == 200
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=DEADLINE_S) as ws:
            ws.send("hi")
            assert ws.recv(timeout=DEADLINE_S) == "hi"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=DEADLINE_S) == 0
        return server.output()


def access_file_config(path: Path) -> dict[str, Any]:
    """A dictConfig: access lines, bare, to the file ``path``; the rest to stderr."""
    return {
        "version": 1,
        "formatters": {
            "bare": {"format": "%(message)s"},
            "stamped": {"()": "asgiws.logs.Formatter", "format": "%(asctime)s %(message)s"},
        },
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "bare"},
            "stderr": {"class": "logging.StreamHandler", "formatter": "stamped"},
        },
        "loggers": {
            "asgiws.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
            "asgiws": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


ACCESS_LINES = [
    r'127\.0\.0\.1:\d+ - "GET /health\?x=1 HTTP/1\.1" 200 in \d+\.\d{3}s',
    r'127\.0\.0\.1:\d+ - "GET /ws" WebSocket 101 closed 1000 in \d+\.\d{3}s',
]


def test_a_json_config_routes_the_access_lines_to_a_file(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps(access_file_config(log)), encoding="utf-8")
    output = serve_and_stop(servers, "--log-config", str(config))
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(ACCESS_LINES), lines
    for line, pattern in zip(lines, ACCESS_LINES, strict=True):
        assert re.fullmatch(pattern, line), line
    # Not on stdout as well; the other lines went to the stderr handler of the file.
    assert '"GET /health' not in output
    assert re.search(STAMP + r" asgiws \S+ running on http://127\.0\.0\.1:\d+", output), output
    assert re.search(STAMP + r" received SIGTERM, shutting down", output), output


def test_a_root_only_config_receives_asgiws_lines(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    pytest.importorskip("yaml")
    log = tmp_path / "all.log"
    config = tmp_path / "logging.yaml"
    # The root logger only, and disable_existing_loggers left to its default: asgiws's loggers
    # exist already, and stay enabled.
    config.write_text(
        textwrap.dedent(f"""\
            version: 1
            formatters:
              plain:
                format: "%(levelname)s %(name)s %(message)s"
            handlers:
              file:
                class: logging.FileHandler
                filename: {json.dumps(str(log))}
                formatter: plain
            root:
              level: INFO
              handlers: [file]
        """),
        encoding="utf-8",
    )
    output = serve_and_stop(servers, "--log-config", str(config))
    lines = log.read_text(encoding="utf-8").splitlines()
    assert re.fullmatch(r"INFO asgiws\.error asgiws \S+ running on http://\S+ .*", lines[0])
    access = [line for line in lines if line.startswith("INFO asgiws.access ")]
    assert len(access) == 2, lines
    for line, pattern in zip(access, ACCESS_LINES, strict=True):
        assert re.fullmatch("INFO asgiws.access " + pattern, line), line
    assert "INFO asgiws.error received SIGTERM, shutting down" in lines
    # Each once, and nothing of it on stdout or stderr.
    assert len(lines) == len(set(lines))
    assert "asgiws" not in output and '"GET' not in output


def test_an_ini_config_with_the_time_zone_formatter(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "ini.log"
    config = tmp_path / "logging.ini"
    config.write_text(
        textwrap.dedent(f"""\
            [loggers]
            keys = root

            [handlers]
            keys = file

            [formatters]
            keys = stamped

            [logger_root]
            level = INFO
            handlers = file

            [handler_file]
            class = FileHandler
            args = ({str(log)!r},)
            formatter = stamped

            [formatter_stamped]
            class = asgiws.logs.Formatter
            format = %(asctime)s %(name)s %(message)s
        """),
        encoding="utf-8",
    )
    serve_and_stop(servers, "--log-config", str(config))
    lines = log.read_text(encoding="utf-8").splitlines()
    access = [line for line in lines if " asgiws.access " in line]
    assert len(access) == 2, lines
    for line, pattern in zip(access, ACCESS_LINES, strict=True):
        assert re.fullmatch(STAMP + " asgiws.access " + pattern, line), line


def test_no_access_log_holds_under_a_log_config(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps(access_file_config(log)), encoding="utf-8")
    serve_and_stop(servers, "--log-config", str(config), "--no-access-log")
    assert log.read_text(encoding="utf-8") == ""


def test_the_default_setup_writes_each_line_once_with_its_time_zone(
    servers: list[ServerProcess],
) -> None:
    output = serve_and_stop(servers)
    lines = output.splitlines()
    access = [line for line in lines if " ACCESS  " in line]
    assert len(access) == 2, lines
    for line, pattern in zip(access, ACCESS_LINES, strict=True):
        assert re.fullmatch(STAMP + " ACCESS  " + pattern, line), line
    running = [line for line in lines if "running on" in line]
    assert len(running) == 1
    assert re.match(STAMP + r" INFO    asgiws ", running[0])
    assert len(lines) == len(set(lines)), lines


def test_json_access_lines_parse(servers: list[ServerProcess]) -> None:
    output = serve_and_stop(servers, "--access-log-format", "json")
    objects = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert len(objects) == 2, output
    http, ws = objects
    for item in objects:
        assert re.fullmatch(STAMP, item["time"])
        assert re.fullmatch(r"127\.0\.0\.1:\d+", item["client"])
        assert item["pid"] > 0 and item["http_version"] == "1.1" and item["method"] == "GET"
        assert isinstance(item["duration"], float) and item["duration"] >= 0
    assert (http["kind"], http["path"], http["status"]) == ("http", "/health?x=1", 200)
    assert (http["close_code"], http["bytes"]) == (None, len(HEALTH_BYTES))
    assert (ws["kind"], ws["path"], ws["status"], ws["close_code"]) == (
        "websocket",
        "/ws",
        101,
        1000,
    )
    assert ws["bytes"] is None
    # Every other line is an ordinary log line, not JSON.
    others = [line for line in output.splitlines() if not line.startswith("{")]
    assert all(re.match(STAMP, line) for line in others), others


def test_a_template_from_the_environment(servers: list[ServerProcess]) -> None:
    template = "{kind} {method} {path} {status} {close_code} {bytes}"
    output = serve_and_stop(servers, ASGIWS_ACCESS_LOG_FORMAT=template)
    access = [line.split(" ACCESS  ", 1)[1] for line in output.splitlines() if " ACCESS  " in line]
    assert access == [
        f"http GET /health?x=1 200 - {len(HEALTH_BYTES)}",
        "websocket GET /ws 101 1000 -",
    ]


# -- Bad files and templates ---------------------------------------------------------------------


def bad_config(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("missing.json", None, "No such file or directory"),
        ("broken.json", '{"version": 1,', "invalid JSON: "),
        ("list.json", "[1, 2]", "expected a mapping (a dictConfig), got list"),
        ("noversion.json", "{}", "dictionary doesn't specify a version"),
        (
            "badclass.json",
            '{"version": 1, "handlers": {"h": {"class": "nosuch.Handler"}}}',
            "Unable to configure handler 'h'",
        ),
        (
            "badfile.json",
            '{"version": 1, "handlers": {"h": {"class": "logging.FileHandler", '
            '"filename": "no/such/dir/x.log"}}}',
            "No such file or directory",
        ),
        ("broken.yaml", "version: [1", "invalid YAML: "),
        ("empty.ini", "", "is an empty file"),
        ("nosection.ini", "[loggers]\nkeys = root\n", "missing section or option 'formatters'"),
        ("garbage.ini", "no section header\n", "invalid INI file: "),
        ("missing.ini", None, "No such file"),
        ("logging.toml", "version = 1", "unknown extension '.toml'"),
    ],
)
def test_a_bad_log_config_is_an_error_naming_the_flag_and_the_file(
    tmp_path: Path, name: str, text: str | None, reason: str
) -> None:
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    path = str(tmp_path / name) if text is None else bad_config(tmp_path, name, text)
    result = run_cli("asgiws.demo:app", "--log-config", path, "--port", "0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"asgiws: error: --log-config {path!r}: "), result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_yaml_file_without_pyyaml_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgiws.logconfig import LogConfigError, apply_log_config

    path = bad_config(tmp_path, "logging.yml", "version: 1\n")
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # import yaml fails
    with pytest.raises(LogConfigError, match=r"needs PyYAML \(pip install pyyaml\)"):
        apply_log_config(path)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{client} {nosuch}", "unknown field {nosuch} (the fields: client, method, path, "),
        ("{}", "unknown field {}"),
        ("{status:>5}", "{status}: write the field bare, without ! or :"),
        ("{status!r}", "{status}: write the field bare"),
        ("{status", "expected '}' before end of string"),
    ],
)
def test_a_bad_template_names_the_flag_and_the_value(
    template: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_command_line(["m:app", "--access-log-format", template], {})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"asgiws: error: --access-log-format: invalid value {template!r}: {reason}" in err
    with pytest.raises(SystemExit):
        cli.parse_command_line(["m:app"], {"ASGIWS_ACCESS_LOG_FORMAT": template})
    err = capsys.readouterr().err
    assert f"asgiws: error: ASGIWS_ACCESS_LOG_FORMAT: invalid value {template!r}: " in err


def test_run_refuses_a_bad_template_and_a_bad_log_config(
    tmp_path: Path, restore_logging: None
) -> None:
    import asgiws

    with pytest.raises(ValueError, match=r"run\(access_log_format=\.\.\.\): invalid value"):
        asgiws.run("asgiws.demo:app", access_log_format="{nope}")
    with pytest.raises(ValueError, match=r"invalid value ' ': the template is empty"):
        asgiws.run("asgiws.demo:app", access_log_format=" ")
    missing = str(tmp_path / "none.json")
    with pytest.raises(ValueError, match=r"--log-config '.*none\.json': No such file"):
        asgiws.run("asgiws.demo:app", log_config=missing, port=0)


# -- Each field ----------------------------------------------------------------------------------

ALL_FIELDS = "|".join("{" + name + "}" for name in FIELDS)


def test_every_field_of_a_template() -> None:
    fmt = AccessFormat(ALL_FIELDS + " {{literal}}")
    pid = os.getpid()
    ok = AccessRecord("http", ("127.0.0.1", 5), "POST", "/a?b=1", "1.0", 201)
    ok.body_bytes = 12
    refused = AccessRecord("http", None, "-", "-", "1.1", 400)
    refused.body_bytes = 30
    closed = AccessRecord("websocket", ("::1", 9), "", "/chat", "1.1", 101, close_code=1001)
    rejected = AccessRecord("websocket", "/run/a.sock", "", '/x"\n', "1.1", 403)
    rejected.body_bytes = 0
    left = AccessRecord("http", ("10.0.0.1", 7), "GET", "/slow", "1.1", None)
    assert [fmt.message(r, 0.25) for r in (ok, refused, closed, rejected, left)] == [
        f"127.0.0.1:5|POST|/a?b=1|1.0|http|201|-|0.250|250.000|12|{pid} {{literal}}",
        f"-|-|-|1.1|http|400|-|0.250|250.000|30|{pid} {{literal}}",
        f"[::1]:9|GET|/chat|1.1|websocket|101|1001|0.250|250.000|-|{pid} {{literal}}",
        f'/run/a.sock|GET|/x\\"\\n|1.1|websocket|403|-|0.250|250.000|0|{pid} {{literal}}',
        f"10.0.0.1:7|GET|/slow|1.1|http|-|-|0.250|250.000|-|{pid} {{literal}}",
    ]


def test_every_field_as_json() -> None:
    fmt = AccessFormat("JSON")
    record = AccessRecord("websocket", ("::1", 9), "", '/x"\n\x1b', "1.1", 101, close_code=1000)
    item = json.loads(fmt.message(record, 1.5))
    assert set(item) == {"time", *FIELDS}
    assert re.fullmatch(STAMP, item["time"])
    assert {k: v for k, v in item.items() if k != "time"} == {
        "client": "[::1]:9", "method": "GET", "path": '/x"\n\x1b', "http_version": "1.1",
        "kind": "websocket", "status": 101, "close_code": 1000, "duration": 1.5,
        "duration_ms": 1500.0, "bytes": None, "pid": os.getpid(),
    }  # fmt: skip
    refused = json.loads(fmt.message(AccessRecord("http", None, "-", "-", "1.1", 400), 0.0))
    assert (refused["client"], refused["method"], refused["path"]) == (None, None, None)


async def test_bytes_and_status_from_a_real_server(serve: Any, caplog: Any) -> None:
    """HTTP bodies counted as sent (none for HEAD), a refusal's body, a WebSocket denial's
    body, an accepted session's close code."""
    from apps import read_response
    from wire import http_request, ws_request

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            if scope["path"] == "/deny":
                await send({"type": "websocket.http.response.start", "status": 403})
                await send({"type": "websocket.http.response.body", "body": b"no!"})
                return
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4000})
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"defg"})

    caplog.set_level(logging.INFO, logger="asgiws.access")
    running = await serve(app, access_log=True, access_log_format="{method} {path} {status} "
                          "{close_code} {bytes}")  # fmt: skip
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(http_request("GET", "/get") + http_request("HEAD", "/head"))
    for head in (False, True):
        assert (await read_response(reader, head_request=head)).status == 200
    writer.close()
    refusal = await running.raw(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    body = refusal.split(b"\r\n\r\n", 1)[1]
    assert refusal.startswith(b"HTTP/1.1 400 ") and body
    assert b"HTTP/1.1 403 " in await running.raw(ws_request("/deny"))
    async with ws_connect(f"{running.ws}/ws", open_timeout=DEADLINE_S) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), DEADLINE_S)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4000
    await running.wait_closed()
    lines = [r.getMessage() for r in caplog.records if r.name == "asgiws.access"]
    assert sorted(lines) == sorted([
        "GET /get 200 - 7",
        "HEAD /head 200 - 0",
        f"- - 400 - {len(body)}",
        "GET /deny 403 - 3",
        "GET /ws 101 4000 -",
    ])  # fmt: skip


# -- The README ----------------------------------------------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_part(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1
    return text.split(start, 1)[1].split(end, 1)[0]


def test_the_readme_lists_every_field() -> None:
    rows = [line for line in readme_part("access-fields").splitlines() if line.startswith("| `")]
    assert rows == [f"| `{{{name}}}` | {text}. |" for name, text in FIELDS.items()]


def test_the_readme_sample_config_routes_access_lines_to_a_file(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    sample = readme_part("log-config").removeprefix("```json\n").removesuffix("```\n")
    config = json.loads(sample)
    log = tmp_path / "access.log"
    assert config["handlers"]["access_file"]["filename"] == "access.log"
    config["handlers"]["access_file"]["filename"] = str(log)
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    output = serve_and_stop(servers, "--log-config", str(path))
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    for line, pattern in zip(lines, ACCESS_LINES, strict=True):
        assert re.fullmatch(pattern, line), line
    assert re.search(STAMP + r" INFO asgiws \S+ running on ", output), output
    assert '"GET' not in output


# -- In process: the checks made before logging.config is called -------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("a.json", None, "No such file or directory"),
        ("a.json", b'{"version": 1,', "invalid JSON: Expecting property name"),
        ("a.json", b"[]", "expected a mapping (a dictConfig), got list"),
        ("a.json", b"\xff\xfe{}", "not UTF-8 text (invalid start byte)"),
        ("a.yml", b"version: [1", "invalid YAML: "),
        ("a.yaml", b"- 1\n", "expected a mapping (a dictConfig), got list"),
        ("a.ini", None, "No such file"),
        ("a", b"", "unknown extension '(none)' (expected .json, .yaml, .yml, .ini, .cfg, .conf)"),
    ],
)
def test_log_config_checks_before_applying(
    tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    from asgiws.logconfig import LogConfigError, apply_log_config

    if name.endswith((".yml", ".yaml")):
        pytest.importorskip("yaml")
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LogConfigError) as info:
        apply_log_config(str(path))
    assert str(info.value).startswith(f"--log-config {str(path)!r}: ")
    assert reason in str(info.value)
    with pytest.raises(LogConfigError, match="not a file"):
        apply_log_config(str(_ini_dir(tmp_path)))


def _ini_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "folder.ini"
    folder.mkdir(exist_ok=True)
    return folder


def test_the_reason_includes_the_cause() -> None:
    from asgiws.logconfig import _reason

    try:
        try:
            raise FileNotFoundError("no/such/dir/x.log")
        except FileNotFoundError as cause:
            raise ValueError("Unable to configure handler 'file'") from cause
    except ValueError as exc:
        assert _reason(exc) == "Unable to configure handler 'file': no/such/dir/x.log"
    assert _reason(KeyError()) == "KeyError"


def test_main_reports_a_bad_log_config_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    missing = str(tmp_path / "none.json")
    with pytest.raises(SystemExit) as info:
        cli.main(["asgiws.demo:app", "--log-config", missing])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"asgiws: error: --log-config {missing!r}: No such file or directory\n"


def test_the_option_help_names_every_field() -> None:
    from asgiws.options import options_by_name

    help_text = options_by_name()["access_log_format"].spec.help
    listed = help_text.split("(", 1)[1].split(";", 1)[0]
    assert listed.split(", ") == list(FIELDS)
