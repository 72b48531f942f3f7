"""End-to-end WebSocket sessions through a real asgiws server: messages both ways, closing
handshakes, app mistakes, limits, keep-alive pings, back-pressure."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from apps import TIMEOUT, Recorder, quick_serve, read_frame, wait_eof, ws_echo
from websockets.exceptions import ConnectionClosed
from wire import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, close_frame, ws_request
from wire import client_frame as frame
from ws_helpers import connect, next_data_frame, raw_open, recording_echo, wait_until

from asgiws.protocol import ClientDisconnected


@pytest.fixture
def serve(serve: Any) -> Any:
    return quick_serve(serve)


async def test_text_and_bytes_both_ways(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    async with connect(running.ws) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xffbin")
        assert await ws.recv() == b"\x00\xffbin"
        await ws.send("")
        assert await ws.recv() == ""
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.receive") == [
        {"type": "websocket.receive", "text": "héllo"},
        {"type": "websocket.receive", "bytes": b"\x00\xffbin"},
        {"type": "websocket.receive", "text": ""},
    ]


async def test_fragmented_message_arrives_whole_and_pings_are_answered(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running)
    try:
        writer.write(frame(OP_TEXT, "hel", fin=False))
        writer.write(frame(OP_CONT, "lo ", fin=False))
        writer.write(frame(OP_PING, b"ping-payload"))  # a control frame between fragments
        writer.write(frame(OP_CONT, "wörld", fin=True))
        pong = await read_frame(reader)
        echo = await read_frame(reader)
        writer.write(frame(OP_PING, b""))
        empty_pong = await read_frame(reader)
    finally:
        writer.close()
    assert (pong.opcode, pong.payload) == (OP_PONG, b"ping-payload")
    assert (echo.opcode, echo.fin, echo.payload) == (OP_TEXT, True, "hello wörld".encode())
    assert (empty_pong.opcode, empty_pong.payload) == (OP_PONG, b"")
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.receive") == [
        {"type": "websocket.receive", "text": "hello wörld"}
    ]
    # Pings never reach the app.
    assert {m["type"] for m in recorder.messages} == {
        "websocket.connect",
        "websocket.receive",
        "websocket.disconnect",
    }


@pytest.mark.parametrize(
    ("compression", "library"), [(None, "auto"), ("deflate", "zlib"), ("deflate", "zlib-ng")]
)
async def test_large_messages_both_ways(serve: Any, compression: str | None, library: str) -> None:
    running = await serve(ws_echo, ws_deflate_zlib=library)
    big_bytes = bytes(range(256)) * 4096  # 1 MiB
    big_text = "ünïcode-" * (1024 * 1024 // 10)
    async with connect(running.ws, max_size=None, compression=compression) as ws:
        await ws.send(big_bytes)
        assert await ws.recv() == big_bytes
        await ws.send(big_text)
        assert await ws.recv() == big_text


@pytest.mark.parametrize("library", ["zlib", "zlib-ng"])
async def test_short_messages_go_out_uncompressed_under_deflate(serve: Any, library: str) -> None:
    """--ws-deflate-min-size (1024 by default): with permessage-deflate negotiated, a short
    message goes out as it is, RSV1 clear, and a long one compressed, RSV1 set; either
    --ws-deflate-zlib library's output inflates with CPython's zlib."""
    import zlib

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "a" * 1023})
        await send({"type": "websocket.send", "text": "b" * 1024})
        await send({"type": "websocket.close", "code": 1000})

    running = await serve(app, ws_deflate_zlib=library)
    offer = [("Sec-WebSocket-Extensions", "permessage-deflate")]
    reader, writer = await raw_open(running, ws_request(extra=offer))
    try:
        frames = []
        for _ in range(3):
            first, second = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            frames.append((first, await reader.readexactly(length)))
    finally:
        writer.close()
    assert frames[0] == (0x81, b"a" * 1023)  # FIN, text, RSV1 clear: as it is
    first, payload = frames[1]
    assert first == 0xC1 and len(payload) < 100  # FIN, RSV1, text: compressed
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(payload + b"\x00\x00\xff\xff") == b"b" * 1024
    assert frames[2] == (0x88, b"\x03\xe8")


async def test_app_close_code_and_reason_reach_client(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})

    running = await serve(app)
    async with connect(running.ws) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye now")


async def test_client_close_code_and_reason_reach_app(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    async with connect(running.ws) as ws:
        await ws.close(4002, "client leaves")
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect") == [
        {"type": "websocket.disconnect", "code": 4002, "reason": "client leaves"}
    ]


async def test_close_frame_without_code_gives_1005(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running)
    try:
        writer.write(close_frame(None))
        answer = await next_data_frame(reader)
        assert answer.opcode == OP_CLOSE
        assert answer.payload == b""  # RFC 6455 §5.5.1: echo; no code in, no code out
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect")[0]["code"] == 1005


async def test_tcp_dropped_without_close_gives_1006(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    _reader, writer = await raw_open(running)
    await recorder.wait_for(lambda: "accepted" in recorder.notes)
    writer.transport.abort()
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect") == [
        {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    ]


async def test_exactly_one_disconnect_then_receive_raises(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.message(await receive())
        try:
            recorder.message(await asyncio.wait_for(receive(), TIMEOUT))
        except BaseException as exc:
            recorder.error(exc)
        recorder.note("done")

    running = await serve(app)
    async with connect(running.ws) as ws:
        await ws.close(1000)
    await recorder.wait_for(lambda: "done" in recorder.notes)
    assert recorder.messages == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]
    (error,) = recorder.errors
    assert not isinstance(error, TimeoutError | asyncio.CancelledError), repr(error)


async def test_server_completes_closing_handshake(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        recorder.message(await receive())

    running = await serve(app)
    reader, writer = await raw_open(running)
    try:
        close = await next_data_frame(reader)
        assert close.opcode == OP_CLOSE
        assert (close.close_code, close.close_reason) == (4000, "done")
        writer.write(close_frame(4000))
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await recorder.wait_for(lambda: recorder.messages)
    assert recorder.messages[0]["type"] == "websocket.disconnect"
    assert recorder.messages[0]["code"] == 4000


async def test_client_initiated_close_is_answered_then_eof(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()))
    reader, writer = await raw_open(running)
    try:
        writer.write(close_frame(1000, "bye"))
        answer = await next_data_frame(reader)
        assert answer.opcode == OP_CLOSE
        assert answer.close_code == 1000
        assert await wait_eof(reader) == b""
    finally:
        writer.close()


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 5000])
async def test_app_close_with_unsendable_code_refused(serve: Any, code: int) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": code})
        except RuntimeError as exc:
            recorder.error(exc)
        await send({"type": "websocket.close", "code": 1000})

    running = await serve(app)
    async with connect(running.ws) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000
    (error,) = recorder.errors
    assert str(code) in str(error)


async def test_exception_after_accept_closes_1011(serve: Any, caplog: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise ValueError("after accept")

    caplog.set_level(logging.CRITICAL, logger="asgiws")
    running = await serve(app)
    async with connect(running.ws) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011


async def test_return_after_accept_closes_1000(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "last words"})

    running = await serve(app)
    async with connect(running.ws) as ws:
        assert await ws.recv() == "last words"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000


async def test_send_after_close_raises_client_disconnected_and_is_not_logged(
    serve: Any, caplog: Any
) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.message(await receive())
        try:
            await send({"type": "websocket.send", "text": "anyone there?"})
        except BaseException as exc:
            recorder.error(exc)
            raise
        finally:
            recorder.note("done")

    caplog.set_level(logging.DEBUG, logger="asgiws")
    running = await serve(app)
    async with connect(running.ws) as ws:
        await ws.close(1000)
    await recorder.wait_for(lambda: "done" in recorder.notes)
    (error,) = recorder.errors
    assert isinstance(error, ClientDisconnected)
    assert isinstance(error, OSError)
    # The server's bookkeeping runs after the app task ends: wait for the connection to go.
    await wait_until(lambda: not running.core.tasks and not running.core.connections)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_out_of_order_app_messages_raise_runtime_error(serve: Any) -> None:
    recorder = Recorder()

    async def attempt(send: Any, message: dict[str, Any]) -> None:
        try:
            await send(message)
        except RuntimeError as exc:
            recorder.note((message["type"], str(exc)))
        else:
            recorder.note((message["type"], None))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await attempt(send, {"type": "websocket.send", "text": "too early"})
        await send({"type": "websocket.accept"})
        await attempt(send, {"type": "websocket.accept"})
        await attempt(send, {"type": "websocket.send", "text": "a", "bytes": b"b"})
        await attempt(send, {"type": "websocket.sned", "text": "typo"})
        await attempt(send, {"type": "http.response.start", "status": 200})
        await send({"type": "websocket.send", "text": "still open"})
        await send({"type": "websocket.close"})

    running = await serve(app)
    async with connect(running.ws) as ws:
        assert await ws.recv() == "still open"
    expected_states = ["WS_CONNECTING", "OPEN", "OPEN", "OPEN", "OPEN"]
    assert len(recorder.notes) == len(expected_states)
    for (kind, text), state in zip(recorder.notes, expected_states, strict=True):
        assert text is not None, f"{kind} was accepted"
        assert kind in text, text
        assert state in text, text


async def test_message_over_max_size_closes_1009(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder), ws_max_size=1024)
    async with connect(running.ws, compression=None) as ws:
        await ws.send(b"x" * 1024)  # exactly the limit is fine
        assert await ws.recv() == b"x" * 1024
        await ws.send(b"x" * 2000)
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect")[0]["code"] == 1009


async def test_fragmented_message_over_max_size_closes_1009(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()), ws_max_size=1024)
    reader, writer = await raw_open(running)
    try:
        for index in range(3):
            opcode = OP_BINARY if index == 0 else OP_CONT
            writer.write(frame(opcode, b"y" * 500, fin=False))
        close = await next_data_frame(reader)
    finally:
        writer.close()
    assert close.opcode == OP_CLOSE
    assert close.close_code == 1009


async def test_unanswered_pings_close_1011(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder), ws_ping_interval=0.2, ws_ping_timeout=0.2)
    reader, writer = await raw_open(running)
    pings = 0
    try:
        for _ in range(10):
            got = await read_frame(reader, timeout=3.0)
            if got.opcode == OP_PING:
                pings += 1
                continue
            break
        assert got.opcode == OP_CLOSE
        assert got.close_code == 1011
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    assert pings >= 1
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect")[0]["code"] == 1011


async def test_answered_pings_keep_connection_open(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()), ws_ping_interval=0.2, ws_ping_timeout=0.2)
    reader, writer = await raw_open(running)
    try:
        payloads = set()
        for _ in range(4):
            ping = await read_frame(reader, timeout=3.0)
            assert ping.opcode == OP_PING
            payloads.add(ping.payload)
            writer.write(frame(OP_PONG, ping.payload))
        assert len(payloads) == 4  # a fresh payload each time
        writer.write(frame(OP_TEXT, "still here"))
        echo = await next_data_frame(reader)
        assert (echo.opcode, echo.payload) == (OP_TEXT, b"still here")
    finally:
        writer.close()


async def test_first_pings_of_connections_opened_together_are_spread_over_the_interval(
    serve: Any,
) -> None:
    # The server's wheel spreads each connection's first ping over the interval (the golden-
    # ratio offsets of 8 connections: 0.03 to 0.45 s of 0.5 s); armed with the plain interval
    # they would all come in the same 50-ms tick.
    interval = 0.5
    running = await serve(recording_echo(Recorder()), ws_ping_interval=interval,
                          ws_ping_timeout=5.0)  # fmt: skip
    loop = asyncio.get_running_loop()
    opened = [await raw_open(running) for _ in range(8)]
    began = loop.time()

    async def first_ping(reader: Any) -> float:
        got = await read_frame(reader, timeout=3.0)
        assert got.opcode == OP_PING
        return loop.time() - began

    try:
        times = await asyncio.gather(*(first_ping(reader) for reader, _ in opened))
    finally:
        for _, writer in opened:
            writer.close()
    assert max(times) - min(times) >= 0.25, times
    # Never later than the interval (plus the wheel's tick and the scheduling of a busy CI).
    assert max(times) <= interval + 0.05 + 0.5, times


async def test_websockets_client_keeps_connection_alive_across_pings(
    serve: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="websockets.client")
    running = await serve(ws_echo, ws_ping_interval=0.1, ws_ping_timeout=0.2)

    def pings_seen() -> int:
        return sum(1 for r in caplog.records if r.getMessage().startswith("< PING"))

    async with connect(running.ws, ping_interval=None) as ws:
        await ws.send("first")
        assert await ws.recv() == "first"
        # The client library answers the server's pings by itself; let several go by.
        await wait_until(lambda: pings_seen() >= 4)
        await ws.send("later")
        assert await ws.recv() == "later"


async def test_app_that_does_not_read_pauses_reading(serve: Any) -> None:
    recorder = Recorder()
    release = asyncio.Event()
    count = 400
    size = 64 * 1024  # 400 x 64 KiB = 25 MiB, far beyond the socket buffers

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.note("accepted")
        await release.wait()
        received = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            received += 1
            if received == count:
                await send({"type": "websocket.send", "text": "got all"})
        recorder.note(received)

    running = await serve(app, max_queue=4)
    reader, writer = await raw_open(running)
    try:
        await recorder.wait_for(lambda: "accepted" in recorder.notes)
        proto = next(iter(running.core.connections))
        payload = b"z" * size
        one = frame(OP_BINARY, payload, mask=b"\x00\x00\x00\x00")
        for _ in range(count):
            writer.write(one)
        # The server stops reading once the app is behind ...
        await wait_until(lambda: not proto.transport.is_reading())
        # ... so most of what the client wrote is still on the client's side, instead of in
        # the server's memory.
        assert writer.transport.get_write_buffer_size() > count * size // 2
        release.set()
        await asyncio.wait_for(writer.drain(), 20)
        answer = await next_data_frame(reader)
        assert (answer.opcode, answer.payload) == (OP_TEXT, b"got all")
        writer.write(close_frame(1000))
        await next_data_frame(reader)
    finally:
        writer.close()
    await recorder.wait_for(lambda: count in recorder.notes)


async def test_many_sequential_connections(serve: Any) -> None:
    running = await serve(recording_echo(Recorder()))
    for i in range(20):
        async with connect(running.ws) as ws:
            await ws.send(str(i))
            assert await ws.recv() == str(i)


async def test_messages_before_close_are_answered_before_the_close(serve: Any) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running)
    try:
        writer.write(frame(OP_TEXT, "one") + frame(OP_TEXT, "two") + close_frame(4005, "end"))
        got = [await next_data_frame(reader) for _ in range(3)]
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    assert [(f.opcode, f.payload) for f in got[:2]] == [(OP_TEXT, b"one"), (OP_TEXT, b"two")]
    assert got[2].opcode == OP_CLOSE and got[2].close_code == 4005
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect") == [
        {"type": "websocket.disconnect", "code": 4005, "reason": "end"}
    ]


@pytest.mark.parametrize(
    "ahead",
    [
        pytest.param(b"", id="close-alone"),
        # The app waits in receive() when a message and the Close come in one read: it is
        # woken for the message and reads no further.
        pytest.param(b"last", id="behind-a-message"),
    ],
)
async def test_peer_close_answered_when_app_does_not_read(serve: Any, ahead: bytes) -> None:
    release = asyncio.Event()
    recorder = Recorder()
    before = [{"type": "websocket.receive", "text": ahead.decode()}] if ahead else []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.note("accepted")
        for _ in before:
            recorder.message(await receive())
        await release.wait()
        recorder.message(await receive())

    running = await serve(app, ws_close_timeout=0.3)
    reader, writer = await raw_open(running)
    try:
        await recorder.wait_for(lambda: "accepted" in recorder.notes)
        writer.write((frame(OP_TEXT, ahead) if ahead else b"") + close_frame(1000))
        answer = await next_data_frame(reader)  # at --ws-close-timeout
        assert (answer.opcode, answer.payload) == (OP_CLOSE, b"\x03\xe8")
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    assert recorder.messages == before
    release.set()
    await recorder.wait_for(lambda: len(recorder.messages) == len(before) + 1)
    assert recorder.messages[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"\x81\x02hi", 1002, id="unmasked"),
        pytest.param(frame(OP_TEXT, b"\xff\xfe"), 1007, id="invalid-utf8"),
        pytest.param(frame(OP_PING, b"p" * 126), 1002, id="ping-too-long"),
        pytest.param(frame(0x3, b"x"), 1002, id="reserved-opcode"),
        pytest.param(frame(OP_CONT, b"x"), 1002, id="continuation-first"),
        pytest.param(frame(OP_CLOSE, b"\x03\xe8\xff"), 1007, id="close-reason-invalid-utf8"),
        pytest.param(frame(OP_CLOSE, b"\x03"), 1002, id="close-one-byte"),
    ],
)
async def test_protocol_violations_fail_the_connection(serve: Any, data: bytes, code: int) -> None:
    recorder = Recorder()
    running = await serve(recording_echo(recorder))
    reader, writer = await raw_open(running)
    try:
        writer.write(data)
        close = await next_data_frame(reader)
        assert close.opcode == OP_CLOSE
        assert close.close_code == code
        assert await wait_eof(reader) == b""
    finally:
        writer.close()
    await recorder.wait_for(lambda: recorder.of_type("websocket.disconnect"))
    assert recorder.of_type("websocket.disconnect")[0]["code"] == code
    assert recorder.of_type("websocket.receive") == []


async def test_send_back_pressure_on_slow_websocket_reader(serve: Any) -> None:
    recorder = Recorder()
    count = 40
    payload = b"w" * (1024 * 1024)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(count):
            await send({"type": "websocket.send", "bytes": payload})
            recorder.note(i)
        await receive()

    running = await serve(app)
    reader, writer = await raw_open(running)
    try:
        # The app only yields to the loop when send() waits for the transport to drain (or
        # when it is done): so when the first note shows, the app has stalled or finished.
        await recorder.wait_for(lambda: recorder.notes)
        assert len(recorder.notes) < count
        proto = next(iter(running.core.connections))
        assert proto.transport.get_write_buffer_size() < 8 * len(payload)
        for _ in range(count):
            got = await read_frame(reader, timeout=30)
            assert got.opcode == OP_BINARY and len(got.payload) == len(payload)
        writer.write(close_frame(1000))
        await next_data_frame(reader)
    finally:
        writer.close()


@pytest.mark.parametrize("how", ["close", "return"])
async def test_app_closing_with_a_full_inbox_finishes_the_handshake_at_once(
    serve: Any, how: str
) -> None:
    recorder = Recorder()
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.note("accepted")
        await release.wait()  # reads nothing while the client sends
        if how == "close":
            await send({"type": "websocket.close", "code": 4001})

    # The close timeout is far beyond the test's: only reading the client's Close ends it.
    running = await serve(app, max_queue=16, ws_close_timeout=60)
    reader, writer = await raw_open(running)
    try:
        await recorder.wait_for(lambda: "accepted" in recorder.notes)
        for i in range(40):
            writer.write(frame(OP_TEXT, b"message %d" % i))
        await writer.drain()
        proto = next(iter(running.core.connections))
        await wait_until(lambda: not proto.transport.is_reading())  # the inbox is full
        release.set()
        close = await next_data_frame(reader)
        assert close.opcode == OP_CLOSE
        assert close.close_code == (4001 if how == "close" else 1000)
        writer.write(frame(OP_TEXT, b"after our close") + close_frame(close.close_code))
        assert await wait_eof(reader) == b""  # within TIMEOUT, not at ws_close_timeout
    finally:
        writer.close()
