"""--limit-concurrency and --limit-per-client, hit with real clients on real sockets: raw HTTP
bytes, httpx and the ``websockets`` client; the 503's body, Retry-After and access line; a freed
place letting the next connection in; per-client budgets behind a trusted proxy and from an
untrusted peer. The counting itself (asgiws.limits) is checked without sockets at the end."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from apps import TIMEOUT, Response, read_response, wait_eof
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wire import http_request

from asgiws import cli
from asgiws.limits import ConnectionLimits


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """HTTP: 200 with the client the scope shows. WebSocket: accept, echo until closed."""
    if scope["type"] == "http":
        client = scope["client"]
        body = f"hello {client[0] if client else '-'}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text")})


class AccessLines(logging.Handler):
    """The access lines the server logs, awaitable: the server runs in the test's event loop."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.changed.set()

    async def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> str:
        regex = re.compile(pattern)

        async def wait() -> str:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no access line matching {pattern!r} in {self.lines!r}") from None


@pytest.fixture
def access() -> Iterator[AccessLines]:
    handler = AccessLines()
    logger = logging.getLogger("asgiws.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class Client:
    """One keep-alive HTTP/1.1 connection, spoken in raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, path: str = "/", forwarded_for: str | None = None) -> Response:
        headers = [("Host", "test")]
        if forwarded_for is not None:
            headers.append(("X-Forwarded-For", forwarded_for))
        self.writer.write(http_request("GET", path, headers))
        return await read_response(self.reader)

    async def close(self) -> None:
        """Half-close and wait for the server's close: asyncio calls the server's
        connection_lost before it closes the socket, so once the EOF is here the connection's
        place is given back."""
        self.writer.write_eof()
        assert await wait_eof(self.reader) == b""
        self.writer.close()


@pytest.fixture
async def clients(serve: Any) -> AsyncIterator[Any]:
    """``await clients(running)``: a new raw connection to the server; all closed after."""
    opened: list[Client] = []

    async def open_client(running: Any) -> Client:
        reader, writer = await asyncio.open_connection(running.host, running.port)
        client = Client(reader, writer)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.writer.close()


def assert_503(response: Response, reason: str) -> None:
    assert response.status == 503
    assert response.header(b"retry-after") == b"1"
    assert response.header(b"content-type") == b"text/plain; charset=utf-8"
    assert response.header(b"connection") == b"close"
    assert response.body.decode() == reason + "\n"


# -- --limit-concurrency -------------------------------------------------------------------------


async def test_concurrency_limit_refuses_http_until_a_place_is_freed(
    serve: Any, clients: Any, access: AccessLines
) -> None:
    running = await serve(app, limit_concurrency=2, access_log=True)
    first, second, third = [await clients(running) for _ in range(3)]
    assert (await first.get("/a")).status == 200
    assert (await second.get("/b")).status == 200
    refused = await third.get("/c")
    assert_503(refused, "server at --limit-concurrency (2 connections)")
    assert await wait_eof(third.reader) == b""  # the refused connection is closed
    line = await access.wait_for(r'"GET /c HTTP/1\.1" 503')
    assert line.startswith("127.0.0.1:")
    # Connections that hold a place keep being served: the limit is on connections.
    assert (await first.get("/a2")).status == 200
    await first.close()
    fourth = await clients(running)
    assert (await fourth.get("/d")).status == 200
    assert running.core.limits.active == 2


async def test_a_connection_that_sent_nothing_holds_no_place(serve: Any, clients: Any) -> None:
    running = await serve(app, limit_concurrency=1)
    silent = await clients(running)  # connected, no request yet
    talking = await clients(running)
    assert (await talking.get()).status == 200
    # Now the place is taken: the silent one's first request is over the limit.
    assert_503(await silent.get(), "server at --limit-concurrency (1 connections)")


async def test_websockets_count_and_an_upgrade_over_the_limit_gets_503(
    serve: Any, access: AccessLines
) -> None:
    running = await serve(app, limit_concurrency=1, access_log=True)
    async with connect(f"{running.ws}/one") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        # The open WebSocket holds the only place: another upgrade and a plain request alike
        # are refused before any app code runs.
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{running.ws}/two"):
                pass
        response = info.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.body == b"server at --limit-concurrency (1 connections)\n"
        line = await access.wait_for(r'"GET /two" WebSocket rejected 503')
        assert line.startswith("127.0.0.1:")
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"{running.http}/plain")
        assert reply.status_code == 503
        assert reply.text == "server at --limit-concurrency (1 connections)\n"
        assert reply.headers["retry-after"] == "1"
    # The session is over (the client waited for the server's close): the place is free.
    async with connect(f"{running.ws}/three") as ws:
        await ws.send("again")
        assert await ws.recv() == "again"


async def test_http_keep_alive_connections_fill_the_limit_for_upgrades(
    serve: Any, clients: Any
) -> None:
    running = await serve(app, limit_concurrency=1)
    holder = await clients(running)
    assert (await holder.get()).status == 200
    with pytest.raises(InvalidStatus) as info:
        async with connect(running.ws):
            pass
    assert info.value.response.status_code == 503
    await holder.close()
    async with connect(running.ws) as ws:
        await ws.send("in")
        assert await ws.recv() == "in"


# -- --limit-per-client --------------------------------------------------------------------------


async def test_per_client_budgets_follow_the_trusted_proxy_headers(
    serve: Any, clients: Any, access: AccessLines
) -> None:
    # The peer is 127.0.0.1, in the default --forwarded-allow-ips: its headers are believed.
    running = await serve(app, limit_per_client=1, access_log=True)
    alice, bob, alice_again = [await clients(running) for _ in range(3)]
    reply = await alice.get("/", forwarded_for="203.0.113.1")
    assert (reply.status, reply.body) == (200, b"hello 203.0.113.1")
    reply = await bob.get("/", forwarded_for="203.0.113.2")
    assert (reply.status, reply.body) == (200, b"hello 203.0.113.2")
    refused = await alice_again.get("/again", forwarded_for="203.0.113.1")
    assert_503(refused, "client 203.0.113.1 at --limit-per-client (1 connections)")
    # The access line names the client the proxy named, not the proxy.
    await access.wait_for(r'^203\.0\.113\.1:0 - "GET /again HTTP/1\.1" 503')
    # A WebSocket of bob's is over his budget too.
    with pytest.raises(InvalidStatus) as info:
        async with connect(running.ws, additional_headers={"X-Forwarded-For": "203.0.113.2"}):
            pass
    assert info.value.response.status_code == 503
    assert info.value.response.body == b"client 203.0.113.2 at --limit-per-client (1 connections)\n"
    # A third client has a budget of its own; alice's freed place lets her in again.
    async with connect(running.ws, additional_headers={"X-Forwarded-For": "203.0.113.3"}) as ws:
        await ws.send("carol")
        assert await ws.recv() == "carol"
    await alice.close()
    reply = await (await clients(running)).get("/", forwarded_for="203.0.113.1")
    assert reply.status == 200


async def test_per_client_counts_the_peer_when_the_proxy_is_not_trusted(
    serve: Any, clients: Any
) -> None:
    running = await serve(app, limit_per_client=1, forwarded_allow_ips="192.0.2.1")
    first, second = await clients(running), await clients(running)
    reply = await first.get("/", forwarded_for="203.0.113.1")
    assert (reply.status, reply.body) == (200, b"hello 127.0.0.1")  # the header was ignored
    refused = await second.get("/", forwarded_for="203.0.113.2")
    assert_503(refused, "client 127.0.0.1 at --limit-per-client (1 connections)")


async def test_a_keep_alive_connection_counts_for_the_client_of_its_latest_request(
    serve: Any, clients: Any
) -> None:
    """A proxy pooling its upstream connections sends requests of several clients over one:
    the connection's place moves to the client of each new request."""
    running = await serve(app, limit_per_client=1)
    pooled = await clients(running)
    assert (await pooled.get("/", forwarded_for="203.0.113.1")).status == 200
    assert (await pooled.get("/", forwarded_for="203.0.113.2")).status == 200
    assert running.core.limits.clients == {"203.0.113.2": 1}
    # 203.0.113.1's place was given back; 203.0.113.2's is taken by the pooled connection.
    assert (await (await clients(running)).get("/", forwarded_for="203.0.113.1")).status == 200
    other = await clients(running)
    refused = await other.get("/", forwarded_for="203.0.113.2")
    assert_503(refused, "client 203.0.113.2 at --limit-per-client (1 connections)")


async def test_both_limits_together(serve: Any, clients: Any) -> None:
    running = await serve(app, limit_concurrency=2, limit_per_client=1)
    one, two, three = [await clients(running) for _ in range(3)]
    assert (await one.get("/", forwarded_for="198.51.100.1")).status == 200
    refused = await two.get("/", forwarded_for="198.51.100.1")
    assert_503(refused, "client 198.51.100.1 at --limit-per-client (1 connections)")
    assert (await three.get("/", forwarded_for="198.51.100.2")).status == 200
    fourth = await clients(running)
    refused = await fourth.get("/", forwarded_for="198.51.100.3")
    assert_503(refused, "server at --limit-concurrency (2 connections)")
    await one.close()
    await three.close()
    assert running.core.limits.active == 0 and running.core.limits.clients == {}


# -- the flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--limit-concurrency", "--limit-per-client"])
def test_flags_parse_and_refuse_bad_values(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, config = cli.parse_command_line(["myapp:app", flag, "50"], {})
    assert getattr(config, flag[2:].replace("-", "_")) == 50
    _, config = cli.parse_command_line(["myapp:app"], {})
    assert getattr(config, flag[2:].replace("-", "_")) is None
    for bad in ("0", "-3", "many"):
        with pytest.raises(SystemExit) as info:
            cli.parse_command_line(["myapp:app", flag, bad], {})
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert (
            f"asgiws: error: {flag}: invalid value '{bad}' (expected a whole number, at least 1"
            in err
        )
        assert "Traceback" not in err


# -- the counting, without sockets ---------------------------------------------------------------


def test_counting() -> None:
    limits = ConnectionLimits(2, 1)
    a, b, c = limits.opened(), limits.opened(), limits.opened()
    assert limits.open == 3 and limits.active == 0
    assert a.admit(("10.0.0.1", 1)) is None
    assert a.admit(("10.0.0.1", 1)) is None  # the next request of the same client
    assert b.admit(("10.0.0.1", 2)) == "client 10.0.0.1 at --limit-per-client (1 connections)"
    assert b.admit(None) is None  # no address: not counted per client
    assert c.admit(("10.0.0.2", 1)) == "server at --limit-concurrency (2 connections)"
    assert (limits.active, limits.clients) == (2, {"10.0.0.1": 1})
    limits.closed(a)
    assert (limits.open, limits.active, limits.clients) == (2, 1, {})
    assert c.admit(("10.0.0.1", 3)) is None
    limits.closed(b)
    limits.closed(c)
    assert (limits.open, limits.active, limits.clients) == (0, 0, {})
