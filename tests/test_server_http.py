"""End-to-end HTTP/1.1 through a real asgiws server: real sockets, httpx and raw bytes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from apps import (
    TIMEOUT,
    Recorder,
    http_hello,
    parse_response,
    quick_serve,
    read_body,
    read_head,
    read_response,
    respond,
    wait_eof,
)
from wire import http_request


@pytest.fixture
def serve(serve: Any) -> Any:
    return quick_serve(serve)


async def open_raw(running: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(running.host, running.port)


# -- keep-alive and pipelining -------------------------------------------------------------------


async def test_keep_alive_two_requests_on_one_connection(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await respond(send, 200, b"%d" % scope["client"][1])

    running = await serve(app)
    async with httpx.AsyncClient(base_url=running.http) as client:
        first = await client.get("/one")
        second = await client.get("/two")
    assert first.status_code == second.status_code == 200
    # The same client port both times: one TCP connection.
    assert first.text == second.text


async def test_keep_alive_timeout_counts_from_the_last_response(serve: Any) -> None:
    # The keep-alive timer is armed lazily (asyncio/connection.py, _arm_timer): the tick armed
    # after the first response still comes at its time, and must then arm the rest of the
    # timeout counted from the second response instead of closing.
    running = await serve(http_hello, timeout_keep_alive=0.4)
    loop = asyncio.get_running_loop()
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request("GET", "/a"))
        assert (await read_response(reader)).body == b"/a"
        await asyncio.sleep(0.25)  # most of the timeout, on the timer of the first response
        writer.write(http_request("GET", "/b"))
        assert (await read_response(reader)).body == b"/b"
        answered = loop.time()
        assert await wait_eof(reader) == b""
        idle = loop.time() - answered
    finally:
        writer.close()
    # Closed one timeout after the second response (the wheel fires up to 50 ms late), not at
    # the first response's deadline, 0.15 s after the second.
    assert 0.4 - 0.01 <= idle < 0.4 + 1.0, idle


async def test_keep_alive_raw_two_requests(serve: Any) -> None:
    running = await serve(http_hello)
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request("GET", "/a"))
        assert (await read_response(reader)).body == b"/a"
        writer.write(http_request("GET", "/b"))
        assert (await read_response(reader)).body == b"/b"
    finally:
        writer.close()


async def test_pipelined_requests_answered_in_order(serve: Any) -> None:
    running = await serve(http_hello)
    reader, writer = await open_raw(running)
    try:
        writer.write(
            http_request("GET", "/first")
            + http_request("POST", "/second", [("Host", "t"), ("Content-Length", "3")], b"abc")
            + http_request("GET", "/third")
        )
        bodies = [(await read_response(reader)).body for _ in range(3)]
        assert bodies == [b"/first", b"/second", b"/third"]
    finally:
        writer.close()


# -- request bodies ------------------------------------------------------------------------------


def body_recorder(recorder: Recorder) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        recorder.scope(scope)
        while True:
            message = recorder.message(await receive())
            if not message.get("more_body", False):
                break
        body = b"".join(m["body"] for m in recorder.of_type("http.request"))
        await respond(send, 200, body)

    return app


async def test_content_length_body_streamed_in_pieces(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(body_recorder(recorder))
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request("POST", "/", [("Host", "t"), ("Content-Length", "11")]))
        writer.write(b"hello")
        await recorder.wait_for(lambda: recorder.of_type("http.request"))
        writer.write(b" world")
        response = await read_response(reader)
    finally:
        writer.close()
    assert response.body == b"hello world"
    requests = recorder.of_type("http.request")
    assert len(requests) >= 2
    assert requests[0] == {"type": "http.request", "body": b"hello", "more_body": True}
    assert requests[-1]["more_body"] is False
    assert all(m["more_body"] for m in requests[:-1])


async def test_chunked_body_streamed_in_pieces(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(body_recorder(recorder))
    reader, writer = await open_raw(running)
    chunks = [b"first-", b"second-", b"third"]
    try:
        writer.write(http_request("POST", "/", [("Host", "t"), ("Transfer-Encoding", "chunked")]))
        for index, chunk in enumerate(chunks, 1):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

            def reached(count: int = index) -> bool:
                return len(recorder.of_type("http.request")) >= count

            await recorder.wait_for(reached)
        writer.write(b"0\r\n\r\n")
        response = await read_response(reader)
    finally:
        writer.close()
    requests = recorder.of_type("http.request")
    assert len(requests) >= 3
    assert b"".join(m["body"] for m in requests) == b"".join(chunks)
    assert [m["body"] for m in requests[:3]] == chunks
    assert requests[-1]["more_body"] is False
    assert all(m["more_body"] for m in requests[:-1])
    assert response.body == b"".join(chunks)


async def test_httpx_streamed_request_body(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(body_recorder(recorder))

    async def parts() -> Any:
        for i in range(5):
            yield b"part%d;" % i

    async with httpx.AsyncClient(base_url=running.http) as client:
        response = await client.post("/", content=parts())
    assert response.content == b"part0;part1;part2;part3;part4;"


# -- responses -----------------------------------------------------------------------------------


async def test_streamed_response_uses_chunked_encoding(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    running = await serve(app)
    response = await parse_response(
        await running.raw(http_request("GET", "/", [("Host", "t"), ("Connection", "close")]))
    )
    assert response.status == 200
    assert response.chunked
    assert response.header(b"content-length") is None
    assert response.body == b"one,two,three"
    async with httpx.AsyncClient(base_url=running.http) as client:
        assert (await client.get("/")).content == b"one,two,three"


async def test_single_body_response_gets_content_length(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await respond(send, 200, b"exactly this")

    running = await serve(app)
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request())
        response = await read_response(reader)
    finally:
        writer.close()
    assert response.header(b"content-length") == b"12"
    assert response.header(b"transfer-encoding") is None
    assert response.body == b"exactly this"


async def test_head_gets_headers_and_no_body(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        body = b"a body that a HEAD response must not carry"
        await respond(send, 200, body, [(b"content-length", b"%d" % len(body))])

    running = await serve(app)
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request("HEAD", "/"))
        head = await read_response(reader, head_request=True)
        assert head.status == 200
        assert head.header(b"content-length") == b"42"
        # If body bytes had been sent, they would be read here as the next status line.
        writer.write(http_request("GET", "/"))
        following = await read_response(reader)
    finally:
        writer.close()
    assert following.status == 200
    assert following.body == b"a body that a HEAD response must not carry"


# -- Expect: 100-continue ------------------------------------------------------------------------


async def test_100_continue_sent_when_app_reads(serve: Any) -> None:
    go = asyncio.Event()
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        recorder.scope(scope)
        await go.wait()
        body = await read_body(receive)
        await respond(send, 200, b"got " + body)

    running = await serve(app)
    reader, writer = await open_raw(running)
    try:
        writer.write(
            http_request(
                "POST", "/", [("Host", "t"), ("Content-Length", "4"), ("Expect", "100-continue")]
            )
        )
        await recorder.wait_for(lambda: recorder.scopes)
        go.set()
        interim = await read_head(reader)
        assert interim.status == 100
        writer.write(b"data")
        response = await read_response(reader)
    finally:
        writer.close()
    assert response.status == 200
    assert response.body == b"got data"


async def test_100_continue_not_sent_when_app_answers_without_reading(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await respond(send, 401, b"no", [(b"content-length", b"2")])

    running = await serve(app)
    reader, writer = await open_raw(running)
    try:
        writer.write(
            http_request(
                "POST", "/", [("Host", "t"), ("Content-Length", "4"), ("Expect", "100-continue")]
            )
        )
        first = await read_head(reader)
        assert first.status == 401
        assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == b"no"
        # The body was never sent nor read: the server cannot reuse the connection.
        rest = await wait_eof(reader)
    finally:
        writer.close()
    assert b"100 Continue" not in rest


# -- the client goes away ------------------------------------------------------------------------


async def test_disconnect_reaches_app_waiting_in_receive(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        recorder.note("waiting")
        recorder.message(await receive())
        try:
            await respond(send, 200, b"too late")
        except BaseException as exc:  # pragma: no cover - the test fails on it
            recorder.error(exc)
            raise
        recorder.note("sent")

    running = await serve(app)
    _reader, writer = await open_raw(running)
    writer.write(http_request())
    await recorder.wait_for(lambda: "waiting" in recorder.notes)
    writer.close()
    await recorder.wait_for(lambda: "sent" in recorder.notes or recorder.errors, timeout=2.0)
    assert recorder.messages == [{"type": "http.disconnect"}]
    assert recorder.errors == []


async def test_send_after_client_left_is_a_no_op(serve: Any, caplog: Any) -> None:
    recorder = Recorder()
    left = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        recorder.note("started")
        await left.wait()
        # Wait until the server has noticed: receive() returns http.disconnect.
        recorder.message(await receive())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await send({"type": "http.response.body", "body": b"y"})
        except BaseException as exc:
            recorder.error(exc)
            raise
        recorder.note("done")

    caplog.set_level(logging.ERROR, logger="asgiws")
    running = await serve(app)
    _reader, writer = await open_raw(running)
    writer.write(http_request())
    await recorder.wait_for(lambda: "started" in recorder.notes)
    writer.close()
    left.set()
    await recorder.wait_for(lambda: "done" in recorder.notes or recorder.errors, timeout=2.0)
    assert recorder.errors == []
    assert recorder.messages == [{"type": "http.disconnect"}]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- scope ---------------------------------------------------------------------------------------


def scope_app(recorder: Recorder) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            scope["state"]["db"] = "connected"
            scope["state"]["items"] = []
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        recorder.scope(scope)
        await read_body(receive)
        if "state" in scope:
            scope["state"]["db"] = "changed by a request"
        await respond(send, 200, b"ok")

    return app


async def test_http_scope(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder))
    reader, writer = await open_raw(running)
    try:
        writer.write(
            http_request(
                "PUT",
                "/caf%C3%A9/a%2Fb%20c?x=1&y=%20",
                [("Host", "example.org"), ("X-Dup", "1"), ("X-Other", "A"), ("X-Dup", "2")],
            )
        )
        assert (await read_response(reader)).status == 200
        local = writer.get_extra_info("sockname")
    finally:
        writer.close()
    (scope,) = recorder.scopes
    assert scope["type"] == "http"
    assert scope["asgi"]["spec_version"] == "2.3"
    assert scope["asgi"].get("version", "3.0") == "3.0"
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "PUT"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/café/a/b c"
    assert scope["raw_path"] == b"/caf%C3%A9/a%2Fb%20c"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["headers"] == [
        (b"host", b"example.org"),
        (b"x-dup", b"1"),
        (b"x-other", b"A"),
        (b"x-dup", b"2"),
    ]
    assert scope["client"] == ("127.0.0.1", local[1])
    assert scope["server"] == ("127.0.0.1", running.port)
    assert all(isinstance(p, int) for p in (scope["client"][1], scope["server"][1]))
    assert "state" not in scope  # lifespan off: no state to share


async def test_http_scope_http_1_0(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder))
    response = await parse_response(await running.raw(http_request("GET", "/", version="1.0")))
    assert response.status == 200
    assert recorder.scopes[0]["http_version"] == "1.0"


async def test_root_path_prefixes_path(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder), root_path="/api")
    async with httpx.AsyncClient(base_url=running.http) as client:
        assert (await client.get("/items/1")).status_code == 200
    (scope,) = recorder.scopes
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items/1"


async def test_state_is_a_copy_of_lifespan_state(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder), lifespan="on")
    async with httpx.AsyncClient(base_url=running.http) as client:
        assert (await client.get("/one")).status_code == 200
        assert (await client.get("/two")).status_code == 200
    first, second = recorder.scopes
    # The first request changed its copy; the second starts from the lifespan state again.
    assert first["state"]["db"] == "changed by a request"
    assert second["state"]["db"] == "changed by a request"
    assert running.core.lifespan.state["db"] == "connected"
    assert first["state"] is not second["state"]
    # A shallow copy, as the ASGI spec asks: shared objects stay shared.
    assert first["state"]["items"] is running.core.lifespan.state["items"]


# -- errors --------------------------------------------------------------------------------------


def assert_plain_error(response: Any, status: int) -> str:
    assert response.status == status
    assert response.header(
        b"content-type",
    ).startswith(b"text/plain")
    text = str(response.text)
    assert text.endswith("\n")
    assert text.count("\n") == 1, text  # one line
    assert text.strip()
    return text.strip()


async def test_malformed_request_line_gets_400_and_close(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder))
    data = await running.raw(b"NOT A REQUEST LINE AT ALL\r\n\r\n")  # reads until EOF
    response = await parse_response(data)
    reason = assert_plain_error(response, 400)
    assert "malformed" in reason.lower() or "invalid" in reason.lower()
    assert response.header(b"connection") == b"close"
    assert recorder.scopes == []


WEBSOCKET_FIELDS = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@pytest.mark.parametrize(
    ("target", "fields"),
    [
        (b"example.com:443", b""),  # the authority form
        (b"/1", b""),  # what a fuzzer sent
        # A fuzzer's too: the fast path took a CONNECT that asked for a WebSocket and
        # answered 405 (the handshake's GET rule), h11 in two reads 501.
        (b"example.com:443", WEBSOCKET_FIELDS),
    ],
)
async def test_connect_gets_501_and_no_app_sees_it(
    serve: Any, target: bytes, fields: bytes
) -> None:
    # RFC 9110 §9.3.6: CONNECT asks for a tunnel; an ASGI app cannot serve one (h11 would
    # switch protocols at a 2xx and refuse the body after it).
    recorder = Recorder()
    running = await serve(scope_app(recorder))
    head = b"CONNECT " + target + b" HTTP/1.1\r\nHost: example.com:443\r\n" + fields + b"\r\n"
    data = await running.raw(head + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # until EOF
    response = await parse_response(data)
    reason = assert_plain_error(response, 501)
    assert reason == "CONNECT is not supported: an ASGI server opens no tunnels"
    assert response.header(b"connection") == b"close"
    assert data.count(b"HTTP/1.1 ") == 1  # nothing behind it is served
    assert recorder.scopes == []


async def test_request_head_too_large_streamed_gets_431(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder), h11_max_incomplete_event_size=1024)
    reader, writer = await open_raw(running)
    try:
        # An unfinished head that keeps growing past the limit.
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")
        for _ in range(4):
            writer.write(b"X-Filler: " + b"a" * 500 + b"\r\n")
        response = await read_response(reader)
        await wait_eof(reader)
    finally:
        writer.close()
    reason = assert_plain_error(response, 431)
    assert "1024" in reason
    assert recorder.scopes == []


async def test_request_head_too_large_in_one_write_gets_431(serve: Any) -> None:
    # The option's help: "Largest HTTP request head (request line and headers); larger gets
    # 431." — also when the whole oversized head arrives in one read.
    recorder = Recorder()
    running = await serve(scope_app(recorder), h11_max_incomplete_event_size=1024)
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request("GET", "/", [("Host", "t"), ("X-Filler", "a" * 4000)]))
        response = await read_response(reader)
    finally:
        writer.close()
    assert response.status == 431
    assert recorder.scopes == []


async def test_too_many_header_fields_gets_431(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder), max_header_count=5)
    headers = [("Host", "t")] + [(f"X-H{i}", "v") for i in range(10)]
    response = await parse_response(await running.raw(http_request("GET", "/", headers)))
    reason = assert_plain_error(response, 431)
    assert "11" in reason and "5" in reason
    assert recorder.scopes == []


async def test_app_exception_before_response_gets_500_and_server_goes_on(
    serve: Any, caplog: Any
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        if scope["path"] == "/boom":
            raise ValueError("boom")
        await respond(send, 200, b"fine")

    caplog.set_level(logging.ERROR, logger="asgiws")
    running = await serve(app)
    async with httpx.AsyncClient(base_url=running.http) as client:
        response = await client.get("/boom")
        assert response.status_code == 500
        assert response.headers["content-type"].startswith("text/plain")
        assert (await client.get("/ok")).text == "fine"
    async with httpx.AsyncClient(base_url=running.http) as client:
        assert (await client.get("/ok")).text == "fine"
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)


async def test_app_exception_after_response_started_closes_connection(
    serve: Any, caplog: Any
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom after start")

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    data = await running.raw(http_request())  # returns on EOF: the server closed
    response = await parse_response(data)
    assert response.status == 200
    assert response.chunked
    assert not response.complete  # no terminating chunk
    assert response.body == b"partial"
    async with httpx.AsyncClient(base_url=running.http) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/")


async def test_app_exception_after_content_length_response_started(serve: Any, caplog: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
        )
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise ValueError("boom after start")

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    response = await parse_response(await running.raw(http_request()))
    assert not response.complete
    assert response.body == b"12345"


async def test_app_returning_without_response_gets_500(serve: Any, caplog: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    async with httpx.AsyncClient(base_url=running.http) as client:
        response = await client.get("/")
    assert response.status_code == 500


# -- timeouts ------------------------------------------------------------------------------------


async def test_idle_keep_alive_connection_is_closed(serve: Any) -> None:
    running = await serve(http_hello, timeout_keep_alive=0.2)
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request())
        assert (await read_response(reader)).status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await wait_eof(reader, timeout=3.0) == b""
        assert loop.time() - started >= 0.1
    finally:
        writer.close()


async def test_half_sent_request_head_is_disconnected(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder), timeout_handshake=0.3)
    reader, writer = await open_raw(running)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        await wait_eof(reader, timeout=3.0)
    finally:
        writer.close()
    assert recorder.scopes == []


async def test_keep_alive_then_half_sent_head_is_disconnected(serve: Any) -> None:
    # After a first request, a second head that never ends is cut off by timeout_handshake,
    # not kept alive forever by the keep-alive timer being reset.
    running = await serve(http_hello, timeout_handshake=0.3, timeout_keep_alive=60)
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request())
        assert (await read_response(reader)).status == 200
        writer.write(b"GET /second HTTP/1.1\r\nHo")
        await wait_eof(reader, timeout=3.0)
    finally:
        writer.close()


# -- more connection handling --------------------------------------------------------------------


async def test_http_1_0_request_gets_response_then_close(serve: Any) -> None:
    running = await serve(http_hello)
    data = await running.raw(http_request("GET", "/old", version="1.0"))  # returns on EOF
    response = await parse_response(data)
    assert response.status == 200
    assert response.body == b"/old"


async def test_connection_close_request_is_honoured(serve: Any) -> None:
    running = await serve(http_hello)
    data = await running.raw(http_request("GET", "/", [("Host", "t"), ("Connection", "close")]))
    response = await parse_response(data)
    assert response.status == 200
    assert response.header(b"connection") == b"close"


async def test_streamed_response_to_http_1_0_is_close_delimited(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    running = await serve(app)
    response = await parse_response(await running.raw(http_request("GET", "/", version="1.0")))
    assert not response.chunked
    assert response.body == b"ab"


async def test_receive_after_response_complete_returns_disconnect(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await respond(send, 200, b"done")
        recorder.message(await asyncio.wait_for(receive(), TIMEOUT))

    running = await serve(app)
    async with httpx.AsyncClient(base_url=running.http) as client:
        assert (await client.get("/")).text == "done"
        await recorder.wait_for(lambda: recorder.messages)
        # The connection is still usable afterwards.
        assert (await client.get("/")).text == "done"
    assert recorder.messages[0] == {"type": "http.disconnect"}


async def test_client_leaving_during_body_upload_gives_disconnect(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = recorder.message(await receive())
            if message["type"] == "http.disconnect":
                return
            if message["type"] == "http.request" and not message.get("more_body"):
                break  # pragma: no cover - the body never completes in this test

    running = await serve(app)
    _reader, writer = await open_raw(running)
    writer.write(http_request("POST", "/", [("Host", "t"), ("Content-Length", "100")]) + b"0" * 10)
    await recorder.wait_for(lambda: recorder.of_type("http.request"))
    writer.close()
    await recorder.wait_for(lambda: recorder.of_type("http.disconnect"))
    assert recorder.messages[0] == {"type": "http.request", "body": b"0" * 10, "more_body": True}
    assert recorder.messages[-1] == {"type": "http.disconnect"}


async def test_slow_reader_pushes_back_on_app_send(serve: Any) -> None:
    recorder = Recorder()
    chunk = b"r" * (1024 * 1024)
    count = 32

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", b"%d" % (len(chunk) * count)),
                ],
            }
        )
        for i in range(count):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < count - 1})
            recorder.note(i)

    running = await serve(app)
    reader, writer = await asyncio.open_connection(running.host, running.port, limit=2**16)
    try:
        writer.write(http_request())
        # The client reads nothing, so send() must wait for the transport to drain. The app
        # only yields to the loop there (or when it is done): when the first note shows, it has
        # either stalled or sent everything into the server's memory.
        await recorder.wait_for(lambda: recorder.notes)
        assert len(recorder.notes) < count
        proto = next(iter(running.core.connections))
        assert proto.transport.get_write_buffer_size() < 8 * len(chunk)
        response = await read_response(reader, timeout=30)
    finally:
        writer.close()
    assert len(response.body) == len(chunk) * count
    assert recorder.notes[-1] == count - 1


async def wait_until(condition: Any, timeout: float = TIMEOUT) -> None:
    """Poll server state that has no event of its own, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_shutdown_closes_idle_keep_alive_connections(serve: Any) -> None:
    running = await serve(http_hello, timeout_keep_alive=60, timeout_graceful_shutdown=10)
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request())
        assert (await read_response(reader)).status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        running.stop()
        await asyncio.wait_for(running.wait_closed(), TIMEOUT)
        assert loop.time() - started < 2.0  # not the graceful timeout: nothing was in flight
        assert await wait_eof(reader) == b""
    finally:
        writer.close()


async def test_absolute_form_target(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(scope_app(recorder))
    reader, writer = await open_raw(running)
    try:
        writer.write(http_request("GET", "http://example.org/abs/path?q=1"))
        assert (await read_response(reader)).status == 200
    finally:
        writer.close()
    (scope,) = recorder.scopes
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == (
        "/abs/path",
        b"/abs/path",
        b"q=1",
    )


async def test_keep_alive_timer_does_not_cut_a_slow_app(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await asyncio.sleep(0.4)  # the app's own slow work, longer than timeout_keep_alive
        await respond(send, 200, b"slow but fine")

    running = await serve(app, timeout_keep_alive=0.1, timeout_handshake=0.1)
    async with httpx.AsyncClient(base_url=running.http) as client:
        assert (await client.get("/")).text == "slow but fine"


@pytest.mark.parametrize("status", [600, 700])
async def test_status_outside_100_to_599_gets_500_and_a_log_line(
    serve: Any, caplog: Any, status: int
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status})
        await send({"type": "http.response.body", "body": b"never"})

    caplog.set_level(logging.ERROR, logger="asgiws")
    running = await serve(app)
    response = await parse_response(await running.raw(http_request()))
    assert response.status == 500
    assert b"never" not in response.body
    assert any(
        f"invalid status in 'http.response.start': {status}" in str(record.exc_info[1])
        for record in caplog.records
        if record.exc_info
    )
