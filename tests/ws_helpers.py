"""Helpers shared by the end-to-end WebSocket tests (test_ws_*.py): a websockets client with
bounded timeouts, a recording echo app, a raw connection after a checked 101."""

from __future__ import annotations

import asyncio
from typing import Any

from apps import TIMEOUT, Recorder, read_frame, read_response, wait_eof, ws_connect_raw
from websockets.asyncio.client import connect as ws_client
from wire import OP_PING


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


async def rejected(running: Any, request: bytes) -> Any:
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(request)
        response = await read_response(reader)
        assert await wait_eof(reader) == b""  # the server closed the connection
    finally:
        writer.close()
    assert (response.header(b"content-type") or b"").startswith(b"text/plain")
    assert response.header(b"connection") == b"close"
    assert response.text.endswith("\n") and response.text.count("\n") == 1
    return response


async def wait_until(condition: Any, timeout: float = TIMEOUT) -> None:
    """Poll a condition of server state that has no event of its own, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
