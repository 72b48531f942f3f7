"""RST storm: N WebSocket sessions, each reset (TCP RST) in the middle of a frame it was sending,
C at a time.

Promised: each session's app gets exactly one websocket.disconnect (1006) and nothing after it;
the server's open files come back to where they began and its memory stays bounded; a normal
client is served afterwards.
Usage: python -m stress.rst_storm [--sessions 1000] [--concurrency 100]
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

from .common import (
    HOST,
    Server,
    raise_fd_limit,
    script,
    session_problems,
    settle_fds,
    summary,
)


def upgrade() -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )


async def reset_session(port: int) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (HOST, port))
        await loop.sock_sendall(sock, upgrade())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
            if not chunk:
                return
            head += chunk
        # Half of a masked 1000-byte binary frame, then a reset: SO_LINGER 0 makes close() an RST.
        frame = bytes([0x82, 0xFE]) + struct.pack("!H", 1000) + os.urandom(4) + bytes(400)
        await loop.sock_sendall(sock, frame)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


async def main(sessions: int, concurrency: int) -> int:
    raise_fd_limit(concurrency * 4 + 512)
    server = Server()
    baseline_fds, baseline_rss = server.fds(), server.rss_kib()
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            await reset_session(server.port)

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(sessions))), 300)
    fds = await settle_fds(server, baseline_fds)
    rss = server.rss_kib()
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    served = (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 200 ")
    writer.close()
    status, report = server.stop()
    problems = session_problems(report, sessions)
    if report["codes"] != {"1006": sessions}:
        problems.append(f"close codes seen by the app {report['codes']}")
    if fds > baseline_fds:
        problems.append(f"open files {fds}, {baseline_fds} before")
    if not served:
        problems.append("a normal request afterwards was not served")
    return summary(
        f"rst storm: {sessions} sessions reset mid-frame ({concurrency} at a time), app saw "
        f"{report['codes']}, disconnects per session {report['disconnects']}, open files "
        f"{baseline_fds} -> {fds}, RSS {baseline_rss // 1024} -> {rss // 1024} MiB, exit {status}",
        problems,
        status,
    )


if __name__ == "__main__":
    script(main, __doc__ or "", sessions=1000, concurrency=100)
