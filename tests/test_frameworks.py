"""Real Starlette and FastAPI apps served by asgiws, exercised with httpx and websockets."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from apps import TIMEOUT, quick_serve
from fastapi import Depends, FastAPI, Header, HTTPException, Query, WebSocketException, status
from fastapi import WebSocket as FastAPIWebSocket
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect as ws_client
from websockets.exceptions import ConnectionClosed, InvalidStatus


@pytest.fixture
def serve(serve: Any) -> Any:
    return quick_serve(serve)


def connect(uri: str, **kwargs: Any) -> Any:
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    return ws_client(uri, **kwargs)


# -- Starlette -----------------------------------------------------------------------------------

events: list[str] = []


def starlette_app() -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"greeting": "hello from lifespan", "counter": [0]}
        events.append("shutdown")

    async def home(request: Request) -> JSONResponse:
        request.state.counter[0] += 1
        return JSONResponse(
            {
                "greeting": request.state.greeting,
                "count": request.state.counter[0],
                "path": request.url.path,
                "query": dict(request.query_params),
            }
        )

    async def upload(request: Request) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(f"{len(body)}:{body[:10].decode()}")

    async def stream(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"part{i};".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    async def chat(websocket: WebSocket) -> None:
        offered = websocket.scope["subprotocols"]
        await websocket.accept(subprotocol="chat" if "chat" in offered else None)
        try:
            while True:
                text = await websocket.receive_text()
                if text == "bye":
                    await websocket.close(code=4000, reason="see you")
                    return
                await websocket.send_json({"echo": text, "greeting": websocket.state.greeting})
        except WebSocketDisconnect as exc:
            events.append(f"disconnect {exc.code}")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/upload", upload, methods=["POST"]),
            Route("/stream", stream),
            WebSocketRoute("/ws", chat),
        ],
        lifespan=lifespan,
    )


async def test_starlette_http_and_lifespan_state(serve: Any) -> None:
    events.clear()
    running = await serve(starlette_app(), lifespan="on")
    assert events == ["startup"]
    async with httpx.AsyncClient(base_url=running.http) as client:
        first = await client.get("/", params={"a": "1"})
        second = await client.get("/")
        upload = await client.post("/upload", content=b"0123456789" * 1000)
        stream = await client.get("/stream")
        missing = await client.get("/nowhere")
    assert first.status_code == 200
    assert first.json() == {
        "greeting": "hello from lifespan",
        "count": 1,
        "path": "/",
        "query": {"a": "1"},
    }
    # The state dict is copied per request, but the objects in it are shared.
    assert second.json()["count"] == 2
    assert upload.text == "10000:0123456789"
    assert stream.text == "part0;part1;part2;"
    assert stream.headers.get("transfer-encoding") == "chunked"
    assert missing.status_code == 404


async def test_starlette_lifespan_shutdown_runs(serve: Any) -> None:
    events.clear()
    running = await serve(starlette_app(), lifespan="on")
    running.stop()
    await running.wait_closed()
    await running.core.lifespan.shutdown()
    assert events == ["startup", "shutdown"]


async def test_starlette_websocket(serve: Any) -> None:
    events.clear()
    running = await serve(starlette_app(), lifespan="on")
    async with connect(running.ws + "/ws", subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        await ws.send("hi")
        assert json.loads(await ws.recv()) == {"echo": "hi", "greeting": "hello from lifespan"}
        await ws.send("bye")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "see you")


async def test_starlette_websocket_client_disconnect(serve: Any) -> None:
    events.clear()
    running = await serve(starlette_app(), lifespan="on")
    async with connect(running.ws + "/ws") as ws:
        await ws.send("one")
        await ws.recv()
        await ws.close(4100, "client done")
    running.stop()
    await running.wait_closed()  # waits for the app to finish
    assert "disconnect 4100" in events


async def test_starlette_websocket_unknown_route_is_rejected(serve: Any) -> None:
    running = await serve(starlette_app(), lifespan="on")
    with pytest.raises(InvalidStatus) as info:
        async with connect(running.ws + "/nowhere"):
            pass
    assert info.value.response.status_code == 403


# -- FastAPI -------------------------------------------------------------------------------------


class Item(BaseModel):
    name: str
    price: float


def fastapi_app() -> FastAPI:
    app = FastAPI()

    def common(x_user: str = Header(default="anonymous")) -> str:
        return x_user

    def ws_token(token: str | None = Query(default=None)) -> str:
        if token != "secret":
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="bad token")
        return token

    @app.get("/items/{item_id}")
    async def read_item(
        item_id: int, q: str | None = None, user: str = Depends(common)
    ) -> dict[str, Any]:
        if item_id == 0:
            raise HTTPException(status_code=404, detail="no item 0")
        return {"item_id": item_id, "q": q, "user": user}

    @app.post("/items")
    async def create_item(item: Item) -> dict[str, Any]:
        return {"created": item.name, "price": item.price}

    @app.websocket("/ws/{room}")
    async def room_ws(
        websocket: FastAPIWebSocket,
        room: str,
        name: str = "anon",
        token: str = Depends(ws_token),
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"room": room, "name": name})
        async for text in websocket.iter_text():
            await websocket.send_text(f"{room}/{name}: {text}")

    return app


async def test_fastapi_http(serve: Any) -> None:
    running = await serve(fastapi_app())
    async with httpx.AsyncClient(base_url=running.http) as client:
        got = await client.get("/items/7", params={"q": "x y"}, headers={"X-User": "ann"})
        anonymous = await client.get("/items/8")
        missing = await client.get("/items/0")
        invalid = await client.get("/items/not-a-number")
        created = await client.post("/items", json={"name": "pen", "price": 1.5})
        bad_body = await client.post("/items", json={"name": "pen"})
    assert got.json() == {"item_id": 7, "q": "x y", "user": "ann"}
    assert anonymous.json()["user"] == "anonymous"
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no item 0"}
    assert invalid.status_code == 422
    assert created.json() == {"created": "pen", "price": 1.5}
    assert bad_body.status_code == 422


async def test_fastapi_openapi(serve: Any) -> None:
    running = await serve(fastapi_app())
    async with httpx.AsyncClient(base_url=running.http) as client:
        schema = (await client.get("/openapi.json")).json()
    assert "/items/{item_id}" in schema["paths"]


async def test_fastapi_websocket_path_query_and_dependency(serve: Any) -> None:
    running = await serve(fastapi_app())
    async with connect(running.ws + "/ws/lobby?name=bob&token=secret") as ws:
        assert json.loads(await ws.recv()) == {"room": "lobby", "name": "bob"}
        await ws.send("hello")
        assert await ws.recv() == "lobby/bob: hello"
        await ws.send("again")
        assert await ws.recv() == "lobby/bob: again"


async def test_fastapi_websocket_dependency_rejects(serve: Any) -> None:
    running = await serve(fastapi_app())
    # The dependency closes before accept: asgiws answers 403 instead of 101.
    with pytest.raises(InvalidStatus) as info:
        async with connect(running.ws + "/ws/lobby?token=wrong"):
            pass
    assert info.value.response.status_code == 403
