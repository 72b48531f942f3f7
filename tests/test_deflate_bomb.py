"""A compressed message of 1 GiB of zeros, about 1 MiB on the wire, sent to a real asgiws
process over a real socket: refused with close 1009 while the server's peak memory grows by
less than twice --ws-max-size (RFC 7692 §8 leaves the limit to the implementation)."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
from pathlib import Path

import pytest
from cli_process import DEADLINE_S, ServerProcess
from test_deflate import zip_bomb

MAX_SIZE = 16 * 1024 * 1024
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("library", ["zlib", "zlib-ng"])
def test_decompression_bomb_is_refused_with_bounded_memory(library: str) -> None:
    bomb = zip_bomb(1 << 30)  # 1 GiB of zeros once inflated
    assert len(bomb) < 2 * 1024 * 1024
    # A masked binary frame with RSV1 (compressed); an all-zero mask leaves the payload as it is.
    frame = b"\xc2\xff" + struct.pack("!Q", len(bomb)) + b"\x00\x00\x00\x00" + bomb

    server = ServerProcess(
        "asgiws.demo:app",
        "--port",
        "0",
        "--ws-max-size",
        str(MAX_SIZE),
        "--no-access-log",
        "--ws-deflate-zlib",
        library,
    )
    try:
        port = int(server.wait_for_line(r"http://127\.0\.0\.1:(\d+)")[1])
        pid = server.process.pid
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as sock:
            sock.sendall(UPGRADE)
            head = read_until(sock, b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"permessage-deflate" in head
            # Start the peak-memory count from here (Linux: writing 5 resets VmHWM).
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            before = memory_kib(pid, "VmHWM")
            # The server may close before reading the rest: that is the point.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(frame)
            reply = read_until(sock, b"\x03\xf1")
            # A server frame: Close (0x88), unmasked, carrying 1009 (0x03f1) and a reason.
            assert reply[:1] == b"\x88", reply[:64]
            assert reply[2:4] == b"\x03\xf1", reply[:64]
            assert b"message too big" in reply
            peak = memory_kib(pid, "VmHWM")
        growth_bytes = (peak - before) * 1024
        assert growth_bytes < 2 * MAX_SIZE, f"server peak RSS grew by {growth_bytes} bytes"
    finally:
        server.stop()
