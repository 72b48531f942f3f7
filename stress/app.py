"""The app every stress script serves: an echo that checks the server's promises itself.

Per WebSocket session it counts the ``websocket.disconnect`` messages it is given (exactly one is
promised) and anything ``receive()`` returns after the first one (nothing is). On lifespan
shutdown it prints one JSON line, ``STRESS-APP {...}``, that the scripts read: sessions, how
many got 0, 1 or more disconnects (or ended when a send() raised because the client had left,
which ASGI allows), messages after a disconnect, the close codes seen, HTTP
requests served.
"""

from __future__ import annotations

import collections
import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STATS: dict[str, Any] = {
    "sessions": 0,
    "disconnects": collections.Counter(),
    "after_disconnect": 0,
    "codes": collections.Counter(),
    "http": 0,
    "echoed": 0,
}


async def _session(receive: Receive, send: Send) -> None:
    STATS["sessions"] += 1
    disconnects = 0
    raised = False
    try:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if disconnects:
                STATS["after_disconnect"] += 1
            if message["type"] == "websocket.disconnect":
                disconnects += 1
                STATS["codes"][message.get("code")] += 1
                return
            text, data = message.get("text"), message.get("bytes")
            if text is not None and text.startswith("flood:"):
                size, count = (int(x) for x in text[6:].split(":"))
                for _ in range(count):
                    await send({"type": "websocket.send", "bytes": bytes(size)})
                continue
            await send({"type": "websocket.send", "text": text, "bytes": data})
            STATS["echoed"] += 1
    except OSError:
        raised = True  # send() after the client left (ClientDisconnected): allowed
    finally:
        STATS["disconnects"]["send raised" if raised else min(disconnects, 2)] += 1


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await _session(receive, send)
    elif scope["type"] == "http":
        STATS["http"] += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                report = {
                    k: dict(v) if isinstance(v, collections.Counter) else v
                    for k, v in STATS.items()
                }
                sys.stdout.write("STRESS-APP " + json.dumps(report) + "\n")
                sys.stdout.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return
