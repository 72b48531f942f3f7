"""The worker side of --workers in the test process: what it writes on its pipe to the
supervisor (beats, ready, limit, fail) and how it stops (SIGHUP: 1012, the supervisor gone)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from asgiws.config import Config
from asgiws.options import build_config
from asgiws.worker_process import (
    Channel,
    NameWorker,
    WorkerSpec,
    beat_interval,
    main,
    serve_worker,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    await receive()
    await send({"type": "http.response.start", "status": 204})
    await send({"type": "http.response.body"})


class Pipe:
    """The supervisor's end of a worker's pipe: the lines written on it."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        self.reader: asyncio.StreamReader | None = None
        self.transport: asyncio.BaseTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.reader = asyncio.StreamReader()
        self.transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self.reader),  # type: ignore[arg-type]
            os.fdopen(self.read_end, "rb"),
        )

    async def wait_for(self, message: bytes, timeout: float = 30) -> list[bytes]:
        """Every line up to and including the first ``message`` line (kind, then text)."""
        assert self.reader is not None
        lines: list[bytes] = []
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.reader.readline()).rstrip(b"\n")
                assert line, f"the pipe ended before {message!r}: {lines}"
                lines.append(line)
                if line.split(b" ", 1)[0] == message:
                    return lines

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@pytest.fixture
async def pipe() -> AsyncIterator[Pipe]:
    pipe = Pipe()
    await pipe.open()
    yield pipe
    pipe.close()
    os.close(pipe.write_end)


def worker(pipe: Pipe, **options: Any) -> tuple[WorkerSpec, Channel, int]:
    sock = socket.create_server(("127.0.0.1", 0))
    values = {"fd": sock.detach(), "access_log": False, "lifespan": "off", **options}
    config = build_config((values, lambda o: o.flag))
    assert config.fd is not None
    port = socket.socket(fileno=os.dup(config.fd))
    number = port.getsockname()[1]
    port.close()
    return WorkerSpec("tests:app", config, pipe.write_end, 7), Channel(pipe.write_end), number


async def test_beats_ready_then_limit_and_a_clean_exit(pipe: Pipe) -> None:
    spec, channel, port = worker(pipe, timeout_worker_healthcheck=0.2, limit_max_requests=2)
    task = asyncio.create_task(serve_worker(app, spec, channel))
    await pipe.wait_for(b"ready")
    assert await pipe.wait_for(b"beat") == [b"beat"]  # every 0.05 s
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 204 ")
        writer.close()
    lines = await pipe.wait_for(b"limit")
    assert set(lines) <= {b"beat", b"limit"}
    assert await asyncio.wait_for(task, 30) == 0


async def test_sighup_closes_websockets_with_1012(pipe: Pipe) -> None:
    spec, channel, port = worker(pipe)
    task = asyncio.create_task(serve_worker(app, spec, channel))
    await pipe.wait_for(b"ready")
    async with connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
        os.kill(os.getpid(), signal.SIGHUP)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    assert await asyncio.wait_for(task, 30) == 0


async def test_a_worker_whose_supervisor_is_gone_stops(pipe: Pipe) -> None:
    spec, channel, _ = worker(pipe, timeout_worker_healthcheck=0.2)
    task = asyncio.create_task(serve_worker(app, spec, channel))
    await pipe.wait_for(b"ready")
    pipe.close()  # the read end: the next beat breaks the pipe
    assert await asyncio.wait_for(task, 30) == 0
    assert channel.broken and not channel.send(b"beat")


async def test_a_failed_start_says_why(pipe: Pipe) -> None:
    spec, channel, _ = worker(pipe, lifespan="on")
    assert await asyncio.wait_for(serve_worker(app, spec, channel), 30) == 3
    lines = await pipe.wait_for(b"fail")
    assert lines[-1] == b"fail lifespan startup failed: no database"


def test_main_reports_an_import_error_on_the_pipe(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    read_end, write_end = os.pipe()
    spec = WorkerSpec("nosuchmodule_here:app", Config(), write_end, 1)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pickle.dumps(spec))))
    assert main() == 1
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.read().startswith(b"fail could not import module 'nosuchmodule_here'")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pickle.dumps("not a spec"))))
    assert main() == 2


def test_beat_interval_and_worker_names() -> None:
    assert beat_interval(30) == 1.0
    assert beat_interval(2) == 0.5
    assert beat_interval(0) == 1.0
    record = logging.LogRecord("asgiws.error", logging.INFO, "", 0, "served %d", (5,), None)
    named = NameWorker(3)
    assert named.filter(record) and named.filter(record)  # a second handler adds nothing
    assert record.getMessage() == f"worker 3 (pid {os.getpid()}): served 5"
