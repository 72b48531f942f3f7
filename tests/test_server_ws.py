"""End-to-end WebSocket through a real asgiws server: the websockets client and raw frames."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from apps import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RFC_ACCEPT,
    RFC_KEY,
    TIMEOUT,
    Recorder,
    close_frame,
    frame,
    http_request,
    quick_serve,
    read_frame,
    read_head,
    read_response,
    wait_eof,
    ws_connect_raw,
    ws_echo,
    ws_request,
)
from websockets.asyncio.client import connect as ws_client
from websockets.exceptions import ConnectionClosed, InvalidStatus

from asgiws.protocol import ClientDisconnected


@pytest.fixture
def serve(serve: Any) -> Any:
    return quick_serve(serve)


def connect(uri: str, **kwargs: Any) -> Any:
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    return ws_client(uri, **kwargs)


def recording_echo(recorder: Recorder, **accept: Any) -> Any:
    """Records the scope and every message; accepts, echoes until the client closes."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        recorder.scope(scope)
        assert recorder.message(await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", **accept})
        recorder.note("accepted")
        while True:
            message = recorder.message(await receive())
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    return app


async def raw_open(running: Any, request: bytes | None = None) -> tuple[Any, Any]:
    reader, writer, response = await ws_connect_raw(running.host, running.port, request)
    assert response.status == 101, response
    return reader, writer


async def next_data_frame(reader: Any) -> Any:
    """The next frame that is not a ping (pings are answered by the test where it matters)."""
    for _ in range(100):
        got = await read_frame(reader)
        if got.opcode != OP_PING:
            return got
    raise AssertionError("only pings")


# -- handshake rejections --------------------------------------------------------------------------


async def rejected(running: Any, request: bytes) -> Any:
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(request)
        response = await read_response(reader)
        assert await wait_eof(reader) == b""  # the server closed the connection
    finally:
        writer.close()
    assert response.header(b"content-type").startswith(b"text/plain")
    assert response.header(b"connection") == b"close"
    assert response.text.endswith("\n") and response.text.count("\n") == 1
    return response


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
    assert response.header(b"upgrade").lower() == b"websocket"
    assert response.header(b"connection").lower() == b"upgrade"


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


# -- scope and accept ------------------------------------------------------------------------------


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


# -- messages --------------------------------------------------------------------------------------


async def test_text_and_bytes_both_ways(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    async with connect(running.ws) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xffbin")
        assert await ws.recv() == b"\x00\xffbin"
        await ws.send("")
        assert await ws.recv() == ""
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.receive") == [
        {"type": "websocket.receive", "text": "héllo"},
        {"type": "websocket.receive", "bytes": b"\x00\xffbin"},
        {"type": "websocket.receive", "text": ""},
    ]


async def test_fragmented_message_arrives_whole_and_pings_are_answered(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running)
    try:
        writer.write(frame(OP_TEXT, "hel", fin=False))
        writer.write(frame(OP_CONT, "lo ", fin=False))
        writer.write(frame(OP_PING, b"ping-payload"))  # a control frame between fragments
        writer.write(frame(OP_CONT, "wörld", fin=True))
        pong = await read_frame(reader)
        echo = await read_frame(reader)
        writer.write(frame(OP_PING, b""))
        empty_pong = await read_frame(reader)
    finally:
        writer.close()
    assert (pong.opcode, pong.payload) == (OP_PONG, b"ping-payload")
    assert (echo.opcode, echo.fin, echo.payload) == (OP_TEXT, True, "hello wörld".encode())
    assert (empty_pong.opcode, empty_pong.payload) == (OP_PONG, b"")
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.receive") == [
        {"type": "websocket.receive", "text": "hello wörld"}
    ]
    # Pings never reach the app.
    assert {m["type"] for m in recorder.messages} == {
        "websocket.connect",
        "websocket.receive",
        "websocket.disconnect",
    }


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_large_messages_both_ways(serve: Any, compression: str | None) -> None:
    running = await serve(ws_echo)
    big_bytes = bytes(range(256)) * 4096  # 1 MiB
    big_text = "ünïcode-" * (1024 * 1024 // 10)
    async with connect(running.ws, max_size=None, compression=compression) as ws:
        await ws.send(big_bytes)
        assert await ws.recv() == big_bytes
        await ws.send(big_text)
        assert await ws.recv() == big_text


# -- closing ---------------------------------------------------------------------------------------


async def test_app_close_code_and_reason_reach_client(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})

    running = await serve(app)
    async with connect(running.ws) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye now")


async def test_client_close_code_and_reason_reach_app(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    async with connect(running.ws) as ws:
        await ws.close(4002, "client leaves")
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect") == [
        {"type": "websocket.disconnect", "code": 4002, "reason": "client leaves"}
    ]


async def test_close_frame_without_code_gives_1005(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running)
    try:
        writer.write(close_frame(None))
        answer = await next_data_frame(reader)
        assert answer.opcode == OP_CLOSE
        assert answer.payload == b""  # RFC 6455 §5.5.1: echo; no code in, no code out
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect")[0]["code"] == 1005


async def test_tcp_dropped_without_close_gives_1006(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    _reader, writer = await raw_open(running)
    await recorder.wait_for(lambda: "accepted" in recorder.notes)
    writer.transport.abort()
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect") == [
        {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    ]


async def test_exactly_one_disconnect_then_receive_raises(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.message(await receive())
        try:
            recorder.message(await asyncio.wait_for(receive(), TIMEOUT))
        except BaseException as exc:
            recorder.error(exc)
        recorder.note("done")

    running = await serve(app)
    async with connect(running.ws) as ws:
        await ws.close(1000)
    await recorder.wait_for(lambda: "done" in recorder.notes)
    assert recorder.messages == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]
    (error,) = recorder.errors
    assert not isinstance(error, TimeoutError | asyncio.CancelledError), repr(error)


async def test_server_completes_closing_handshake(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        recorder.message(await receive())

    running = await serve(app)
    reader, writer = await raw_open(running)
    try:
        close = await next_data_frame(reader)
        assert close.opcode == OP_CLOSE
        assert (close.close_code, close.close_reason) == (4000, "done")
        writer.write(close_frame(4000))
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await recorder.wait_for(lambda: recorder.messages)
    assert recorder.messages[0]["type"] == "websocket.disconnect"
    assert recorder.messages[0]["code"] == 4000


async def test_client_initiated_close_is_answered_then_eof(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()))
    reader, writer = await raw_open(running)
    try:
        writer.write(close_frame(1000, "bye"))
        answer = await next_data_frame(reader)
        assert answer.opcode == OP_CLOSE
        assert answer.close_code == 1000
        assert await wait_eof(reader) == b""
    finally:
        writer.close()


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 5000])
async def test_app_close_with_unsendable_code_refused(serve: Any, code: int) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": code})
        except RuntimeError as exc:
            recorder.error(exc)
        await send({"type": "websocket.close", "code": 1000})

    running = await serve(app)
    async with connect(running.ws) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000
    (error,) = recorder.errors
    assert str(code) in str(error)


# -- the app's answer before and after accept ------------------------------------------------------


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


async def test_exception_after_accept_closes_1011(serve: Any, caplog: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise ValueError("after accept")

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    async with connect(running.ws) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011


async def test_return_after_accept_closes_1000(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "last words"})

    running = await serve(app)
    async with connect(running.ws) as ws:
        assert await ws.recv() == "last words"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000


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


# -- app mistakes ----------------------------------------------------------------------------------


async def test_send_after_close_raises_client_disconnected_and_is_not_logged(
    serve: Any, caplog: Any
) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.message(await receive())
        try:
            await send({"type": "websocket.send", "text": "anyone there?"})
        except BaseException as exc:
            recorder.error(exc)
            raise
        finally:
            recorder.note("done")

    caplog.set_level(logging.DEBUG, logger="asgiws")
    running = await serve(app)
    async with connect(running.ws) as ws:
        await ws.close(1000)
    await recorder.wait_for(lambda: "done" in recorder.notes)
    (error,) = recorder.errors
    assert isinstance(error, ClientDisconnected)
    assert isinstance(error, OSError)
    # The server's bookkeeping runs after the app task ends: wait for the connection to go.
    await wait_until(lambda: not running.server.tasks and not running.server.connections)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def wait_until(condition: Any, timeout: float = TIMEOUT) -> None:
    """Poll a condition of server state that has no event of its own, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_out_of_order_app_messages_raise_runtime_error(serve: Any) -> None:
    recorder = Recorder()

    async def attempt(send: Any, message: dict[str, Any]) -> None:
        try:
            await send(message)
        except RuntimeError as exc:
            recorder.note((message["type"], str(exc)))
        else:
            recorder.note((message["type"], None))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await attempt(send, {"type": "websocket.send", "text": "too early"})
        await send({"type": "websocket.accept"})
        await attempt(send, {"type": "websocket.accept"})
        await attempt(send, {"type": "websocket.send", "text": "a", "bytes": b"b"})
        await attempt(send, {"type": "websocket.sned", "text": "typo"})
        await attempt(send, {"type": "http.response.start", "status": 200})
        await send({"type": "websocket.send", "text": "still open"})
        await send({"type": "websocket.close"})

    running = await serve(app)
    async with connect(running.ws) as ws:
        assert await ws.recv() == "still open"
    expected_states = ["WS_CONNECTING", "OPEN", "OPEN", "OPEN", "OPEN"]
    assert len(recorder.notes) == len(expected_states)
    for (kind, text), state in zip(recorder.notes, expected_states, strict=True):
        assert text is not None, f"{kind} was accepted"
        assert kind in text, text
        assert state in text, text


# -- limits ----------------------------------------------------------------------------------------


async def test_message_over_max_size_closes_1009(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder), ws_max_size=1024)
    async with connect(running.ws, compression=None) as ws:
        await ws.send(b"x" * 1024)  # exactly the limit is fine
        assert await ws.recv() == b"x" * 1024
        await ws.send(b"x" * 2000)
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect")[0]["code"] == 1009


async def test_fragmented_message_over_max_size_closes_1009(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()), ws_max_size=1024)
    reader, writer = await raw_open(running)
    try:
        for index in range(3):
            opcode = OP_BINARY if index == 0 else OP_CONT
            writer.write(frame(opcode, b"y" * 500, fin=False))
        close = await next_data_frame(reader)
    finally:
        writer.close()
    assert close.opcode == OP_CLOSE
    assert close.close_code == 1009


async def test_unanswered_pings_close_1011(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder), ws_ping_interval=0.2, ws_ping_timeout=0.2)
    reader, writer = await raw_open(running)
    pings = 0
    try:
        for _ in range(10):
            got = await read_frame(reader, timeout=3.0)
            if got.opcode == OP_PING:
                pings += 1
                continue
            break
        assert got.opcode == OP_CLOSE
        assert got.close_code == 1011
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    assert pings >= 1
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect")[0]["code"] == 1011


async def test_answered_pings_keep_connection_open(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()), ws_ping_interval=0.2, ws_ping_timeout=0.2)
    reader, writer = await raw_open(running)
    try:
        payloads = set()
        for _ in range(4):
            ping = await read_frame(reader, timeout=3.0)
            assert ping.opcode == OP_PING
            payloads.add(ping.payload)
            writer.write(frame(OP_PONG, ping.payload))
        assert len(payloads) == 4  # a fresh payload each time
        writer.write(frame(OP_TEXT, "still here"))
        echo = await next_data_frame(reader)
        assert (echo.opcode, echo.payload) == (OP_TEXT, b"still here")
    finally:
        writer.close()


async def test_websockets_client_keeps_connection_alive_across_pings(
    serve: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="websockets.client")
    running = await serve(ws_echo, ws_ping_interval=0.1, ws_ping_timeout=0.2)

    def pings_seen() -> int:
        return sum(1 for r in caplog.records if r.getMessage().startswith("< PING"))

    async with connect(running.ws, ping_interval=None) as ws:
        await ws.send("first")
        assert await ws.recv() == "first"
        # The client library answers the server's pings by itself; let several go by.
        await wait_until(lambda: pings_seen() >= 4)
        await ws.send("later")
        assert await ws.recv() == "later"


async def test_app_that_does_not_read_pauses_reading(serve: Any) -> None:
    recorder = Recorder()
    release = asyncio.Event()
    count = 400
    size = 64 * 1024  # 400 x 64 KiB = 25 MiB, far beyond the socket buffers

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.note("accepted")
        await release.wait()
        received = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            received += 1
            if received == count:
                await send({"type": "websocket.send", "text": "got all"})
        recorder.note(received)

    running = await serve(app, max_queue=4)
    reader, writer = await raw_open(running)
    try:
        await recorder.wait_for(lambda: "accepted" in recorder.notes)
        proto = next(iter(running.server.connections))
        payload = b"z" * size
        one = frame(OP_BINARY, payload, mask=b"\x00\x00\x00\x00")
        for _ in range(count):
            writer.write(one)
        # The server stops reading once the app is behind ...
        await wait_until(lambda: not proto.transport.is_reading())
        # ... so most of what the client wrote is still on the client's side, instead of in
        # the server's memory.
        assert writer.transport.get_write_buffer_size() > count * size // 2
        release.set()
        await asyncio.wait_for(writer.drain(), 20)
        answer = await next_data_frame(reader)
        assert (answer.opcode, answer.payload) == (OP_TEXT, b"got all")
        writer.write(close_frame(1000))
        await next_data_frame(reader)
    finally:
        writer.close()
    await recorder.wait_for(lambda: count in recorder.notes)


# -- shutdown --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1001, 1012])
async def test_shutdown_closes_websockets(serve: Any, code: int) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder), ws_shutdown_code=code)
    async with connect(running.ws) as ws:
        await ws.send("before")
        assert await ws.recv() == "before"
        running.server.stop()
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    await asyncio.wait_for(running.server.wait_closed(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == code
    disconnects = recorder.of_type("websocket.disconnect")
    assert len(disconnects) == 1
    assert disconnects[0]["code"] == code
    assert not running.server.tasks


async def test_shutdown_lets_http_request_in_flight_finish(serve: Any) -> None:
    recorder = Recorder()
    go = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        recorder.note("started")
        await go.wait()
        body = b"finished"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    running = await serve(app)
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(http_request())
        await recorder.wait_for(lambda: "started" in recorder.notes)
        closed = asyncio.ensure_future(running.server.wait_closed())
        running.server.stop()
        # New connections are refused once shutdown began.
        await wait_until(lambda: running.server.shutting_down)  # listeners close with it
        with pytest.raises(OSError):
            _, w = await asyncio.open_connection(running.host, running.port)
            w.close()
        assert not closed.done()  # the request in flight holds the shutdown
        go.set()
        response = await read_response(reader)
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await asyncio.wait_for(closed, TIMEOUT)
    assert response.status == 200
    assert response.body == b"finished"
    assert response.header(b"connection") == b"close"


async def test_connection_refused_after_shutdown(serve: Any) -> None:
    running = await serve(ws_echo)
    running.server.stop()
    await running.server.wait_closed()
    with pytest.raises(OSError):
        async with connect(running.ws, open_timeout=2):
            pass


async def test_many_sequential_connections(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()))
    for i in range(20):
        async with connect(running.ws) as ws:
            await ws.send(str(i))
            assert await ws.recv() == str(i)


# -- more edges ------------------------------------------------------------------------------------


async def test_messages_before_close_are_answered_before_the_close(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running)
    try:
        writer.write(frame(OP_TEXT, "one") + frame(OP_TEXT, "two") + close_frame(4005, "end"))
        got = [await next_data_frame(reader) for _ in range(3)]
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    assert [(f.opcode, f.payload) for f in got[:2]] == [(OP_TEXT, b"one"), (OP_TEXT, b"two")]
    assert got[2].opcode == OP_CLOSE and got[2].close_code == 4005
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect") == [
        {"type": "websocket.disconnect", "code": 4005, "reason": "end"}
    ]


async def test_peer_close_answered_when_app_does_not_read(serve: Any) -> None:
    release = asyncio.Event()
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.note("accepted")
        await release.wait()
        recorder.message(await receive())

    running = await serve(app, ws_close_timeout=0.3)
    reader, writer = await raw_open(running)
    try:
        await recorder.wait_for(lambda: "accepted" in recorder.notes)
        writer.write(close_frame(1000))
        answer = await next_data_frame(reader)
        assert answer.opcode == OP_CLOSE
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    release.set()
    await recorder.wait_for(lambda: recorder.messages)
    assert recorder.messages == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"\x81\x02hi", 1002, id="unmasked"),
        pytest.param(frame(OP_TEXT, b"\xff\xfe"), 1007, id="invalid-utf8"),
        pytest.param(frame(OP_PING, b"p" * 126), 1002, id="ping-too-long"),
        pytest.param(frame(0x3, b"x"), 1002, id="reserved-opcode"),
        pytest.param(frame(OP_CONT, b"x"), 1002, id="continuation-first"),
        pytest.param(frame(OP_CLOSE, b"\x03\xe8\xff"), 1007, id="close-reason-invalid-utf8"),
        pytest.param(frame(OP_CLOSE, b"\x03"), 1002, id="close-one-byte"),
    ],
)
async def test_protocol_violations_fail_the_connection(serve: Any, data: bytes, code: int) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running)
    try:
        writer.write(data)
        close = await next_data_frame(reader)
        assert close.opcode == OP_CLOSE
        assert close.close_code == code
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect")[0]["code"] == code
    assert recorder.of_type("websocket.receive") == []


async def test_shutdown_while_app_has_not_accepted_yet(serve: Any) -> None:
    recorder = Recorder()
    go = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        recorder.note("connecting")
        await go.wait()
        await send({"type": "websocket.accept"})
        while True:
            message = recorder.message(await receive())
            if message["type"] == "websocket.disconnect":
                return

    running = await serve(app)
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(ws_request())
        await recorder.wait_for(lambda: "connecting" in recorder.notes)
        running.server.stop()
        go.set()
        head = await read_head(reader)
        assert head.status == 101
        close = await next_data_frame(reader)
        assert close.opcode == OP_CLOSE and close.close_code == 1001
        writer.write(close_frame(1001))
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await asyncio.wait_for(running.server.wait_closed(), TIMEOUT)
    assert recorder.of_type("websocket.disconnect") == [
        {"type": "websocket.disconnect", "code": 1001, "reason": ""}
    ]


async def test_shutdown_with_app_that_does_not_read(serve: Any) -> None:
    recorder = Recorder()
    go = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.note("accepted")
        await go.wait()
        recorder.message(await receive())
        try:
            await receive()
        except BaseException as exc:
            recorder.error(exc)

    running = await serve(app)
    async with connect(running.ws) as ws:
        await recorder.wait_for(lambda: "accepted" in recorder.notes)
        running.server.stop()
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        go.set()
    await asyncio.wait_for(running.server.wait_closed(), TIMEOUT)
    assert recorder.messages == [{"type": "websocket.disconnect", "code": 1001, "reason": ""}]
    assert len(recorder.errors) == 1


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


async def test_send_back_pressure_on_slow_websocket_reader(serve: Any) -> None:
    recorder = Recorder()
    count = 40
    payload = b"w" * (1024 * 1024)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(count):
            await send({"type": "websocket.send", "bytes": payload})
            recorder.note(i)
        await receive()

    running = await serve(app)
    reader, writer = await raw_open(running)
    try:
        # The app only yields to the loop when send() waits for the transport to drain (or
        # when it is done): so when the first note shows, the app has stalled or finished.
        await recorder.wait_for(lambda: recorder.notes)
        assert len(recorder.notes) < count
        proto = next(iter(running.server.connections))
        assert proto.transport.get_write_buffer_size() < 8 * len(payload)
        for _ in range(count):
            got = await read_frame(reader, timeout=30)
            assert got.opcode == OP_BINARY and len(got.payload) == len(payload)
        writer.write(close_frame(1000))
        await next_data_frame(reader)
    finally:
        writer.close()


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
        extensions = ws.response.headers["Sec-WebSocket-Extensions"]
        assert "client_max_window_bits=10" in extensions
        text = "".join(f"{i:06d} repeated words compress well " for i in range(20000))
        await ws.send(text)
        assert await ws.recv() == text


@pytest.mark.parametrize("how", ["close", "return"])
async def test_app_closing_with_a_full_inbox_finishes_the_handshake_at_once(
    serve: Any, how: str
) -> None:
    recorder = Recorder()
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.note("accepted")
        await release.wait()  # reads nothing while the client sends
        if how == "close":
            await send({"type": "websocket.close", "code": 4001})

    # The close timeout is far beyond the test's: only reading the client's Close ends it.
    running = await serve(app, max_queue=16, ws_close_timeout=60)
    reader, writer = await raw_open(running)
    try:
        await recorder.wait_for(lambda: "accepted" in recorder.notes)
        for i in range(40):
            writer.write(frame(OP_TEXT, b"message %d" % i))
        await writer.drain()
        await wait_until(lambda: next(iter(running.server.connections))._read_paused)
        release.set()
        close = await next_data_frame(reader)
        assert close.opcode == OP_CLOSE
        assert close.close_code == (4001 if how == "close" else 1000)
        writer.write(frame(OP_TEXT, b"after our close") + close_frame(close.close_code))
        assert await wait_eof(reader) == b""  # within TIMEOUT, not at ws_close_timeout
    finally:
        writer.close()


async def test_shutdown_drops_frames_in_flight_after_the_disconnect(serve: Any) -> None:
    recorder = Recorder()
    accepted = asyncio.Event()
    go = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        await go.wait()  # the frame in flight has come and gone: the connection is closed
        while True:
            message = await receive()
            recorder.message(message)
            if message["type"] == "websocket.disconnect":
                break
        with pytest.raises(ClientDisconnected):
            await receive()
        recorder.note("raised")

    running = await serve(app)
    reader, writer = await raw_open(running)
    try:
        await asyncio.wait_for(accepted.wait(), TIMEOUT)
        running.server.stop()
        close = await next_data_frame(reader)
        assert close.close_code == 1001
        writer.write(frame(OP_TEXT, b"in flight") + close_frame(1001))
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
        go.set()
    await asyncio.wait_for(running.server.wait_closed(), TIMEOUT)
    await recorder.wait_for(lambda: "raised" in recorder.notes)
    assert [m["type"] for m in recorder.messages] == ["websocket.disconnect"]
