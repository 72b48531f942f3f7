"""Large binary frames read straight into their payload buffer (server.LargeFrameReader), on
asyncio's own loop and on uvloop, in the clear and over TLS, against a real client."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import trustme
from apps import serving, ws_echo
from websockets.asyncio.client import connect

import asgiws
from asgiws.websocket import WebSocketConnection

TIMEOUT = 20.0


def run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(asyncio.wait_for(main(), TIMEOUT))
    else:
        asyncio.run(asyncio.wait_for(main(), TIMEOUT))


@pytest.fixture
def in_place_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of each read that went straight into a payload buffer."""
    reads: list[int] = []
    original = WebSocketConnection.received_into

    def counting(self: WebSocketConnection, nbytes: int) -> bool:
        reads.append(nbytes)
        return original(self, nbytes)

    monkeypatch.setattr(WebSocketConnection, "received_into", counting)
    return reads


@pytest.mark.parametrize("tls", [False, True], ids=["clear", "tls"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_large_frames_are_read_in_place_and_echoed_whole(
    loop: str, tls: bool, in_place_reads: list[int], tmp_path: Path
) -> None:
    rng = random.Random(11)
    # Large ones in place, small ones between them (through the shared read buffer once the
    # connection has switched), a large text one streamed through the UTF-8 decoder.
    messages: list[Any] = [
        rng.randbytes(1 << 20), b"small", "small", rng.randbytes(200_000), "t" * 300_000,
        rng.randbytes(3 << 20), rng.randbytes(70_000), b"\x00" * 10,
    ]  # fmt: skip
    options: dict[str, Any] = {"access_log": False, "lifespan": "off"}
    client_ssl: ssl.SSLContext | None = None
    if tls:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert_file = tmp_path / "cert.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(cert_file)
        options["ssl_certfile"] = str(cert_file)
        client_ssl = ssl.create_default_context()
        ca.configure_trust(client_ssl)

    async def main() -> None:
        server = asgiws.Server(ws_echo, **options)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        scheme = "wss" if tls else "ws"
        url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}/"
        async with (
            serving(server, [sock]),
            connect(url, ssl=client_ssl, max_size=None, compression=None) as ws,
        ):
            for message in messages:  # one at a time
                await ws.send(message)
                assert await ws.recv() == message
            for message in messages:  # all in flight
                await ws.send(message)
            for message in messages:
                assert await ws.recv() == message
            await ws.close()
            assert ws.close_code == 1000

    run(loop, main)
    assert in_place_reads, "no read went into a payload buffer"
    # Most of the large payloads' bytes came in place (the first read of each goes the usual way).
    large = sum(len(m) for m in messages if isinstance(m, bytes) and len(m) >= 65536) * 2
    assert sum(in_place_reads) > large // 2
