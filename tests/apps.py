"""Small raw-ASGI apps and socket helpers shared by the end-to-end server tests.

The helpers read from real sockets: an HTTP/1.1 response reader (Content-Length, chunked or
until EOF) and a server-frame reader; what a client writes comes from :mod:`wire`. Every read is
bounded by a timeout, so a server that goes quiet fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from wire import Frame, ws_request

import asgiws

TIMEOUT = 5.0


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# -- HTTP on the wire ----------------------------------------------------------------------------


@dataclasses.dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]  # names lower-cased, order kept
    body: bytes
    chunked: bool = False
    complete: bool = True  # False: the connection ended inside the body

    def header(self, name: bytes) -> bytes | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


async def read_head(reader: asyncio.StreamReader, *, timeout: float = TIMEOUT) -> Response:
    """Read one response head (status line and headers); body left empty."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    assert version in (b"HTTP/1.1", b"HTTP/1.0"), lines[0]
    status, _, reason = rest.partition(b" ")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return Response(int(status), reason, headers, b"")


async def read_response(
    reader: asyncio.StreamReader,
    *,
    head_request: bool = False,
    timeout: float = TIMEOUT,
) -> Response:
    """Read one full response. Interim 1xx responses other than 101 are skipped."""
    while True:
        response = await read_head(reader, timeout=timeout)
        if response.status >= 200 or response.status == 101:
            break
    if head_request or response.status in (101, 204, 304):
        return response
    length = response.header(b"content-length")
    encoding = response.header(b"transfer-encoding")
    if encoding is not None and encoding.lower() == b"chunked":
        response.chunked = True
        parts = []
        while True:
            try:
                size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
            except asyncio.IncompleteReadError as exc:
                parts.append(exc.partial)
                response.complete = False
                break
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)  # no trailers
                break
            try:
                chunk = await asyncio.wait_for(reader.readexactly(size + 2), timeout)
            except asyncio.IncompleteReadError as exc:
                parts.append(exc.partial)
                response.complete = False
                break
            parts.append(chunk[:-2])
        response.body = b"".join(parts)
    elif length is not None:
        try:
            response.body = await asyncio.wait_for(reader.readexactly(int(length)), timeout)
        except asyncio.IncompleteReadError as exc:
            response.body = exc.partial
            response.complete = False
    else:
        response.body = await asyncio.wait_for(reader.read(), timeout)
    return response


async def wait_eof(reader: asyncio.StreamReader, *, timeout: float = TIMEOUT) -> bytes:
    """Read until the server closes the connection; return what came (usually nothing)."""
    return await asyncio.wait_for(reader.read(), timeout)


async def parse_response(data: bytes, *, head_request: bool = False) -> Response:
    """Parse one complete response out of ``data`` (what ``Running.raw`` returns)."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_response(reader, head_request=head_request)


# -- WebSocket on the wire -----------------------------------------------------------------------


async def read_frame(reader: asyncio.StreamReader, *, timeout: float = TIMEOUT) -> Frame:
    """Read one server frame (servers never mask)."""

    async def read() -> Frame:
        first, second = await reader.readexactly(2)
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(length)
        return Frame(bool(first & 0x80), first & 0x0F, payload)

    return await asyncio.wait_for(read(), timeout)


async def ws_connect_raw(
    host: str,
    port: int,
    request: bytes | None = None,
    *,
    limit: int = 2**22,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Response]:
    """Open a connection, send the upgrade request, read the response head (101 expected)."""
    reader, writer = await asyncio.open_connection(host, port, limit=limit)
    writer.write(request if request is not None else ws_request())
    response = await read_head(reader)
    return reader, writer, response


# -- apps ----------------------------------------------------------------------------------------


class Recorder:
    """Collects what apps see; tests wait on it with bounded timeouts."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.notes: list[Any] = []
        self._changed = asyncio.Event()

    def scope(self, scope: dict[str, Any]) -> None:
        self.scopes.append(scope)
        self._poke()

    def message(self, message: dict[str, Any]) -> dict[str, Any]:
        self.messages.append(message)
        self._poke()
        return message

    def note(self, value: Any) -> None:
        self.notes.append(value)
        self._poke()

    def error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, condition: Callable[[], Any], timeout: float = TIMEOUT) -> None:
        """Wait until ``condition()`` is true; every change of the record re-checks it."""

        async def wait() -> None:
            while not condition():
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]


async def ws_echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Accepts, echoes text and bytes until the client closes."""
    assert scope["type"] == "websocket"
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def http_hello(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Answers every HTTP request with its path."""
    assert scope["type"] == "http"
    await read_body(receive)
    body = scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def respond(send: Send, status: int = 200, body: bytes = b"", headers: Any = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


def quick_serve(serve: Any) -> Any:
    """The ``serve`` fixture with a short graceful shutdown, so a stuck test ends quickly."""

    async def start(app: Any, **options: Any) -> Any:
        options.setdefault("timeout_graceful_shutdown", 2.0)
        return await serve(app, **options)

    return start


@contextlib.asynccontextmanager
async def serving(
    server: asgiws.Server, sockets: list[socket.socket] | None = None
) -> AsyncIterator[asgiws.Server]:
    """``server.serve()`` in a task, from listening until the block ends; then a graceful
    shutdown, and the exit status must be 0."""
    running = asyncio.ensure_future(server.serve(sockets))
    try:
        await asyncio.wait_for(server.wait_started(), TIMEOUT)
    except BaseException as exc:
        running.cancel()
        raise AssertionError(f"the server did not start: {exc!r}") from exc
    try:
        yield server
    finally:
        await asyncio.wait_for(server.shutdown(), 4 * TIMEOUT + 30)
        assert await asyncio.wait_for(running, TIMEOUT) == 0
