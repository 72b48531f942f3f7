"""The app of the metrics and probe tests (tests/test_metrics.py), in a module of its own so that
a server subprocess can import it too (``--app-dir tests``, ``metrics_app:app``).

HTTP: ``/`` answers 200, ``/boom`` raises (500), ``/block?SECONDS`` blocks the event loop for
that long and then answers 200, anything else 404. WebSocket: ``/deny`` is refused (403);
otherwise it echoes, closes with 4000 on the text ``close4000``, raises (1011) on ``boom``,
sends N binary messages of FLOOD_SIZE bytes on ``flood N``.
"""

from __future__ import annotations

import time

from asgiws.types import Receive, Scope, Send

FLOOD_SIZE = 64 * 1024  # each message of "flood N"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "http":
        path = scope["path"]
        if path == "/boom":
            raise RuntimeError("boom, as asked")
        if path == "/block":
            print("blocking the event loop", flush=True)  # for the test that waits on it
            time.sleep(float(scope["query_string"]))  # blocks the loop: /live must not answer
        status = 200 if path in ("/", "/block") else 404
        body = b"ok\n" if status == 200 else b"not found\n"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "close4000":
            await send({"type": "websocket.close", "code": 4000})
        elif text == "boom":
            raise RuntimeError("boom, as asked")
        elif text is not None and text.startswith("flood "):
            for _ in range(int(text[6:])):
                await send({"type": "websocket.send", "bytes": bytes(FLOOD_SIZE)})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
