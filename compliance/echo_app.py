"""A raw ASGI echo app for Autobahn|Testsuite's fuzzingclient.

Every WebSocket is accepted (with no subprotocol) and each message is sent straight back: text as
text, bytes as bytes, until the client disconnects. Plain HTTP requests get a short 200 so a
person can check that the server is up; lifespan events are acknowledged.

Run it under the server being tested, e.g.
``python -m asgiws compliance.echo_app:app --ws-max-size 16777216``
(Autobahn's 9.* cases send messages of up to 16 MiB).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await _echo(receive, send)
    elif kind == "http":
        await _hello(receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)
    else:
        raise ValueError(f"unsupported ASGI scope type: {kind!r}")


async def _echo(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        # The client went away before the handshake finished: nothing to accept.
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        # ASGI: a websocket.receive carries exactly one of "text" and "bytes" that is not None.
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def _hello(receive: Receive, send: Send) -> None:
    body = b"asgiws compliance echo app: connect with a WebSocket client\n"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
