"""A Litestar app: lifespan (startup and shutdown hooks plus app state), an HTTP route with a
path parameter, a query and a JSON body, and a WebSocket route that echoes text and JSON and
closes with a code and reason either way."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, WebSocket, get, post, websocket
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.serialization import decode_json


def litestar_app(events: list[str]) -> Litestar:
    """``events`` receives "startup", "shutdown" and "disconnect CODE REASON" as they happen."""

    async def startup(app: Litestar) -> None:
        events.append("startup")
        app.state.greeting = "hello from lifespan"
        app.state.count = 0

    async def shutdown(app: Litestar) -> None:
        events.append("shutdown")

    @get("/items/{item_id:int}")
    async def read_item(
        item_id: FromPath[int], state: State, q: FromQuery[str | None] = None
    ) -> dict[str, Any]:
        state.count += 1
        return {"item_id": item_id, "q": q, "greeting": state.greeting, "count": state.count}

    @post("/echo")
    async def echo(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await request.json()
        return {"got": body, "client": request.client.host if request.client else None}

    @websocket("/ws")
    async def chat(socket: WebSocket[Any, Any, Any]) -> None:
        offered = socket.scope["subprotocols"]
        await socket.accept(subprotocols="chat" if "chat" in offered else None)
        await socket.send_json({"greeting": socket.app.state.greeting})
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                events.append(f"disconnect {message['code']} {message.get('reason', '')}")
                return
            text = message.get("text")
            if text == "bye":
                await socket.close(code=4000, reason="see you")
                return
            if isinstance(text, str) and text.startswith("{"):
                await socket.send_json({"echo": decode_json(text)})
            else:
                await socket.send_text(f"echo: {text}")

    return Litestar(
        route_handlers=[read_item, echo, chat],
        on_startup=[startup],
        on_shutdown=[shutdown],
    )
