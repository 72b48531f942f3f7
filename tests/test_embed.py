"""asgiws.Server, the embedding API, on real sockets: HTTP with httpx, WebSocket with the
websockets client, two servers in one event loop, failed starts and graceful shutdowns."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from apps import TIMEOUT, Receive, Send, http_hello, read_body
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import asgiws
from asgiws.importer import AppImportError


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """HTTP: answers with its path; WebSocket: echoes text."""
    if scope["type"] == "lifespan":
        return  # not supported: lifespan "auto" carries on
    if scope["type"] == "http":
        await read_body(receive)
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


@contextlib.asynccontextmanager
async def running(server: asgiws.Server) -> AsyncIterator[asyncio.Task[int]]:
    """``server.serve()`` in a task until started; shut down (if still serving) at the end."""
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(server.wait_started(), TIMEOUT)
        yield task
    finally:
        await asyncio.wait_for(server.shutdown(), TIMEOUT)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, TIMEOUT)


def url(server: asgiws.Server, scheme: str = "http") -> str:
    (address,) = server.addresses
    assert isinstance(address, tuple)
    host, port = address
    return f"{scheme}://{host}:{port}"


async def test_started_addresses_and_urls() -> None:
    server = asgiws.Server(app, host="127.0.0.1", port=0, access_log=False)
    assert not server.started and server.addresses == [] and server.urls == []
    async with running(server) as task:
        assert server.started
        ((host, port),) = server.addresses
        assert host == "127.0.0.1" and port > 0
        assert server.urls == [f"http://127.0.0.1:{port}"]
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(server.urls[0] + "/hello")
        assert response.status_code == 200 and response.text == "/hello"
        await server.shutdown()
        assert task.done() and task.result() == 0
        assert not server.started
    with pytest.raises(RuntimeError, match="already been served"):
        await server.serve()


async def test_two_servers_in_one_loop_and_one_shut_down() -> None:
    first = asgiws.Server(app, host="127.0.0.1", port=0, access_log=False)
    second = asgiws.Server(app, host="127.0.0.1", port=0, access_log=False)
    async with running(first) as first_task, running(second) as second_task:
        assert url(first) != url(second)
        async with (
            httpx.AsyncClient(timeout=TIMEOUT) as client,
            connect(url(first, "ws")) as ws1,
            connect(url(second, "ws")) as ws2,
        ):
            for server, ws, name in ((first, ws1, "one"), (second, ws2, "two")):
                response = await client.get(f"{url(server)}/{name}")
                assert response.text == f"/{name}"
                await ws.send(name)
                assert await ws.recv() == name

            await asyncio.wait_for(first.shutdown(), TIMEOUT)
            assert first_task.result() == 0
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws1.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            with pytest.raises(httpx.ConnectError):
                await client.get(url(first) + "/gone")

            # The other server goes on: its WebSocket stays open, new connections are served.
            await ws2.send("still here")
            assert await ws2.recv() == "still here"
            response = await client.get(url(second) + "/after")
            assert response.text == "/after"
            async with connect(url(second, "ws")) as ws3:
                await ws3.send("new")
                assert await ws3.recv() == "new"
            assert second.started and not second_task.done()


@pytest.mark.parametrize("code", [None, 1012])
async def test_shutdown_closes_websockets_with_the_code(code: int | None) -> None:
    server = asgiws.Server(app, host="127.0.0.1", port=0, access_log=False)
    async with running(server), connect(url(server, "ws")) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        closing = asyncio.create_task(server.shutdown(code))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        await asyncio.wait_for(closing, TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == (code or 1001)


async def test_shutdown_code_is_checked() -> None:
    server = asgiws.Server(app, port=0)
    with pytest.raises(ValueError, match=r"shutdown\(code=\.\.\.\): invalid value 4000"):
        await server.shutdown(4000)
    await server.shutdown()  # not serving: nothing to do


async def test_port_in_use_raises_from_serve_and_wait_started() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = asgiws.Server(app, host="127.0.0.1", port=port, access_log=False)
        waiting = asyncio.create_task(server.wait_started())
        with pytest.raises(asgiws.StartupError, match=f"could not listen on 127.0.0.1:{port}"):
            await asyncio.wait_for(server.serve(), TIMEOUT)
        with pytest.raises(asgiws.StartupError) as info:
            await asyncio.wait_for(waiting, TIMEOUT)
        assert info.value.status == 1
        assert "Address already in use" in str(info.value)
        assert not server.started
        with pytest.raises(asgiws.StartupError):
            await server.wait_started()  # after the fact too: never a hang


async def test_cancelled_before_it_started() -> None:
    asked, gate = asyncio.Event(), asyncio.Event()

    async def slow_startup(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        asked.set()
        await gate.wait()  # never set: the startup does not end

    server = asgiws.Server(slow_startup, port=0, lifespan="on")
    task = asyncio.create_task(server.serve())
    waiting = asyncio.create_task(server.wait_started())
    await asyncio.wait_for(asked.wait(), TIMEOUT)  # serving: the lifespan startup is running
    task.cancel()
    with pytest.raises(RuntimeError, match="the server stopped before it started"):
        await asyncio.wait_for(waiting, TIMEOUT)
    assert not server.started


async def test_lifespan_startup_failure_raises_with_status_3() -> None:
    async def failing(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    server = asgiws.Server(failing, port=0, lifespan="on")
    with pytest.raises(asgiws.StartupError, match="no database") as info:
        await asyncio.wait_for(server.serve(), TIMEOUT)
    assert info.value.status == 3
    assert server.addresses == []


async def test_app_as_an_import_string() -> None:
    server = asgiws.Server("apps:http_hello", host="127.0.0.1", port=0, access_log=False)
    assert server.app is http_hello
    async with running(server), httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(server.urls[0] + "/imported")
    assert response.text == "/imported"


def test_options_are_checked_like_run() -> None:
    with pytest.raises(TypeError, match=r"Server\(port=\.\.\.\): invalid value '80'"):
        asgiws.Server(app, port="80")
    with pytest.raises(ValueError, match=r"Server\(port=\.\.\.\): invalid value 70000"):
        asgiws.Server(app, port=70000)
    with pytest.raises(TypeError, match=r"argument 'prot' \(did you mean 'port'"):
        asgiws.Server(app, prot=80)
    with pytest.raises(TypeError, match=r"Server\(app=\.\.\.\): expected an ASGI app"):
        asgiws.Server(42)  # type: ignore[arg-type]
    with pytest.raises(AppImportError):
        asgiws.Server("no_such_module_here:app")


def test_the_environment_is_read_only_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGIWS_PORT", "9123")
    assert asgiws.Server(app).config.port == 8000
    environ = {"ASGIWS_PORT": "9123", "ASGIWS_WS_MAX_SIZE": "1KiB"}
    server = asgiws.Server(app, environ=environ, ws_max_size=2048)
    assert server.config.port == 9123
    assert server.config.ws_max_size == 2048  # keywords win
    with pytest.raises(ValueError, match="ASGIWS_PORT: invalid value 'x'"):
        asgiws.Server(app, environ={"ASGIWS_PORT": "x"})


async def test_signals_only_when_asked_and_given_back() -> None:
    loop = asyncio.get_running_loop()
    server = asgiws.Server(app, host="127.0.0.1", port=0, access_log=False)
    async with running(server):
        assert not loop.remove_signal_handler(signal.SIGINT)  # none installed
    server = asgiws.Server(app, host="127.0.0.1", port=0, access_log=False)
    task = asyncio.create_task(server.serve(signals=True))
    await asyncio.wait_for(server.wait_started(), TIMEOUT)
    os.kill(os.getpid(), signal.SIGINT)  # handled by the server: a graceful shutdown
    assert await asyncio.wait_for(task, TIMEOUT) == 0
    assert not loop.remove_signal_handler(signal.SIGINT)  # removed again


def test_import_asgiws_does_not_import_asyncio() -> None:
    code = (
        "import sys, asgiws; before = 'asyncio' in sys.modules; asgiws.Server; "
        "print(before, 'asyncio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
