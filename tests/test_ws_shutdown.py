"""End-to-end WebSocket shutdown through a real asgiws server: Close with the shutdown code,
requests in flight, handshakes not yet answered, frames still in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from apps import TIMEOUT, Recorder, quick_serve, read_head, read_response, wait_eof, ws_echo
from websockets.exceptions import ConnectionClosed
from wire import OP_CLOSE, OP_TEXT, close_frame, http_request, ws_request
from wire import client_frame as frame
from ws_helpers import connect, next_data_frame, raw_open, recording_echo, wait_until

from asgiws.protocol import ClientDisconnected


@pytest.fixture
def serve(serve: Any) -> Any:
    return quick_serve(serve)


@pytest.mark.parametrize("code", [1001, 1012])
async def test_shutdown_closes_websockets(serve: Any, code: int) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder), ws_shutdown_code=code)
    async with connect(running.ws) as ws:
        await ws.send("before")
        assert await ws.recv() == "before"
        running.stop()
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    await asyncio.wait_for(running.wait_closed(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == code
    disconnects = recorder.of_type("websocket.disconnect")
    assert len(disconnects) == 1
    assert disconnects[0]["code"] == code
    assert not running.core.tasks


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
        closed = asyncio.ensure_future(running.wait_closed())
        running.stop()
        # New connections are refused once shutdown began.
        await wait_until(lambda: running.core.shutting_down)  # listeners close with it
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
    running.stop()
    await running.wait_closed()
    with pytest.raises(OSError):
        async with connect(running.ws, open_timeout=2):
            pass


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
        running.stop()
        go.set()
        head = await read_head(reader)
        assert head.status == 101
        close = await next_data_frame(reader)
        assert close.opcode == OP_CLOSE and close.close_code == 1001
        writer.write(close_frame(1001))
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await asyncio.wait_for(running.wait_closed(), TIMEOUT)
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
        running.stop()
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        go.set()
    await asyncio.wait_for(running.wait_closed(), TIMEOUT)
    assert recorder.messages == [{"type": "websocket.disconnect", "code": 1001, "reason": ""}]
    assert len(recorder.errors) == 1


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
        running.stop()
        close = await next_data_frame(reader)
        assert close.close_code == 1001
        writer.write(frame(OP_TEXT, b"in flight") + close_frame(1001))
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
        go.set()
    await asyncio.wait_for(running.wait_closed(), TIMEOUT)
    await recorder.wait_for(lambda: "raised" in recorder.notes)
    assert [m["type"] for m in recorder.messages] == ["websocket.disconnect"]
