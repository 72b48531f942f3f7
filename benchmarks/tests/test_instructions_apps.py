"""instructions.py's --app: the option and what it refuses, the framework app on every server's
command line, the JSON body checked, the label and --json row, and one short real run.

The real run counts asgiws with the Starlette app under callgrind (small windows); it is
skipped where valgrind is not installed or this interpreter lacks Starlette.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
instructions = importlib.import_module("benchmarks.instructions")
client = importlib.import_module("benchmarks.instructions_client")
httpload = importlib.import_module("benchmarks.httpload")
servers = importlib.import_module("benchmarks.servers")

pytestmark = pytest.mark.tooling

JSON_BODY = b'{"message":"ok"}'  # apps.HTTP_JSON as Starlette's JSONResponse writes it


# ---- command line ------------------------------------------------------------------------


def test_the_raw_app_is_the_default() -> None:
    assert instructions.parse_args([]).app == "raw"


@pytest.mark.parametrize("app", ["raw", "starlette", "fastapi"])
def test_each_app_is_taken_with_peers_and_http_windows(app: str) -> None:
    args = instructions.parse_args(
        ["--app", app, "--server", "uvicorn-sansio", "--server", "asgiws"]
    )
    assert (args.app, args.server) == (app, ["uvicorn-sansio", "asgiws"])


@pytest.mark.parametrize(
    "argv",
    [
        ["--app", "django"],
        ["--app", "starlette", "--compressed", "10"],  # the raw app's windows only
        ["--app", "fastapi", "--fanout", "5"],  # no /fanout routes in the framework apps
        ["--app", "starlette", "--server", "uvicorn-sansio", "--requests", "0"],
    ],
)
def test_combinations_that_cannot_work_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        instructions.parse_args(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_the_framework_apps_keep_the_websocket_windows() -> None:
    for app in ("starlette", "fastapi"):
        assert instructions.parse_args(["--app", app, "--requests", "0"]).requests == 0


def test_the_raw_app_keeps_its_other_windows() -> None:
    args = instructions.parse_args(["--app", "raw", "--compressed", "10", "--fanout", "5"])
    assert (args.compressed, args.fanout) == (10, 5)


# ---- the server's command line -------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "attribute"),
    [("raw", "echo"), ("starlette", "starlette_echo"), ("fastapi", "fastapi_echo")],
)
def test_every_server_runs_the_chosen_app_of_the_copied_module(app: str, attribute: str) -> None:
    copied = f"{instructions.APP_MODULE}:{attribute}"
    asgiws = instructions.server_argv("/py", 8000, app=app)
    assert copied in asgiws and servers.RAW_APP not in asgiws
    for name in instructions.PEER_FLAGS:
        peer = instructions.peer_argv(name, "/py", 8000, app=app)
        assert copied in peer and servers.RAW_APP not in peer
    target = instructions.Target(REPO, "/py", "abc", app=app)
    assert copied in target.argv(8000)


def test_the_copied_module_provides_the_framework_apps() -> None:
    # What the server imports: the copy's module __getattr__ builds the framework apps.
    apps = importlib.import_module("benchmarks.apps")
    for attribute, package in instructions.APPS.values():
        if package is None:
            assert callable(getattr(apps, attribute))
        else:  # built on first use, so that the raw app never imports a framework
            assert attribute in apps._BUILDERS


def test_a_python_without_the_framework_is_refused_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(instructions.APPS, "nothere", ("echo", "no_such_package_for_asgiws"))
    with pytest.raises(client.Failed, match="no_such_package_for_asgiws") as failed:
        instructions.check_app(sys.executable, "nothere")
    assert "--app nothere" in str(failed.value) and "--python" in str(failed.value)
    instructions.check_app(sys.executable, "raw")  # nothing to import


# ---- what the client checks ----------------------------------------------------------------


def test_the_get_body_is_the_one_httpload_expects() -> None:
    assert httpload.expected_body("starlette") == httpload.expected_body("fastapi") == JSON_BODY
    ok = client.Response(200, {"content-length": str(len(JSON_BODY))}, JSON_BODY)
    client.check_response(ok, 0, JSON_BODY)
    with pytest.raises(client.Failed, match="expected b'ok'"):
        client.check_response(ok, 0)  # the raw app's body by default
    with pytest.raises(client.Failed, match="body b'ok'"):
        client.check_response(client.Response(200, {}, b"ok"), 0, JSON_BODY)


# ---- output ---------------------------------------------------------------------------------


def _result(server: str, app: str) -> Any:
    return instructions.Result(
        tree="/t", commit="aaaaaaa", server=server, versions="uvicorn 1.0", python="/py",
        asgiws_file="", run=1, echoes=0, connections=10, handshakes=0, requests=1_000,
        http_connections=10, get_instructions=200_000_000, get_seconds=1.0,
        idle_instructions=50_000, idle_seconds=0.5, seconds=10.0, app=app,
    )  # fmt: skip


def test_the_label_and_json_name_the_app() -> None:
    results = [_result("asgiws", "starlette"), _result("uvicorn-sansio", "starlette")]
    text = "\n".join(instructions.summary_lines(results))
    assert "aaaaaaa+starlette run 1 (/t, 10 s):" in text
    assert "uvicorn-sansio+starlette run 1 (uvicorn 1.0, 10 s):" in text
    assert "http-post" not in text
    assert "http-get: uvicorn-sansio+starlette vs aaaaaaa+starlette" in text
    row = json.loads(json.dumps(dataclasses.asdict(results[0])))
    assert (row["app"], row["post_per_request"], row["get_per_request"]) == (
        "starlette", None, 200_000,
    )  # fmt: skip
    assert _result("asgiws", "raw").label == "aaaaaaa"  # the raw app's labels stay as they were
    assert dataclasses.asdict(_result("asgiws", "raw"))["app"] == "raw"


# ---- one short real run under callgrind ---------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
    reason="valgrind is not installed",
)
@pytest.mark.skipif(
    importlib.util.find_spec("starlette") is None, reason="this interpreter lacks starlette"
)
def test_a_short_run_with_the_starlette_app_under_callgrind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(instructions, "IDLE", 0.5)  # the idle window is not under test
    argv = [
        "--echoes", "2", "--connections", "1", "--warmup-echoes", "1", "--handshakes", "1",
        "--warmup-handshakes", "1", "--requests", "4", "--http-connections", "2",
        "--warmup-requests", "1", "--app", "starlette", "--python", sys.executable,
        "--tree", str(REPO), "--timeout", "300", "--json",
    ]  # fmt: skip
    try:
        assert instructions.main(argv) == 0
    finally:
        # main() sets SIGTERM to raise KeyboardInterrupt and pins this process to a core.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)["results"]
    assert "http-post: skipped: the starlette app has no POST route" in captured.err
    assert (row["app"], row["requests"], row["post_instructions"]) == ("starlette", 4, None)
    # What one request and one echo cost a server under callgrind, within wide bounds.
    assert 20_000 < row["get_per_request"] < 5_000_000
    assert 5_000 < row["echo_per_message"] < 5_000_000
    assert row["handshake_per_loop"] > row["echo_per_message"]


@pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="no fastapi here")
def test_the_fastapi_websocket_route_echoes() -> None:
    # Its annotation was a string FastAPI did not resolve: it closed every upgrade with 1008.
    apps = importlib.import_module("benchmarks.apps")
    sent: list[dict[str, Any]] = []
    incoming: list[dict[str, Any]] = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hello"},
        {"type": "websocket.disconnect", "code": 1000},
    ]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "scheme": "ws", "path": "/", "raw_path": b"/", "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2), "subprotocols": [],
    }  # fmt: skip
    asyncio.run(apps.fastapi_echo(scope, receive, send))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send"]
    assert sent[1]["text"] == "hello"
