"""Echo servers that are not ASGI servers: the ceilings the ASGI servers are compared with.

Run as `python -m benchmarks.ceilings {websockets,picows} --port N`. Both run on uvloop,
offer no compression, listen on 127.0.0.1 only, and stop on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

HOST = "127.0.0.1"
MAX_MESSAGE = 16 * 1024 * 1024


async def _serve_websockets(port: int, stop: asyncio.Event) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(connection: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            async for message in connection:
                await connection.send(message)

    async with serve(handler, HOST, port, compression=None, max_size=MAX_MESSAGE):
        await stop.wait()


async def _serve_picows(port: int, stop: asyncio.Event) -> None:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )

    class Echo(WSListener):
        def __init__(self) -> None:
            self.parts: list[bytes] = []
            self.kind: Any = None

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
                return
            if msg_type in (WSMsgType.PING, WSMsgType.PONG):
                return
            if frame.fin and not self.parts:
                transport.send(msg_type, frame.get_payload_as_memoryview())
                return
            if msg_type != WSMsgType.CONTINUATION:
                self.kind = msg_type
            self.parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                transport.send(self.kind, b"".join(self.parts))
                self.parts = []

    def factory(_request: WSUpgradeRequest) -> WSListener:
        return Echo()

    server = await ws_create_server(factory, HOST, port, max_frame_size=MAX_MESSAGE)
    try:
        await stop.wait()
    finally:
        server.close()


async def _main(name: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if name == "websockets":
        await _serve_websockets(port, stop)
    else:
        await _serve_picows(port, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=("websockets", "picows"))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(_main(args.name, args.port))


if __name__ == "__main__":
    main()
