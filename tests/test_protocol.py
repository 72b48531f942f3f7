"""The sans-IO connection core, byte for byte: no sockets, no event loop, no sleeps."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wire import RFC_ACCEPT, RFC_KEY, client_frame

from asgiws import http11
from asgiws.config import Config
from asgiws.fasthead import parse_head
from asgiws.http import HTTPConnection
from asgiws.protocol import ClientDisconnected, SansIOConnection, ServerHeaders
from asgiws.states import HTTPState, Timer, WSState
from asgiws.websocket import WebSocketConnection

UPGRADE = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: " + RFC_KEY + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-accept: " + RFC_ACCEPT + b"\r\nserver: asgiws\r\n\r\n"
)


def make(**options: Any) -> HTTPConnection:
    return HTTPConnection(
        Config(**options),
        client=("127.0.0.1", 50000),
        server=("127.0.0.1", 8000),
        server_headers=ServerHeaders([(b"server", b"asgiws")]),
    )


def sent(conn: SansIOConnection) -> bytes:
    """Everything the connection has to write, joined."""
    return b"".join(conn.data_to_send())


def upgraded(conn: HTTPConnection) -> WebSocketConnection:
    """The WebSocketConnection the HTTP side handed over to at the 101."""
    assert conn.state is HTTPState.UPGRADED
    ws = conn.upgraded
    assert ws is not None
    assert sent(conn) == b""  # the 101 went with it
    return ws


def open_ws(**options: Any) -> WebSocketConnection:
    conn = make(**options)
    conn.receive_data(UPGRADE)
    assert conn.next_scope() is not None
    assert conn.next_message() == {"type": "websocket.connect"}
    conn.send({"type": "websocket.accept"})
    ws = upgraded(conn)
    assert sent(ws) == SWITCHING
    return ws


# The sans-IO core: the top of the package but for the process layer (cli, config, importer,
# logs, runtime, demo) and the asyncio layer below asgiws/asyncio/.
CORE = (
    "_abnf", "asgi", "deflate", "events", "fasthead", "frame_checks", "frames", "handshake",
    "headers", "http", "http11", "limits", "masking", "origins", "protocol", "proxy", "reassembly",
    "request", "responder", "responses", "states", "types", "websocket", "writer",
)  # fmt: skip


def test_the_core_does_not_import_asyncio() -> None:
    modules = ", ".join(f"asgiws.{name}" for name in CORE)
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if 'asyncio' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_core_is_every_top_level_module_but_the_process_layer() -> None:
    import asgiws

    top = {p.stem for p in Path(asgiws.__file__).parent.glob("*.py")}
    process = {
        "__init__", "__main__", "_version", "cli", "cli_parser", "config", "demo", "embed",
        "importer", "logs", "options", "reload", "supervisor", "uvicorn_flags", "worker_process",
        "workers",
    } | {"accesslog", "envfile", "logconfig"} | {"metrics", "supervisor_probes"}  # fmt: skip
    assert top - process - {"runtime"} == set(CORE)


# -- HTTP -------------------------------------------------------------------------------------


def test_http_get_scope_and_exact_response() -> None:
    conn = make(root_path="/api")
    assert conn.timer is Timer.HEAD
    conn.receive_data(b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    scope = conn.next_scope()
    assert scope is not None
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert (scope["method"], scope["path"], scope["raw_path"]) == ("GET", "/api/a b", b"/a%20b")
    assert (scope["query_string"], scope["root_path"]) == (b"x=1", "/api")
    assert scope["headers"] == [(b"host", b"h"), (b"x-a", b"1"), (b"x-a", b"2")]
    assert scope["client"] == ("127.0.0.1", 50000)
    assert scope["server"] == ("127.0.0.1", 8000)
    assert conn.timer is Timer.NONE  # type: ignore[comparison-overlap]  # changed by the call
    assert conn.next_message() == {"type": "http.request", "body": b"", "more_body": False}
    conn.send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"y")]})
    conn.send({"type": "http.response.body", "body": b"hello"})
    assert sent(conn) == (
        b"HTTP/1.1 200 OK\r\nx: y\r\nserver: asgiws\r\ncontent-length: 5\r\n\r\nhello"
    )
    # After the response, receive() gives http.disconnect at once.
    assert conn.next_message() == {"type": "http.disconnect"}
    assert conn.app_finished(None).problem is None
    assert conn.state is HTTPState.IDLE
    assert conn.timer is Timer.KEEP_ALIVE


def test_pipelined_requests_are_served_in_order() -> None:
    conn = make()
    conn.receive_data(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
    first = conn.next_scope()
    assert first is not None and first["path"] == "/1"
    assert conn.next_scope() is None  # one cycle at a time
    assert not conn.reading_paused()  # reading goes on, to notice a client that leaves
    conn.receive_data(b"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n" * 1000)
    assert conn.reading_paused()  # but no more than a request head's worth waits in h11
    conn.send({"type": "http.response.start", "status": 204})
    conn.send({"type": "http.response.body"})
    assert sent(conn) == b"HTTP/1.1 204 No Content\r\nserver: asgiws\r\n\r\n"
    conn.app_finished(None)
    second = conn.next_scope()
    assert second is not None and second["path"] == "/2"


def test_chunked_body_streams_with_more_body() -> None:
    conn = make()
    conn.receive_data(
        b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    )
    assert conn.next_scope() is not None
    assert conn.next_message() == {"type": "http.request", "body": b"abc", "more_body": True}
    assert conn.next_message() is None
    conn.receive_data(b"2\r\nde\r\n0\r\n\r\n")
    assert conn.next_message() == {"type": "http.request", "body": b"de", "more_body": False}


def test_100_continue_only_when_the_app_reads() -> None:
    conn = make()
    conn.receive_data(
        b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    )
    assert conn.next_scope() is not None
    assert sent(conn) == b""
    assert conn.next_message() is None
    assert sent(conn) == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.receive_data(b"abc")
    assert conn.next_message() == {"type": "http.request", "body": b"abc", "more_body": False}


def test_head_response_has_no_body() -> None:
    conn = make()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_scope()
    conn.send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    conn.send({"type": "http.response.body", "body": b"hello"})
    assert sent(conn) == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nserver: asgiws\r\n\r\n"


def test_streamed_response_without_length_is_chunked() -> None:
    conn = make()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_scope()
    conn.send({"type": "http.response.start", "status": 200})
    conn.send({"type": "http.response.body", "body": b"ab", "more_body": True})
    conn.send({"type": "http.response.body", "body": b"c"})
    assert sent(conn) == (
        b"HTTP/1.1 200 OK\r\nserver: asgiws\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"
    )


def test_malformed_request_is_400_with_reason_then_closed() -> None:
    conn = make()
    conn.receive_data(b"GARBAGE\r\n\r\n")
    assert conn.state is HTTPState.CLOSED
    assert conn.next_scope() is None
    body = b"malformed request: illegal request line: b'GARBAGE'\n"
    assert sent(conn) == (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\nserver: asgiws\r\n\r\n" % len(body) + body
    )


def test_too_many_headers_is_431() -> None:
    conn = make(max_header_count=3)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n")
    out = sent(conn)
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert out.endswith(b"too many header fields: 4 (the limit is 3)\n")
    assert conn.next_scope() is None and conn.state is HTTPState.CLOSED


def test_head_too_large_is_431() -> None:
    conn = make(h11_max_incomplete_event_size=1024)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nx: " + b"a" * 2000)
    out = sent(conn)
    assert out.startswith(b"HTTP/1.1 431 ")
    assert out.endswith(b"request head too large (the limit is 1024 bytes)\n")


def test_app_error_before_response_is_500_and_after_is_close() -> None:
    conn = make()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_scope()
    conn.app_finished(ValueError("boom"))
    assert sent(conn).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert conn.state is HTTPState.CLOSED

    conn = make()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_scope()
    conn.send({"type": "http.response.start", "status": 200})
    conn.send({"type": "http.response.body", "body": b"x", "more_body": True})
    conn.app_finished(ValueError("boom"))
    assert conn.state is HTTPState.CLOSED


def test_http_send_after_client_left_is_a_no_op() -> None:
    conn = make()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_scope()
    conn.connection_lost()
    assert conn.next_message() == {"type": "http.request", "body": b"", "more_body": False}
    assert conn.next_message() == {"type": "http.disconnect"}
    conn.send({"type": "http.response.start", "status": 200})
    assert sent(conn) == b""


def test_http_out_of_order_messages_name_type_and_state() -> None:
    conn = make()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_scope()
    with pytest.raises(RuntimeError, match=r"before 'http.response.start' in state HTTP"):
        conn.send({"type": "http.response.body", "body": b""})
    with pytest.raises(RuntimeError, match=r"cannot send 'websocket.accept' in state HTTP"):
        conn.send({"type": "websocket.accept"})
    with pytest.raises(RuntimeError, match=r"cannot send 'nonsense' in state HTTP"):
        conn.send({"type": "nonsense"})


# -- WebSocket handshake --------------------------------------------------------------------


def test_upgrade_scope() -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    scope = conn.next_scope()
    assert scope is not None
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert (scope["scheme"], scope["path"], scope["query_string"]) == ("ws", "/chat", b"room=1")
    assert scope["subprotocols"] == ["chat", "superchat"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope


def test_accept_with_subprotocol_and_headers_exact_bytes() -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    conn.next_message()
    conn.send({"type": "websocket.accept", "subprotocol": "superchat", "headers": [(b"x-a", b"1")]})
    assert conn.status == 101
    ws = upgraded(conn)
    assert sent(ws) == (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + RFC_ACCEPT + b"\r\nsec-websocket-protocol: superchat\r\n"
        b"x-a: 1\r\nserver: asgiws\r\n\r\n"
    )
    assert ws.state is WSState.OPEN


def test_frame_right_behind_the_request_is_not_lost() -> None:
    conn = make()
    conn.receive_data(UPGRADE + client_frame(0x1, b"Hello"))
    conn.next_scope()
    assert conn.next_message() == {"type": "websocket.connect"}
    conn.send({"type": "websocket.accept"})
    assert upgraded(conn).next_message() == {"type": "websocket.receive", "text": "Hello"}


def test_unoffered_subprotocol_is_500() -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    with pytest.raises(RuntimeError, match=r"subprotocol 'other' .* not offered by the client"):
        conn.send({"type": "websocket.accept", "subprotocol": "other"})
    assert sent(conn).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_reserved_header_in_accept_is_refused() -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    with pytest.raises(RuntimeError, match="sec-websocket-protocol"):
        conn.send({"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"x")]})


def test_rejections_carry_status_headers_and_reason() -> None:
    conn = make()
    conn.receive_data(UPGRADE.replace(b"Version: 13", b"Version: 8"))
    assert conn.next_scope() is None  # the app never sees it
    body = b"unsupported Sec-WebSocket-Version: 8\n"
    assert sent(conn) == (
        b"HTTP/1.1 426 Upgrade Required\r\nsec-websocket-version: 13\r\nupgrade: websocket\r\n"
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\nserver: asgiws\r\n\r\n" % len(body) + body
    )
    conn = make()
    conn.receive_data(UPGRADE.replace(b"GET", b"PUT"))
    out = sent(conn)
    assert out.startswith(b"HTTP/1.1 405 Method Not Allowed\r\nallow: GET\r\n")


def test_close_before_accept_is_403() -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    conn.send({"type": "websocket.close"})
    assert sent(conn).startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert conn.next_message() == {"type": "websocket.connect"}
    assert conn.next_message() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    with pytest.raises(ClientDisconnected):
        conn.send({"type": "websocket.send", "text": "x"})


@pytest.mark.parametrize("error", [None, ValueError("boom")])
def test_app_ending_before_accept_is_500(error: BaseException | None) -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    conn.app_finished(error)
    assert sent(conn).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_denial_response() -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    conn.send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x", b"1")]})
    conn.send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    conn.send({"type": "websocket.http.response.body", "body": b"entry"})
    assert sent(conn) == (
        b"HTTP/1.1 401 Unauthorized\r\nx: 1\r\nconnection: close\r\nserver: asgiws\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nno \r\n5\r\nentry\r\n0\r\n\r\n"
    )
    assert conn.state is HTTPState.CLOSED


# -- WebSocket session ------------------------------------------------------------------------


def test_messages_both_ways_exact_frames() -> None:
    conn = open_ws()
    conn.receive_data(client_frame(0x1, b"Hel", fin=False) + client_frame(0x0, b"lo"))
    assert conn.next_message() == {"type": "websocket.receive", "text": "Hello"}
    conn.receive_data(client_frame(0x2, b"\x00\xff"))
    assert conn.next_message() == {"type": "websocket.receive", "bytes": b"\x00\xff"}
    conn.send({"type": "websocket.send", "text": "Hello"})
    conn.send({"type": "websocket.send", "bytes": b"\x01"})
    assert sent(conn) == b"\x81\x05Hello\x82\x01\x01"


def test_ping_is_answered_and_not_shown_to_the_app() -> None:
    conn = open_ws()
    conn.receive_data(client_frame(0x9, b"Hello"))
    assert sent(conn) == b"\x8a\x05Hello"
    assert conn.next_message() is None


def test_peer_close_waits_for_the_app_to_read_what_came_before() -> None:
    conn = open_ws()
    conn.receive_data(client_frame(0x1, b"a") + client_frame(0x8, struct.pack("!H", 4001) + b"x"))
    assert conn.timer is Timer.CLOSE
    assert conn.next_message() == {"type": "websocket.receive", "text": "a"}
    conn.send({"type": "websocket.send", "text": "a"})
    assert conn.next_message() == {"type": "websocket.disconnect", "code": 4001, "reason": "x"}
    # The answer to "a" goes out before the echoed Close.
    assert sent(conn) == b"\x81\x01a" + b"\x88\x03\x0f\xa1x"
    assert conn.state is WSState.CLOSED
    with pytest.raises(ClientDisconnected):
        conn.send({"type": "websocket.send", "text": "late"})
    with pytest.raises(ClientDisconnected, match=r"after 'websocket\.disconnect'"):
        conn.next_message()


def test_close_without_code_is_1005_and_echoed_empty() -> None:
    conn = open_ws()
    conn.receive_data(client_frame(0x8, b""))
    assert conn.next_message() == {"type": "websocket.disconnect", "code": 1005, "reason": ""}
    assert sent(conn) == b"\x88\x00"


def test_tcp_lost_is_1006() -> None:
    conn = open_ws()
    conn.connection_lost()
    assert conn.next_message() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


def test_protocol_error_after_a_message_closes_1002_after_the_answer() -> None:
    conn = open_ws()
    conn.receive_data(client_frame(0x1, b"ok") + client_frame(0x1, b"bad", mask=None))
    assert conn.next_message() == {"type": "websocket.receive", "text": "ok"}
    conn.send({"type": "websocket.send", "text": "ok"})
    message = conn.next_message()
    assert message is not None and message["code"] == 1002
    out = sent(conn)
    assert out.startswith(b"\x81\x02ok\x88")
    assert out[4:6] != b"\x00"  # a Close with a payload
    assert struct.unpack("!H", out[4 + 2 : 4 + 4])[0] == 1002
    assert conn.state is WSState.CLOSED


def test_app_close_then_peer_answer() -> None:
    conn = open_ws()
    conn.send({"type": "websocket.close", "code": 4000, "reason": "bye"})
    assert sent(conn) == b"\x88\x05\x0f\xa0bye"
    assert conn.state is WSState.LOCAL_CLOSING and conn.timer is Timer.CLOSE
    conn.receive_data(client_frame(0x8, struct.pack("!H", 4000)))
    assert conn.next_message() == {"type": "websocket.disconnect", "code": 4000, "reason": ""}
    assert conn.state is WSState.CLOSED  # type: ignore[comparison-overlap]  # set by the calls


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 5000])
def test_unsendable_close_codes_are_refused(code: int) -> None:
    conn = open_ws()
    with pytest.raises(RuntimeError, match=f"invalid close code {code}"):
        conn.send({"type": "websocket.close", "code": code})


def test_app_return_and_error_after_accept() -> None:
    conn = open_ws()
    conn.app_finished(None)
    assert sent(conn) == b"\x88\x02\x03\xe8"  # 1000
    conn = open_ws()
    conn.app_finished(ValueError("boom"))
    assert sent(conn) == b"\x88\x02\x03\xf3"  # 1011


def test_ws_out_of_order_messages() -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    with pytest.raises(RuntimeError, match=r"cannot send 'websocket\.send' in state WS_CONNECTING"):
        conn.send({"type": "websocket.send", "text": "x"})
    conn.send({"type": "websocket.accept"})
    ws = upgraded(conn)
    with pytest.raises(RuntimeError, match=r"cannot send 'websocket\.accept' in state OPEN"):
        ws.send({"type": "websocket.accept"})
    with pytest.raises(RuntimeError, match="both 'text' and 'bytes'"):
        ws.send({"type": "websocket.send", "text": "x", "bytes": b"x"})


def test_message_over_max_size_closes_1009() -> None:
    conn = open_ws(ws_max_size=10)
    conn.receive_data(client_frame(0x2, b"x" * 11))
    message = conn.next_message()
    assert message is not None and message["code"] == 1009
    out = sent(conn)
    assert out[:2] == b"\x88" + bytes([len(out) - 2]) and out[2:4] == b"\x03\xf1"


def test_keepalive_ping_then_pong_timeout_closes_1011() -> None:
    conn = open_ws(ws_ping_interval=1.0, ws_ping_timeout=1.0)
    # The first ping has a timer of its own (the I/O layer spreads it over the interval).
    assert conn.timer is Timer.FIRST_PING
    conn.timeout(Timer.PING)  # not the armed timer: nothing happens
    assert sent(conn) == b""
    conn.timeout(Timer.FIRST_PING)
    assert sent(conn) == b"\x89\x04\x00\x00\x00\x01"
    assert conn.timer is Timer.PONG  # type: ignore[comparison-overlap]  # set by timeout()
    # Any frame counts as alive.
    conn.receive_data(client_frame(0x1, b"x"))
    assert conn.timer is Timer.PING
    conn.timeout(Timer.PING)
    sent(conn)
    conn.timeout(Timer.PONG)
    assert sent(conn) == b"\x88\x18\x03\xf3keepalive ping timeout"
    assert conn.state is WSState.CLOSED


def test_shutdown_closes_with_the_configured_code() -> None:
    conn = open_ws(ws_shutdown_code=1012)
    conn.shutdown(1012)
    assert sent(conn) == b"\x88\x02\x03\xf4"
    assert conn.next_message() == {"type": "websocket.disconnect", "code": 1012, "reason": ""}


def test_reading_pauses_when_the_app_is_behind() -> None:
    conn = open_ws(max_queue=2)
    conn.receive_data(client_frame(0x1, b"1"))
    assert not conn.reading_paused()
    conn.receive_data(client_frame(0x1, b"2"))
    assert conn.reading_paused()
    conn.next_message()
    assert not conn.reading_paused()


@pytest.mark.parametrize(
    ("name", "value"),
    [(b"x-a", b"1\r\nx-evil: 1"), (b"x a", b"1"), (b"x-a", b"\x00"), (b"", b"1")],
)
def test_accept_headers_cannot_break_the_response(name: bytes, value: bytes) -> None:
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    with pytest.raises(RuntimeError, match=r"invalid (header name|value for header)"):
        conn.send({"type": "websocket.accept", "headers": [(name, value)]})
    assert sent(conn) == b""
    assert conn.state is HTTPState.WS_CONNECTING


def test_upgrade_request_with_an_unfinished_body_cannot_be_accepted() -> None:
    conn = make()
    conn.receive_data(UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\nab"))
    conn.next_scope()
    with pytest.raises(RuntimeError, match="carried a body"):
        conn.send({"type": "websocket.accept"})
    assert sent(conn).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_no_empty_buffer_reaches_the_output() -> None:
    # An empty buffer among several makes CPython 3.12/3.13's writelines() hang before close.
    conn = make()
    conn.receive_data(UPGRADE.replace(b"Version: 13", b"Version: 8"))
    output = conn.data_to_send()
    assert output and all(output)
    conn = make()
    conn.receive_data(UPGRADE)
    conn.next_scope()
    conn.send({"type": "websocket.http.response.start", "status": 403, "headers": []})
    conn.send({"type": "websocket.http.response.body", "body": b""})
    output = conn.data_to_send()
    assert output and all(output)


# -- the fast path for upgrade heads, against h11 -----------------------------------------------
# A whole upgrade head in one read is taken without h11 (asgiws.fasthead); the same head split
# over two reads goes through h11. Every conversation below must give the same bytes, messages
# and states both ways, including the ones where h11 is brought in late to send a refusal.


def _observe(conn: SansIOConnection, log: list[Any]) -> None:
    status = conn.status if isinstance(conn, HTTPConnection) else "after the 101"
    log.append((sent(conn), conn.state, conn.timer, conn.reading_paused(), status))


def _run(conn: SansIOConnection, steps: list[Any], log: list[Any]) -> None:
    for step in steps:
        if conn.upgraded is not None:
            conn = conn.upgraded  # as the I/O layer swaps
        try:
            if isinstance(step, bytes):
                conn.receive_data(step)
            elif isinstance(step, dict):
                conn.send(step)
            elif step == "scope":
                scope = conn.next_scope()
                log.append(None if scope is None else {k: scope[k] for k in ("type", "path")})
            elif step == "message":
                log.append(conn.next_message())
            elif step == "finished":
                log.append(conn.app_finished(None))
            elif step == "failed":
                log.append(conn.app_finished(ValueError("boom")))
            elif step == "lost":
                conn.connection_lost()
            elif step == "shutdown":
                conn.shutdown(1001)
            else:
                raise AssertionError(step)
        except (RuntimeError, ClientDisconnected) as exc:
            log.append(f"{type(exc).__name__}: {exc}")
        _observe(conn, log)


ACCEPT = {"type": "websocket.accept"}
BAD_KEY_UPGRADE = UPGRADE.replace(RFC_KEY, b"c2hvcnQ=")
EARLY = client_frame(0x1, b"early")

CONVERSATIONS: dict[str, tuple[bytes, list[Any]]] = {
    "accept, echo, peer close": (
        UPGRADE,
        [
            "scope",
            "message",
            ACCEPT,
            client_frame(0x1, b"hi"),
            "message",
            {"type": "websocket.send", "text": "hi"},
            client_frame(0x8, b"\x03\xe8"),
            "message",
            "finished",
            "lost",
            "message",
        ],
    ),
    "subprotocol and app headers": (
        UPGRADE,
        [
            "scope",
            "message",
            {"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-a", b"1")]},
        ],
    ),
    "unoffered subprotocol": (
        UPGRADE,
        [
            "scope",
            "message",
            {"type": "websocket.accept", "subprotocol": "nope"},
            "failed",
        ],
    ),
    "close before accept: 403": (
        UPGRADE,
        [
            "scope",
            "message",
            {"type": "websocket.close"},
            "finished",
            "message",
        ],
    ),
    "denial response": (
        UPGRADE,
        [
            "scope",
            "message",
            {"type": "websocket.http.response.start", "status": 401, "headers": [(b"a", b"b")]},
            {"type": "websocket.http.response.body", "body": b"no", "more_body": True},
            {"type": "websocket.http.response.body", "body": b"!"},
            "finished",
        ],
    ),
    "app error before accept: 500": (UPGRADE, ["scope", "message", "failed", "message"]),
    "app returns before accept: 500": (UPGRADE, ["scope", "message", "finished"]),
    "bad key: 400": (BAD_KEY_UPGRADE, ["scope", "message"]),
    "frame in the same read as the head": (
        UPGRADE + EARLY,
        [
            "scope",
            "message",
            ACCEPT,
            "message",
        ],
    ),
    "frame in a later read, before the accept": (
        UPGRADE,
        [
            "scope",
            "message",
            EARLY,
            EARLY,
            ACCEPT,
            "message",
            "message",
        ],
    ),
    "frame before a denial": (
        UPGRADE,
        [
            "scope",
            "message",
            EARLY,
            {"type": "websocket.close"},
            "finished",
        ],
    ),
    "early bytes past the limit pause reading": (
        UPGRADE,
        [
            "scope",
            "message",
            EARLY * 5000,
            ACCEPT,
            "message",
        ],
    ),
    "client leaves before the accept": (UPGRADE, ["scope", "message", b"", "message"]),
    "connection lost before the accept": (
        UPGRADE,
        [
            "scope",
            "message",
            "lost",
            "message",
            ACCEPT,
        ],
    ),
    "shutdown before the accept": (
        UPGRADE,
        [
            "scope",
            "message",
            "shutdown",
            ACCEPT,
            "message",
            client_frame(0x8, b"\x03\xe9"),
            "message",
        ],
    ),
}


@pytest.fixture
def fast_heads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What asgiws.fasthead.parse_head returned to the connection, call by call."""
    results: list[Any] = []

    def recording(data: bytes, max_size: int) -> Any:
        result = parse_head(data, max_size)
        results.append(result)
        return result

    monkeypatch.setattr(http11, "parse_head", recording)
    return results


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_fast_path_and_h11_give_the_same_conversation(name: str, fast_heads: list[Any]) -> None:
    head, steps = CONVERSATIONS[name]
    logs = []
    for split in (None, 20):
        conn = make()
        log: list[Any] = []
        fast_heads.clear()
        if split is None:
            conn.receive_data(head)
            assert fast_heads and fast_heads[0] is not None  # the fast path took it
        else:
            conn.receive_data(head[:split])
            conn.receive_data(head[split:])
            assert not any(fast_heads)  # h11 took it
        _observe(conn, log)
        _run(conn, steps, log)
        logs.append(log)
    fast, slow = logs
    assert fast == slow


@pytest.mark.parametrize(
    "head",
    [
        UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"),
        UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 1\r\n\r\nx"),
        UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: h2c\r\nX: websocket"),  # plain GET
        UPGRADE.replace(b"\r\nHost: example.com", b""),
        UPGRADE.replace(b"\r\n", b"\n"),
    ],
)
def test_heads_the_fast_path_leaves_to_h11(head: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[object] = []
    original = http11.Wire.fast_head

    def recording(self: http11.Wire, data: bytes) -> object:
        taken.append(original(self, data))
        return taken[-1]

    monkeypatch.setattr(http11.Wire, "fast_head", recording)
    conn = make()
    conn.receive_data(head)
    assert taken == [None]  # h11 parses it
    assert conn.next_scope() is not None or conn.status is not None


# -- after our Close: read on for the peer's, drop its data (RFC 6455 §5.5.1, §7.1.1) -----------


@pytest.mark.parametrize("how", ["close", "return"])
def test_app_closing_with_a_full_inbox_still_reads_the_peer_close(how: str) -> None:
    conn = open_ws(max_queue=16)
    for i in range(16):
        conn.receive_data(client_frame(0x1, b"m%d" % i))
    assert conn.reading_paused()  # the app reads nothing
    if how == "close":
        conn.send({"type": "websocket.close", "code": 1000})
    else:
        conn.app_finished(None)
    assert sent(conn) == b"\x88\x02\x03\xe8"
    assert conn.state is WSState.LOCAL_CLOSING
    assert not conn.reading_paused()  # the peer's Close must be read
    conn.receive_data(client_frame(0x1, b"late") + client_frame(0x8, b"\x03\xe8"))
    assert conn.state is WSState.CLOSED  # type: ignore[comparison-overlap]  # at once
    assert conn.timer is Timer.NONE
    assert sent(conn) == b""  # nothing after our Close
    messages = [conn.next_message() for _ in range(17)]
    assert [m["text"] for m in messages[:16] if m] == [f"m{i}" for i in range(16)]
    assert messages[16] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}


def test_nothing_reaches_the_app_after_its_disconnect_on_shutdown() -> None:
    conn = open_ws()
    conn.shutdown(1001)
    assert sent(conn) == b"\x88\x02\x03\xe9"
    for data in (client_frame(0x1, b"in flight"), client_frame(0x2, b"x" * 200, fin=False)):
        conn.receive_data(data)
    assert conn.next_message() == {"type": "websocket.disconnect", "code": 1001, "reason": ""}
    with pytest.raises(ClientDisconnected):
        conn.next_message()
    conn.receive_data(client_frame(0x0, b"y") + client_frame(0x8, b"\x03\xe9"))
    assert conn.state is WSState.CLOSED
    with pytest.raises(ClientDisconnected):
        conn.next_message()
    assert sent(conn) == b""


def test_shutdown_answers_a_request_on_its_way_and_closes_idle_keep_alive() -> None:
    """A rolling restart (--workers) must not drop a request already sent on a connection just
    accepted; a connection idle between requests is closed (RFC 9112 §9.6)."""
    fresh = make()
    fresh.shutdown(1012)
    assert fresh.state is HTTPState.IDLE and fresh.timer is Timer.HEAD  # the head may come
    fresh.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert fresh.next_scope() is not None
    fresh.send({"type": "http.response.start", "status": 204})
    fresh.send({"type": "http.response.body"})
    assert sent(fresh) == b"HTTP/1.1 204 No Content\r\nserver: asgiws\r\nconnection: close\r\n\r\n"
    fresh.app_finished(None)
    assert fresh.state is HTTPState.CLOSED  # type: ignore[comparison-overlap]  # changed by the call

    idle = make()
    idle.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    idle.next_scope()
    idle.send({"type": "http.response.start", "status": 204})
    idle.send({"type": "http.response.body"})
    idle.app_finished(None)
    assert idle.state is HTTPState.IDLE and idle.timer is Timer.KEEP_ALIVE
    idle.shutdown(1012)
    assert idle.state is HTTPState.CLOSED


@pytest.mark.parametrize("status", [600, 700, 999, 99, 1000])
def test_status_outside_100_to_599_is_refused(status: int) -> None:
    conn = make()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_scope()
    with pytest.raises(RuntimeError, match=rf"invalid status in 'http.response.start': {status}"):
        conn.send({"type": "http.response.start", "status": status})
    conn.app_finished(RuntimeError("the app's send() raised"))
    assert sent(conn).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    ws = make()
    ws.receive_data(UPGRADE)
    ws.next_scope()
    with pytest.raises(RuntimeError, match=r"invalid status in 'websocket.http.response.start'"):
        ws.send({"type": "websocket.http.response.start", "status": status})


def test_status_599_is_sent() -> None:
    conn = make()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_scope()
    conn.send({"type": "http.response.start", "status": 599})
    conn.send({"type": "http.response.body"})
    assert sent(conn).startswith(b"HTTP/1.1 599 \r\n")
