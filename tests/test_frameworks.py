"""Real Starlette, FastAPI, Litestar, Quart, Django and Django Channels apps served by asgiws,
exercised with httpx and websockets. Starlette and FastAPI apps are written here; the others
are in tests/frameworks/, one module each. Django and Channels run in asgiws subprocesses (Django's
settings are process-wide), Channels with channels_redis on a redis-server of the test's own."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps import TIMEOUT, quick_serve
from cli_process import DEADLINE_S, ServerProcess
from fastapi import Depends, FastAPI, Header, HTTPException, Query, WebSocketException, status
from fastapi import WebSocket as FastAPIWebSocket
from frameworks.litestar_app import litestar_app
from frameworks.quart_app import quart_app
from frameworks.redis_server import RedisServer
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


# -- Litestar and Quart: one app each (tests/frameworks/), the same routes and WebSocket talk ----

FRAMEWORKS = {"litestar": litestar_app, "quart": quart_app}


@pytest.fixture(params=sorted(FRAMEWORKS))
def framework_app(request: pytest.FixtureRequest) -> tuple[Any, list[str]]:
    """A fresh app of each framework and the list its lifespan and disconnects report to."""
    reported: list[str] = []
    return FRAMEWORKS[request.param](reported), reported


async def test_framework_http_and_lifespan(
    serve: Any, framework_app: tuple[Any, list[str]]
) -> None:
    app, reported = framework_app
    running = await serve(app, lifespan="on")
    assert reported == ["startup"]
    async with httpx.AsyncClient(base_url=running.http) as client:
        item = await client.get("/items/7", params={"q": "x y"})
        echo = await client.post("/echo", json={"name": "pen", "tags": ["a", "b"]})
        bad_id = await client.get("/items/seven")
        missing = await client.get("/nowhere")
    assert item.status_code == 200
    assert item.json()["item_id"] == 7
    assert item.json()["q"] == "x y"
    assert item.json()["greeting"] == "hello from lifespan"
    assert echo.json() == {"got": {"name": "pen", "tags": ["a", "b"]}, "client": "127.0.0.1"}
    assert bad_id.status_code in (400, 404)  # Litestar: 400 (validation), Quart: 404 (no route)
    assert missing.status_code == 404
    await running.wait_closed()
    assert reported == ["startup", "shutdown"]


async def test_framework_websocket_text_json_and_server_close(
    serve: Any, framework_app: tuple[Any, list[str]]
) -> None:
    app, _ = framework_app
    running = await serve(app, lifespan="on")
    async with connect(running.ws + "/ws", subprotocols=["other", "chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert json.loads(await ws.recv()) == {"greeting": "hello from lifespan"}
        await ws.send("hi there")
        assert await ws.recv() == "echo: hi there"
        await ws.send(json.dumps({"n": 1, "list": [1, 2], "text": "é"}))
        assert json.loads(await ws.recv()) == {"echo": {"n": 1, "list": [1, 2], "text": "é"}}
        await ws.send("bye")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "see you")


async def test_framework_websocket_client_close(
    serve: Any, framework_app: tuple[Any, list[str]]
) -> None:
    app, reported = framework_app
    running = await serve(app, lifespan="on")
    async with connect(running.ws + "/ws") as ws:
        assert ws.subprotocol is None
        await ws.recv()
        await ws.close(4100, "client done")
    # The server answered the client's Close with the same code (RFC 6455 §5.5.1).
    assert ws.protocol.close_rcvd is not None
    assert ws.protocol.close_rcvd.code == 4100
    await running.wait_closed()  # waits for the app to finish
    assert "disconnect 4100 client done" in reported
    assert reported[-1] == "shutdown"


# -- Django and Django Channels, in asgiws subprocesses, with channels_redis on a redis-server -----

TESTS = Path(__file__).resolve().parent
needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="redis-server is not installed (CI installs it: .ci/run)",
)


@pytest.fixture
def asgiws_process() -> Iterator[Callable[..., tuple[ServerProcess, int]]]:
    """``asgiws_process(APP, **env)``: an asgiws subprocess on a free port, and that port."""
    started: list[ServerProcess] = []

    def start(app: str, **env: str) -> tuple[ServerProcess, int]:
        server = ServerProcess(app, "--app-dir", str(TESTS), "--port", "0", pass_fds=(), **env)
        started.append(server)
        port = int(server.wait_for_line(r"running on http://127\.0\.0\.1:(\d+)")[1])
        return server, port

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with RedisServer(tmp_path) as redis:
        yield redis.url


async def test_django_http(asgiws_process: Callable[..., tuple[ServerProcess, int]]) -> None:
    server, port = asgiws_process("frameworks.django_app:application")
    # Django has no lifespan support: the default --lifespan auto says so and carries on.
    server.wait_for_line(r"ASGI 'lifespan' protocol appears unsupported")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        item = await client.get("/items/7", params={"q": "x y"})
        sync = await client.get("/sync")
        echo = await client.post("/echo", json={"name": "pen"})
        bad_id = await client.get("/items/seven")
        missing = await client.get("/nowhere")
    assert item.json() == {"item_id": 7, "q": "x y"}
    assert sync.text == "sync view, main thread: False"
    assert echo.json() == {
        "method": "POST",
        "got": {"name": "pen"},
        "client": "127.0.0.1",
        "scheme": "http",
    }
    assert bad_id.status_code == 404
    assert missing.status_code == 404
    server.wait_for_line(r'"POST /echo HTTP/1\.1" 200')
    server.stop()
    assert server.process.returncode == 0, server.lines


@needs_redis
async def test_channels_websocket_across_two_processes(
    asgiws_process: Callable[..., tuple[ServerProcess, int]], redis_url: str
) -> None:
    app = "frameworks.channels_app:application"
    _, port_a = asgiws_process(app, ASGIWS_TEST_REDIS_URL=redis_url)
    server_b, port_b = asgiws_process(app, ASGIWS_TEST_REDIS_URL=redis_url)
    async with (
        connect(f"ws://127.0.0.1:{port_a}/ws", subprotocols=["chat"]) as alice,
        connect(f"ws://127.0.0.1:{port_b}/ws") as bob,
    ):
        assert (alice.subprotocol, bob.subprotocol) == ("chat", None)
        hello_a, hello_b = json.loads(await alice.recv()), json.loads(await bob.recv())
        assert hello_a["layer"] == hello_b["layer"] == "RedisChannelLayer"
        assert hello_a["pid"] != hello_b["pid"]
        await alice.send("hi there")
        assert await alice.recv() == "echo: hi there"
        await alice.send(json.dumps({"n": 1, "text": "é"}))
        assert json.loads(await alice.recv()) == {"echo": {"n": 1, "text": "é"}}
        # Through redis to both processes' members of the group.
        await alice.send(json.dumps({"broadcast": "to everyone"}))
        assert json.loads(await alice.recv())["broadcast"] == "to everyone"
        assert json.loads(await bob.recv()) == {"broadcast": "to everyone", "pid": hello_b["pid"]}
        # Alice's close code and reason, as her consumer got them, told to bob on the other one.
        await alice.close(4100, "client done")
        assert alice.protocol.close_rcvd is not None
        assert alice.protocol.close_rcvd.code == 4100
        assert json.loads(await bob.recv())["broadcast"] == "disconnect 4100 client done"
        await bob.send("bye")
        with pytest.raises(ConnectionClosed) as info:
            await bob.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "see you")
    server_b.wait_for_line(r"ASGI 'lifespan' protocol appears unsupported")


@needs_redis
async def test_channels_http_and_sigterm(
    asgiws_process: Callable[..., tuple[ServerProcess, int]], redis_url: str
) -> None:
    server, port = asgiws_process(
        "frameworks.channels_app:application", ASGIWS_TEST_REDIS_URL=redis_url
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        item = await client.get("/items/3")
    assert item.json() == {"item_id": 3, "q": None}
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.recv()
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001  # Going Away, the default --ws-shutdown-code
    assert server.process.wait(timeout=DEADLINE_S) == 0, server.lines
