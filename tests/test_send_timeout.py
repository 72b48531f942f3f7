"""--ws-send-timeout: one client that stops reading cannot stall an app that broadcasts.

A raw client completes the handshake and then reads nothing, with a small receive buffer; two
websockets clients read everything. The app sends every message to every client in turn, as a
chat does. Without the limit the broadcast stalls behind the stalled reader (back-pressure);
with it, that reader is closed with 1008, the app's send() raises, and the others get it all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from wire import ws_request

MESSAGES = 48
PAYLOAD = bytes(256 * 1024)  # 12 MiB in all: far beyond what socket buffers hold


class Hub:
    """The app: /listen registers a connection; /publish broadcasts to every one of them."""

    def __init__(self) -> None:
        self.sends: dict[str, Any] = {}
        self.failed: dict[str, BaseException] = {}
        self.registered = asyncio.Event()
        self.done = asyncio.Event()
        self.expected = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        name = scope["query_string"].decode()
        if scope["path"] == "/listen":
            self.sends[name] = send
            if len(self.sends) == self.expected:
                self.registered.set()
            while (await receive())["type"] != "websocket.disconnect":
                pass
            return
        for _ in range(MESSAGES):
            for who, target in list(self.sends.items()):
                try:
                    await target({"type": "websocket.send", "bytes": PAYLOAD})
                except OSError as exc:  # asgiws's ClientDisconnected is an OSError
                    self.failed[who] = exc
                    del self.sends[who]
        self.done.set()
        await send({"type": "websocket.close", "code": 1000})


async def stalled_reader(host: str, port: int) -> socket.socket:
    """A client that upgrades, then never reads: a small receive buffer fills at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    await loop.sock_sendall(sock, ws_request("/listen?stalled"))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock


async def reader(url: str, received: list[int]) -> None:
    async with ws_connect(url, max_size=None) as ws:
        while len(received) < MESSAGES:
            received.append(len(await ws.recv()))


async def test_a_stalled_reader_is_closed_and_the_broadcast_goes_on(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub()
    hub.expected = 3
    running = await serve(hub, ws_send_timeout=0.5, ws_max_size=1 << 20)
    caplog.set_level(logging.WARNING, logger="asgiws.error")
    stalled = await stalled_reader(running.host, running.port)
    counts: list[list[int]] = [[], []]
    readers = [
        asyncio.create_task(reader(f"{running.ws}/listen?fast{i}", counts[i])) for i in range(2)
    ]
    try:
        await asyncio.wait_for(hub.registered.wait(), 10)
        async with ws_connect(f"{running.ws}/publish?p") as publisher:
            await asyncio.wait_for(hub.done.wait(), 30)
            await publisher.wait_closed()
        assert list(hub.failed) == ["stalled"]
        assert "--ws-send-timeout 0.5 s" in str(hub.failed["stalled"])
        await asyncio.wait_for(asyncio.gather(*readers), 30)
    finally:
        for task in readers:
            task.cancel()
        stalled.close()
    assert counts == [[len(PAYLOAD)] * MESSAGES] * 2
    lines = [r.getMessage() for r in caplog.records if "--ws-send-timeout" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("closing the WebSocket of 127.0.0.1:")
    assert "with 1008" in lines[0]


async def test_without_the_limit_send_waits(serve: Any) -> None:
    hub = Hub()
    hub.expected = 1
    running = await serve(hub, ws_max_size=1 << 20)
    stalled = await stalled_reader(running.host, running.port)
    try:
        await asyncio.wait_for(hub.registered.wait(), 10)
        async with ws_connect(f"{running.ws}/publish?p"):
            # Back-pressure holds the broadcast: it is not done after well over 0.5 s.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(hub.done.wait()), 1.5)
            assert hub.failed == {}
            stalled.close()  # a reset: the stalled send raises, and the broadcast ends
            await asyncio.wait_for(hub.done.wait(), 10)
            assert list(hub.failed) == ["stalled"]
    finally:
        stalled.close()
