"""wsload.c, the benchmarks' C load generator: built with gcc, run against real servers.

Each run is short (a fraction of a second of warm-up, about a second measured) and bounded
twice: by wsload's own deadlines and by the timeout `wsload.run` kills it at.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import importlib
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
wsload = importlib.import_module("benchmarks.wsload")
scenarios = importlib.import_module("benchmarks.scenarios")
apps = importlib.import_module("benchmarks.apps")

pytestmark = [
    pytest.mark.tooling,
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
]

WARMUP = 0.3
DURATION = 1.0
RUN_TIMEOUT = 60.0  # wsload is killed past this; it ends itself far sooner
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wsload")
    built = wsload.build(directory)
    assert built is not None and built.exists()
    assert wsload.build(directory) == built  # cached: keyed by the source's hash
    return Path(built)


def scenario(name: str, **changes: Any) -> Any:
    base = scenarios.DEFAULTS[name]
    return dataclasses.replace(base, warmup=WARMUP, duration=DURATION, **changes)


async def run_client(binary: Path, chosen: Any, port: int) -> tuple[dict[str, Any], list[Any]]:
    """wsload to its end, in a thread so the server in this event loop keeps serving."""
    markers: list[Any] = []
    result = await asyncio.to_thread(
        wsload.run,
        wsload.command(binary, chosen, port),
        timeout=RUN_TIMEOUT,
        on_start=lambda marker: markers.append(("start", marker)),
        on_end=lambda marker: markers.append(("end", marker)),
    )
    return result, markers


def test_self_test(binary: Path) -> None:
    # SHA-1 and base64 vectors (FIPS 180 examples, RFC 4648, RFC 6455's accept example).
    done = subprocess.run([binary, "--self-test"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"ok":true}'


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("echo", {}),
        ("pipelined", {}),
        ("large", {"connections": 2, "size": 256 * 1024}),
        # Pre-masked bodies queued behind a full socket: copied into the buffer, in order.
        ("pipelined", {"connections": 2, "in_flight": 16, "size": 1024 * 1024 + 3}),
        ("handshakes", {"connections": 20}),
    ],
)
async def test_against_asgiws(
    binary: Path, serve: Callable[..., Any], name: str, changes: dict[str, Any]
) -> None:
    server = await serve(apps.echo)
    chosen = scenario(name, **changes)
    result, markers = await run_client(binary, chosen, server.port)
    assert result["ok"], result
    assert result["exit_status"] == 0
    assert "error" not in result
    assert result["mode"] == chosen.kind
    assert result["ops"] > 0
    assert result["ops_total"] >= result["ops"]
    assert result["latency_samples"] == result["ops"]
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p99.9"]
    assert [edge for edge, _ in markers] == ["start", "end"]
    start, end = markers[0][1], markers[1][1]
    assert end.t - start.t == pytest.approx(DURATION, abs=0.2)
    assert end.utime + end.stime >= start.utime + start.stime


def corrupting_echo(after: int) -> Callable[..., Any]:
    """Raw ASGI echo that changes one byte of the message numbered `after` (from 0)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        count = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None and count == after:
                text = text[:-1] + ("!" if text[-1] != "!" else "?")
            count += 1
            await send({"type": "websocket.send", "text": text})

    return app


async def test_wrong_echo_fails_the_run(binary: Path, serve: Callable[..., Any]) -> None:
    server = await serve(corrupting_echo(after=5))
    result, _markers = await run_client(binary, scenario("echo", connections=4), server.port)
    assert not result["ok"]
    assert result["wrong_echo"] is True
    assert result["exit_status"] == 1
    assert "wrong echo on connection" in result["error"]
    assert "byte 31 of 32" in result["error"]


def test_refused_connection_fails_the_run(binary: Path) -> None:
    with socket.socket() as unused:  # bound, never listening: connects are refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        result = wsload.run(
            wsload.command(binary, scenario("echo", connections=2), port), timeout=RUN_TIMEOUT
        )
    assert not result["ok"]
    assert result["exit_status"] == 1
    assert "refused" in result["error"]


# -- A raw WebSocket server, for what no ASGI server does on demand ----------------------------


def server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    first = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        return first + bytes([len(payload)]) + payload
    if len(payload) < 65536:
        return first + bytes([126]) + len(payload).to_bytes(2, "big") + payload
    return first + bytes([127]) + len(payload).to_bytes(8, "big") + payload


async def client_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    first, second = await reader.readexactly(2)
    assert second & 0x80, "client frames are masked"
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4)
    data = await reader.readexactly(length)
    payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))
    return first & 0x0F, bool(first & 0x80), payload


@dataclasses.dataclass
class RawServer:
    """Fragments every echo in three (7-, 16- and 64-bit lengths) with a ping in between."""

    wrong_accept: bool = False
    pongs: list[bytes] = dataclasses.field(default_factory=list)
    pings: int = 0
    closes: list[bytes] = dataclasses.field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"(?im)^sec-websocket-key:[ \t]*(\S+)", head)
            assert found is not None
            accept = base64.b64encode(hashlib.sha1(found.group(1) + GUID).digest())
            if self.wrong_accept:
                accept = accept[::-1]
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            while True:
                opcode, fin, payload = await client_frame(reader)
                assert fin
                if opcode == 0x8:
                    self.closes.append(payload)
                    writer.write(server_frame(0x8, payload[:2]))
                    await writer.drain()
                    return
                if opcode == 0xA:
                    self.pongs.append(payload)
                    continue
                ping = b"ping %d" % self.pings
                self.pings += 1
                writer.write(server_frame(opcode, payload[:1], fin=False))
                writer.write(server_frame(0x9, ping))
                writer.write(server_frame(0x0, payload[1:201], fin=False))
                writer.write(server_frame(0x0, payload[201:]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def test_fragments_long_lengths_and_pings(binary: Path) -> None:
    raw = RawServer()
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        chosen = scenario("pipelined", connections=2, in_flight=2, size=70_000)
        result, _markers = await run_client(binary, chosen, port)
    assert result["ok"], result
    assert result["ops"] > 0
    assert raw.pings > 0
    assert len(raw.pongs) >= raw.pings - 4  # the last pings may cross the client's Close
    assert set(raw.pongs) <= {b"ping %d" % n for n in range(raw.pings)}
    assert raw.closes == [b"\x03\xe8", b"\x03\xe8"]  # Close 1000 on each connection


async def test_wrong_accept_fails_the_run(binary: Path) -> None:
    raw = RawServer(wrong_accept=True)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result, _markers = await run_client(binary, scenario("handshakes", connections=2), port)
    assert not result["ok"]
    assert result["exit_status"] == 1
    assert "wrong Sec-WebSocket-Accept" in result["error"]
