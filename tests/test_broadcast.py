"""A broadcast: one app task sends to many connections whose own apps wait in receive().

Small messages sent that way wait until the sending task yields and go out in one write per
connection (asgiws.asyncio.connection, BROADCAST_SMALL and BROADCAST_BATCH); large ones, and
those to a client that does not read, are written at once (tests/test_send_timeout.py has the
client that does not read). A raw publisher sends its messages in one TCP write, so that the
server reads them in one go and the app broadcasts them one after another without yielding.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from wire import Frame, client_frame, parse_frame, ws_request

from asgiws.asyncio.connection import BROADCAST_BATCH, BROADCAST_SMALL

SUBSCRIBERS = 5


class Room:
    """/sub: registered, then waits in receive(); /pub: each text message goes to all."""

    def __init__(self) -> None:
        self.sends: list[Any] = []
        self.ready = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/sub":
            self.sends.append(send)
            if len(self.sends) == SUBSCRIBERS:
                self.ready.set()
            while (await receive())["type"] != "websocket.disconnect":
                pass
            return
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            for target in self.sends:
                await target({"type": "websocket.send", "text": message["text"]})


def upgraded(host: str, port: int, path: str) -> socket.socket:
    """A raw client after its 101 (blocking: run it in a thread)."""
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(ws_request(path))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock


def read_frames(sock: socket.socket, count: int) -> list[Frame]:
    """``count`` whole server frames, none fragmented and each under 64 KiB (blocking: run it
    in a thread; every recv is bounded by the socket's timeout)."""
    data = b""
    frames: list[Frame] = []
    for _ in range(10_000):
        while len(data) >= 4 or (len(data) >= 2 and data[1] < 126):
            length = data[1] & 0x7F
            header = 2 if length < 126 else 4
            if length == 126:
                length = int.from_bytes(data[2:4], "big")
            if len(data) < header + length:
                break
            frame, data = parse_frame(data)
            frames.append(frame)
        if len(frames) >= count:
            return frames
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(frames)} frames"
        data += chunk
    raise AssertionError("too many reads")


def count_writes(running: Any) -> dict[int, list[int]]:
    """The server's writes per connection from now on, by client port: each write's size."""
    writes: dict[int, list[int]] = {}
    for protocol in running.core.connections:
        transport = protocol.transport
        port = transport.get_extra_info("peername")[1]
        sizes = writes[port] = []

        def counting(data: bytes, write: Any = transport.write, sizes: list[int] = sizes) -> None:
            sizes.append(len(data))
            write(data)

        def counting_lines(
            parts: Any, lines: Any = transport.writelines, sizes: list[int] = sizes
        ) -> None:
            parts = list(parts)
            sizes.append(sum(map(len, parts)))
            lines(parts)

        transport.write = counting
        transport.writelines = counting_lines
    return writes


@pytest.mark.parametrize(
    ("size", "count", "writes"),
    [
        (10, 3, 1),  # small: one write for the three
        (BROADCAST_SMALL, 3, 1),
        (10, BROADCAST_BATCH + 4, 2),  # at most BROADCAST_BATCH wait: the rest goes in a second
        (BROADCAST_SMALL + 1, 3, 3),  # large: each at once
    ],
)
async def test_a_broadcast_of_queued_messages_is_one_write_per_connection(
    serve: Any, size: int, count: int, writes: int
) -> None:
    room = Room()
    running = await serve(room)
    subscribers: list[socket.socket] = []
    publisher = None
    try:
        for _ in range(SUBSCRIBERS):
            subscribers.append(
                await asyncio.to_thread(upgraded, running.host, running.port, "/sub")
            )
        publisher = await asyncio.to_thread(upgraded, running.host, running.port, "/pub")
        await asyncio.wait_for(room.ready.wait(), 10)
        counted = count_writes(running)
        texts = [f"{i:04d}".ljust(size, "x") for i in range(count)]
        frames = b"".join(client_frame(0x1, text.encode()) for text in texts)
        await asyncio.to_thread(publisher.sendall, frames)  # one write: read in one go
        for sock in subscribers:
            received = await asyncio.wait_for(asyncio.to_thread(read_frames, sock, count), 20)
            assert [(f.opcode, f.payload) for f in received] == [
                (0x1, text.encode()) for text in texts
            ]  # all, in order
        for sock in subscribers:
            sizes = counted[sock.getsockname()[1]]
            assert len(sizes) == writes, sizes
    finally:
        for each in [*subscribers, publisher]:
            if each is not None:
                each.close()
