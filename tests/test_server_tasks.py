"""The server's tasks, through real sockets: every app task and the lifespan task is a child of
the task group that Server.run() holds, so nothing outlives the server."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from apps import TIMEOUT, Recorder
from wire import http_request

import asgiws
from asgiws.asyncio.server import Server
from asgiws.config import Config


def hanging_app(recorder: Recorder) -> Any:
    """Completes lifespan startup, then waits for its shutdown; an HTTP request waits forever."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            try:
                await receive()
            except asyncio.CancelledError:
                recorder.note("lifespan cancelled")
                raise
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        recorder.note(("app", asyncio.current_task()))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            recorder.note("app cancelled")
            raise

    return app


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def app_tasks(recorder: Recorder) -> list[asyncio.Task[Any]]:
    return [note[1] for note in recorder.notes if isinstance(note, tuple)]


async def test_the_graceful_timeout_cancels_an_app_that_waits_forever(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    running = await serve(hanging_app(recorder), timeout_graceful_shutdown=0.1)
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(http_request())
        await recorder.wait_for(lambda: app_tasks(recorder))
        running.stop()
        await asyncio.wait_for(running.wait_closed(), TIMEOUT)
        (task,) = app_tasks(recorder)
        assert task.cancelled() and "app cancelled" in recorder.notes
        assert not running.core.tasks and not running.core.connections
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed, no response
    finally:
        writer.close()
    assert "cancelling 1 task(s) and 1 connection(s) still open" in caplog.text


async def test_cancelling_the_server_cancels_its_app_and_lifespan_tasks() -> None:
    recorder = Recorder()
    server = asgiws.Server(hanging_app(recorder), lifespan="on", access_log=False)
    sock = listening_socket()
    port = sock.getsockname()[1]
    running = asyncio.ensure_future(server.serve([sock]))
    await asyncio.wait_for(server.wait_started(), TIMEOUT)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(http_request())
        await recorder.wait_for(lambda: app_tasks(recorder))
        running.cancel()  # the server's own task: its group cancels every child
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, TIMEOUT)
    finally:
        writer.close()
    (task,) = app_tasks(recorder)
    assert task.done() and "app cancelled" in recorder.notes
    assert "lifespan cancelled" in recorder.notes


async def test_spawn_needs_a_running_server() -> None:
    server = Server(hanging_app(Recorder()), Config())

    async def nothing() -> None:
        pass

    with pytest.raises(RuntimeError, match=r"the server is not running: start it with run\(\)"):
        server.spawn(nothing())
