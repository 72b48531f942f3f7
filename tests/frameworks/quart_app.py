"""A Quart app: lifespan (before_serving / after_serving), an HTTP route with a path parameter,
a query and a JSON body, and a WebSocket route that echoes text and JSON and closes with a code
and reason either way.

Quart cancels a WebSocket handler when the client goes away, without telling it the close code,
so the code and reason are read by a small ASGI middleware on ``app.asgi_app`` (Quart's own
place for middleware): what the server delivered, as the framework received it."""

from __future__ import annotations

import json
from typing import Any

from quart import Quart, request, websocket


def quart_app(events: list[str]) -> Quart:
    """``events`` receives "startup", "shutdown" and "disconnect CODE REASON" as they happen."""
    app = Quart(__name__)

    @app.before_serving
    async def startup() -> None:
        events.append("startup")
        app.config["GREETING"] = "hello from lifespan"

    @app.after_serving
    async def shutdown() -> None:
        events.append("shutdown")

    @app.get("/items/<int:item_id>")
    async def read_item(item_id: int) -> dict[str, Any]:
        return {"item_id": item_id, "q": request.args.get("q"), "greeting": app.config["GREETING"]}

    @app.post("/echo")
    async def echo() -> dict[str, Any]:
        return {"got": await request.get_json(), "client": request.remote_addr}

    @app.websocket("/ws")
    async def chat() -> None:
        offered = websocket.requested_subprotocols
        await websocket.accept(subprotocol="chat" if "chat" in offered else None)
        await websocket.send_json({"greeting": app.config["GREETING"]})
        while True:
            text = await websocket.receive()
            if text == "bye":
                await websocket.close(4000, "see you")
                return
            if isinstance(text, str) and text.startswith("{"):
                await websocket.send_json({"echo": json.loads(text)})
            else:
                await websocket.send(f"echo: {text!s}")

    inner = app.asgi_app

    async def record_disconnects(scope: Any, receive: Any, send: Any) -> None:
        async def receiving() -> Any:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                events.append(f"disconnect {message['code']} {message.get('reason', '')}")
            return message

        await inner(scope, receiving if scope["type"] == "websocket" else receive, send)

    app.asgi_app = record_disconnects  # type: ignore[method-assign]
    return app
