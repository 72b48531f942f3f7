"""--header, --server-header and --date-header on the wire: HTTP responses, 101 responses, the
server's own error responses and WebSocket denials; an app's own server or date header
replacing the server's exactly once; bad values refused naming the flag and the value."""

from __future__ import annotations

import asyncio
import email.utils
import signal
from typing import Any

import pytest
from apps import read_response, respond
from cli_process import ServerProcess, listening_socket
from wire import RFC_ACCEPT, http_request, ws_request

import asgiws
from asgiws import cli
from asgiws.headers import HeaderError, parse_header, static_headers

DEADLINE_S = 30.0
CUSTOM = ["X-Team: web", "Strict-Transport-Security:  max-age=63072000; includeSubDomains "]
CUSTOM_LINES = [
    b"x-team: web",
    b"strict-transport-security: max-age=63072000; includeSubDomains",
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/own sets its own server and date headers; /ws accepts, /deny denies, /fail raises
    (a 500 from the server); anything else answers 'ok'."""
    path = scope["path"]
    if scope["type"] == "websocket":
        await receive()
        if path == "/deny":
            await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"no"})
            return
        own = [(b"server", b"mine")] if path == "/own" else []
        await send({"type": "websocket.accept", "headers": own})
        await receive()
        return
    if path == "/fail":
        raise RuntimeError("the app fails")
    headers = [(b"content-type", b"text/plain")]
    if path == "/own":
        headers += [(b"Server", b"mine/1.0"), (b"date", b"Tue, 01 Dec 2026 00:00:00 GMT")]
    await respond(send, 200, b"ok", headers)


def head_lines(response: bytes) -> list[bytes]:
    """The header lines of the first response in ``response``, without the status line."""
    head = response.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")[1:]


def names(lines: list[bytes]) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in lines]


async def exchange(running: Any, request: bytes) -> bytes:
    """Send ``request`` and read the server's first response head (and body, to the close)."""
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await asyncio.wait_for(reader.read(65536), DEADLINE_S)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        writer.close()


REQUESTS = {
    "http": http_request("GET", "/"),
    "101": ws_request("/ws"),
    "error 400": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "error 500": http_request("GET", "/fail"),
    "denial 403": ws_request("/deny"),
    "refused upgrade 426": ws_request("/ws", ws_version="8"),
}


@pytest.mark.parametrize("kind", list(REQUESTS))
async def test_custom_headers_on_every_response(
    serve: Any, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level("CRITICAL", logger="asgiws")  # /fail's traceback
    running = await serve(app, header=CUSTOM)
    lines = head_lines(await exchange(running, REQUESTS[kind]))
    for line in CUSTOM_LINES:
        assert lines.count(line) == 1, lines
    assert lines.count(b"server: asgiws") == 1, lines
    assert names(lines).count(b"date") == 1, lines
    if kind == "101":
        assert b"sec-websocket-accept: " + RFC_ACCEPT in lines


@pytest.mark.parametrize("kind", list(REQUESTS))
async def test_no_date_header_and_no_server_header(
    serve: Any, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level("CRITICAL", logger="asgiws")
    running = await serve(app, date_header=False, server_header=False)
    lines = head_lines(await exchange(running, REQUESTS[kind]))
    assert b"date" not in names(lines) and b"server" not in names(lines), lines
    running = await serve(app, date_header=False)
    lines = head_lines(await exchange(running, REQUESTS[kind]))
    assert b"date" not in names(lines) and lines.count(b"server: asgiws") == 1, lines


async def test_the_date_header_is_the_current_time(serve: Any) -> None:
    running = await serve(app)
    lines = head_lines(await exchange(running, REQUESTS["http"]))
    (date,) = [line for line in lines if line.startswith(b"date: ")]
    sent = email.utils.parsedate_to_datetime(date[6:].decode())
    now = email.utils.parsedate_to_datetime(email.utils.formatdate(usegmt=True))
    assert abs((now - sent).total_seconds()) <= 5


async def test_the_apps_own_server_and_date_replace_the_servers_exactly_once(serve: Any) -> None:
    running = await serve(app, header=CUSTOM)
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(http_request("GET", "/own") + http_request("GET", "/"))
    own = await read_response(reader)
    plain = await read_response(reader)
    writer.close()
    assert own.headers.count((b"server", b"mine/1.0")) == 1
    assert own.headers.count((b"date", b"Tue, 01 Dec 2026 00:00:00 GMT")) == 1
    assert [n for n, _ in own.headers].count(b"server") == 1
    assert [n for n, _ in own.headers].count(b"date") == 1
    assert (b"x-team", b"web") in own.headers
    # The next response on the same connection has the server's again.
    assert plain.headers.count((b"server", b"asgiws")) == 1
    lines = head_lines(await exchange(running, ws_request("/own")))
    assert lines.count(b"server: mine") == 1 and b"server: asgiws" not in lines, lines
    assert names(lines).count(b"date") == 1


async def test_a_custom_header_the_app_sets_too_is_the_apps(serve: Any) -> None:
    running = await serve(app, header=["Content-Type: application/json", "Server: edge"])
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(http_request("GET", "/"))
    response = await read_response(reader)
    writer.close()
    assert [h for h in response.headers if h[0] == b"content-type"] == [
        (b"content-type", b"text/plain")
    ]
    # --header server: replaces the server's own, it does not add a second one.
    assert [h for h in response.headers if h[0] == b"server"] == [(b"server", b"edge")]


def test_the_flags_on_a_real_server_process() -> None:
    with listening_socket() as sock:
        server = ServerProcess(
            "asgiws.demo:app", "--fd", str(sock.fileno()), "--header", "X-A: 1",
            "--header", "X-B: 2, 3", "--no-date-header", "--no-access-log",
            pass_fds=(sock.fileno(),),
        )  # fmt: skip
        try:
            port = sock.getsockname()[1]
            with socket_connection(port) as conn:
                conn.sendall(http_request("GET", "/health"))
                lines = head_lines(read_until_head(conn))
            added = [line for line in lines if line.startswith((b"x-", b"server"))]
            assert added == [b"x-a: 1", b"x-b: 2, 3", b"server: asgiws"]
            assert b"date" not in names(lines)
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=DEADLINE_S) == 0
        finally:
            server.stop()


def socket_connection(port: int) -> Any:
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)


def read_until_head(conn: Any) -> bytes:
    data = b""
    for _ in range(1000):
        if b"\r\n\r\n" in data:
            return data
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    raise AssertionError(f"no complete response head in {data!r}")


# -- Bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NoColon", "'NoColon' has no ':' (write NAME:VALUE"),
        (": value", "header name '' is not a token"),
        ("Bad Name: x", "header name 'Bad Name' is not a token (RFC 9110 §5.1)"),
        ("Naïve: x", "header name 'Naïve' is not a token"),
        ("X-A: a\x01b", "header value 'a\\x01b' has a control character (RFC 9110 §5.5)"),
        ("X-A: a\x7fb", "has a control character"),
        ("X-A: €", "header value '€' has characters outside latin-1"),
        ("Content-Length: 5", "header 'content-length' cannot be set with --header: the server"),
        ("Transfer-Encoding: chunked", "header 'transfer-encoding' cannot be set"),
        ("Connection: close", "header 'connection' cannot be set"),
        ("Upgrade: h2c", "header 'upgrade' cannot be set"),
        ("Sec-WebSocket-Accept: x", "header 'sec-websocket-accept' cannot be set"),
        ("Date: today", "the server's clock sets it; --no-date-header leaves it out"),
    ],
)
def test_a_bad_header_names_the_flag_and_the_value(
    value: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_command_line(["m:app", "--header", "X-Ok: 1", "--header", value], {})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"asgiws: error: --header: invalid value {value!r}: " in err
    assert reason in err
    assert "Traceback" not in err
    with pytest.raises(ValueError, match=r"^run\(header=\.\.\.\): invalid value"):
        asgiws.run("asgiws.demo:app", header=[value])
    with pytest.raises(HeaderError):
        parse_header(value)


def test_headers_from_the_environment_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"ASGIWS_HEADER": "X-A: 1, 2\nX-B: b\n", "ASGIWS_SERVER_HEADER": "false"}
    _, config = cli.parse_command_line(["m:app"], environ)
    assert config.header == ("X-A: 1, 2", "X-B: b")
    assert static_headers(config.header, server_header=config.server_header) == [
        (b"x-a", b"1, 2"),
        (b"x-b", b"b"),
    ]
    with pytest.raises(SystemExit):
        cli.parse_command_line(["m:app"], {"ASGIWS_HEADER": "X-A: 1\nbroken"})
    assert "asgiws: error: ASGIWS_HEADER: invalid value 'broken': " in capsys.readouterr().err
    _, config = cli.parse_command_line(["m:app", "--no-date-header"], {})
    assert config.date_header is False and config.server_header is True
