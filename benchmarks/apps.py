"""The echo applications every ASGI server in the suite runs.

`echo` is raw ASGI, so the server's own cost dominates; `starlette_echo` is the same echo
through Starlette's WebSocket class, the way most applications are written, and
`fastapi_echo` the same in FastAPI. Over HTTP, `echo` answers `GET /` with 200 "ok" and
`POST /` with 200 "ok" once it has read the whole body, 400 when the body it read is not
Content-Length bytes long (so a load generator that only counts statuses still checks it);
the framework apps answer `GET /` with the JSON object `HTTP_JSON` from a route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_NOT_FOUND_BODY = b"websocket echo only\n"
OK_BODY = b"ok"
HTTP_JSON = {"message": "ok"}
_OK_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _not_found(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(_NOT_FOUND_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _NOT_FOUND_BODY})


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Raw ASGI: accept, then send back every message with its type (text or bytes)."""
    kind = scope["type"]
    if kind == "websocket" and scope["path"].startswith(FANOUT_PREFIX):
        await _fanout(scope, receive, send)
    elif kind == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    await send({"type": "websocket.send", "text": text})
                else:
                    await send({"type": "websocket.send", "bytes": message.get("bytes")})
            elif message["type"] == "websocket.disconnect":
                return
    elif kind == "lifespan":
        await _lifespan(receive, send)
    elif kind == "http":
        await _http(scope, receive, send)


FANOUT_PREFIX = "/fanout/"
SUBSCRIBED = "subscribed"
_subscribers: set[Send] = set()


async def _fanout(scope: Scope, receive: Receive, send: Send) -> None:
    """/fanout/sub: told SUBSCRIBED once registered, then gets every published message;
    /fanout/pub: every text message it sends goes to every subscriber, the same str object
    to each, one `await send()` after another (the chat / live-feed shape)."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    publisher = scope["path"] == FANOUT_PREFIX + "pub"
    if not publisher:
        _subscribers.add(send)
        await send({"type": "websocket.send", "text": SUBSCRIBED})
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if publisher:
                text = message.get("text")
                for subscriber in list(_subscribers):
                    try:
                        await subscriber({"type": "websocket.send", "text": text})
                    except Exception:  # a subscriber that went away meanwhile
                        _subscribers.discard(subscriber)
    finally:
        _subscribers.discard(send)


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] != "/" or scope["method"] not in ("GET", "POST"):
        await _not_found(send)
        return
    status = 200
    if scope["method"] == "POST":
        declared = -1
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value)
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # http.disconnect
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        status = 200 if received == declared else 400
    await send({"type": "http.response.start", "status": status, "headers": _OK_HEADERS})
    await send({"type": "http.response.body", "body": OK_BODY})


def _build_starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(message["bytes"])

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse(HTTP_JSON)

    return Starlette(routes=[Route("/", hello), WebSocketRoute("/", endpoint)])


def _build_fastapi_app() -> Any:
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/")
    async def hello() -> dict[str, str]:
        return HTTP_JSON

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            return

    # Under `from __future__ import annotations` the annotation is the string "WebSocket",
    # which FastAPI resolves in this module's globals, where the class (imported above, so
    # that importing `echo` needs no FastAPI) is not: it took `websocket` for a required
    # query parameter and closed every upgrade with 1008. The class itself, then.
    endpoint.__annotations__["websocket"] = WebSocket
    app.websocket("/")(endpoint)
    return app


_BUILDERS = {"starlette_echo": _build_starlette_app, "fastapi_echo": _build_fastapi_app}


def __getattr__(name: str) -> Any:
    # Built on first use, so importing `echo` never requires Starlette or FastAPI.
    if name in _BUILDERS:
        app = _BUILDERS[name]()
        globals()[name] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
