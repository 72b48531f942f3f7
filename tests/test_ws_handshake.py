"""End-to-end WebSocket handshakes through a real asgiws server: rejections, the scope, the
accept, the app's answer before accepting, the denial response."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from apps import (
    Recorder,
    quick_serve,
    read_frame,
    read_head,
    read_response,
    wait_eof,
    ws_connect_raw,
    ws_echo,
)
from websockets.exceptions import InvalidStatus
from wire import OP_BINARY, OP_TEXT, RFC_ACCEPT, RFC_KEY, http_request, ws_request
from wire import client_frame as frame
from ws_helpers import connect, next_data_frame, raw_open, recording_echo, rejected


@pytest.fixture
def serve(serve: Any) -> Any:
    return quick_serve(serve)


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        pytest.param(ws_request(method="POST"), 405, ["GET", "POST"], id="post"),
        pytest.param(ws_request(version="1.0"), 400, ["HTTP/1.1", "1.0"], id="http-1.0"),
        pytest.param(ws_request(host=False), 400, ["Host"], id="no-host"),
        pytest.param(ws_request(key=None), 400, ["Sec-WebSocket-Key"], id="no-key"),  # type: ignore[arg-type]
        pytest.param(
            ws_request(key=b"not base64 at all!!"),
            400,
            ["Sec-WebSocket-Key", "not base64 at all!!"],
            id="key-not-base64",
        ),
        pytest.param(
            ws_request(key=b"c2hvcnQga2V5"),  # base64 of "short key": 9 bytes, not 16
            400,
            ["Sec-WebSocket-Key", "c2hvcnQga2V5"],
            id="key-wrong-length",
        ),
        pytest.param(ws_request(ws_version="8"), 426, ["Sec-WebSocket-Version", "8"], id="v8"),
        pytest.param(ws_request(ws_version=None), 426, ["Sec-WebSocket-Version"], id="no-version"),
    ],
)
async def test_handshake_rejected(
    serve: Any, request_bytes: bytes, status: int, words: list[str]
) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    response = await rejected(running, request_bytes)
    assert response.status == status
    for word in words:
        assert word.lower() in response.text.lower(), (word, response.text)
    if status == 405:
        assert response.header(b"allow") == b"GET"
    if status == 426:
        assert response.header(b"sec-websocket-version") == b"13"
        assert response.header(b"upgrade").lower() == b"websocket"
    assert recorder.scopes == []
    assert recorder.messages == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(ws_request(connection="keep-alive, Upgrade"), id="connection-list"),
        pytest.param(ws_request(upgrade="WebSocket"), id="upgrade-case"),
        pytest.param(ws_request(connection="upgrade"), id="connection-lower"),
    ],
)
async def test_handshake_variants_accepted(serve: Any, request_bytes: bytes) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running, request_bytes)
    try:
        writer.write(frame(OP_TEXT, "hi"))
        got = await read_frame(reader)
        assert (got.opcode, got.payload) == (OP_TEXT, b"hi")
    finally:
        writer.close()


async def test_rfc_accept_value(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()))
    request = ws_request(key=RFC_KEY)
    _reader, writer, response = await ws_connect_raw(running.host, running.port, request)
    writer.close()
    assert response.status == 101
    assert response.header(b"sec-websocket-accept") == RFC_ACCEPT
    assert (response.header(b"upgrade") or b"").lower() == b"websocket"
    assert (response.header(b"connection") or b"").lower() == b"upgrade"


async def test_frame_right_behind_the_request_is_not_lost(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(ws_request() + frame(OP_TEXT, "early bird") + frame(OP_BINARY, b"\x00\x01"))
        assert (await read_head(reader)).status == 101
        first = await read_frame(reader)
        second = await read_frame(reader)
    finally:
        writer.close()
    assert (first.opcode, first.payload) == (OP_TEXT, b"early bird")
    assert (second.opcode, second.payload) == (OP_BINARY, b"\x00\x01")
    receives = recorder.of_type("websocket.receive")
    assert receives[:2] == [
        {"type": "websocket.receive", "text": "early bird"},
        {"type": "websocket.receive", "bytes": b"\x00\x01"},
    ]


async def test_websocket_scope(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    request = ws_request(
        "/chat%20room/x?room=1&u=%20",
        extra=[
            ("Sec-WebSocket-Protocol", " a, b,, c "),
            ("X-Dup", "1"),
            ("Sec-WebSocket-Protocol", "d"),
            ("Sec-WebSocket-Protocol", ""),
            ("X-Dup", "2"),
        ],
    )
    _reader, writer, response = await ws_connect_raw(running.host, running.port, request)
    local = writer.get_extra_info("sockname")
    writer.close()
    assert response.status == 101
    assert response.header(b"sec-websocket-protocol") is None  # the app chose none
    (scope,) = recorder.scopes
    assert scope["type"] == "websocket"
    assert scope["asgi"]["spec_version"] == "2.5"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat room/x"
    assert scope["raw_path"] == b"/chat%20room/x"
    assert scope["query_string"] == b"room=1&u=%20"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["a", "b", "c", "d"]
    assert "websocket.http.response" in scope["extensions"]
    assert [v for k, v in scope["headers"] if k == b"x-dup"] == [b"1", b"2"]
    assert all(k == k.lower() for k, _ in scope["headers"])
    assert scope["client"] == ("127.0.0.1", local[1])
    assert scope["server"] == ("127.0.0.1", running.port)
    assert "method" not in scope


async def test_accept_with_offered_subprotocol(serve: Any) -> None:
    running = await serve(recording_echo(Recorder(), subprotocol="superchat"))
    async with connect(running.ws, subprotocols=["chat", "superchat"]) as ws:
        assert ws.subprotocol == "superchat"
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "superchat"
        await ws.send("x")
        assert await ws.recv() == "x"


async def test_accept_without_subprotocol_sends_no_header(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()))
    async with connect(running.ws, subprotocols=["chat"]) as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers


async def test_accept_with_subprotocol_not_offered_is_500(serve: Any, caplog: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "websocket.accept", "subprotocol": "other"})
        except RuntimeError as exc:
            recorder.error(exc)
            raise

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    with pytest.raises(InvalidStatus) as info:
        async with connect(running.ws, subprotocols=["chat"]):
            pass
    assert info.value.response.status_code == 500
    (error,) = recorder.errors
    assert "'other'" in str(error) and "'chat'" in str(error)


async def test_accept_headers_appear_in_101(serve: Any) -> None:
    running = await serve(
        recording_echo(Recorder(), headers=[(b"x-custom", b"yes"), (b"set-cookie", b"a=1")])
    )
    async with connect(running.ws) as ws:
        assert ws.response.headers["X-Custom"] == "yes"
        assert ws.response.headers["Set-Cookie"] == "a=1"


async def test_accept_headers_may_not_set_subprotocol(serve: Any, caplog: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        try:
            await send(
                {
                    "type": "websocket.accept",
                    "headers": [(b"sec-websocket-protocol", b"chat")],
                }
            )
        except RuntimeError as exc:
            recorder.error(exc)
            raise

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    with pytest.raises(InvalidStatus) as info:
        async with connect(running.ws, subprotocols=["chat"]):
            pass
    assert info.value.response.status_code == 500
    (error,) = recorder.errors
    assert "sec-websocket-protocol" in str(error).lower()


async def test_close_before_accept_is_403(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    running = await serve(app)
    response = await rejected(running, ws_request())
    assert response.status == 403


async def test_exception_before_accept_is_500(serve: Any, caplog: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise ValueError("no")

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    response = await rejected(running, ws_request())
    assert response.status == 500


async def test_return_before_accept_is_500(serve: Any, caplog: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    response = await rejected(running, ws_request())
    assert response.status == 500


async def test_denial_response(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        recorder.message(await receive())
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 418,
                "headers": [(b"content-type", b"text/plain"), (b"x-why", b"teapot")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"I'm ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"a teapot"})
        recorder.message(await receive())

    running = await serve(app)
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(ws_request())
        response = await read_response(reader)
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    assert response.status == 418
    assert response.header(b"x-why") == b"teapot"
    assert response.body == b"I'm a teapot"
    assert response.header(b"sec-websocket-accept") is None
    await recorder.wait_for(lambda: len(recorder.messages) == 2)
    assert recorder.messages[1]["type"] == "websocket.disconnect"

    with pytest.raises(InvalidStatus) as info:
        async with connect(running.ws):
            pass
    assert info.value.response.status_code == 418
    assert info.value.response.body == b"I'm a teapot"


async def test_client_window_bits_option_is_negotiated_with_a_real_client(serve: Any) -> None:
    from websockets.asyncio.client import connect as ws_connect

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"]})

    running = await serve(app, ws_deflate_client_window_bits=10)
    async with ws_connect(f"{running.ws}/w", compression="deflate") as ws:
        assert ws.response is not None
        extensions = ws.response.headers["Sec-WebSocket-Extensions"]
        assert "client_max_window_bits=10" in extensions
        text = "".join(f"{i:06d} repeated words compress well " for i in range(20000))
        await ws.send(text)
        assert await ws.recv() == text


async def test_http_and_websocket_on_one_connection_sequence(serve: Any) -> None:
    # A keep-alive HTTP request first, then an upgrade on the same connection.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await receive()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"2")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await ws_echo(scope, receive, send)

    running = await serve(app)
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(http_request())
        assert (await read_response(reader)).body == b"ok"
        writer.write(ws_request())
        assert (await read_head(reader)).status == 101
        writer.write(frame(OP_TEXT, "after http"))
        echo = await next_data_frame(reader)
        assert echo.payload == b"after http"
    finally:
        writer.close()
