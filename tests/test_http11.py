"""asgiws.http11.Wire: the fast path with h11 behind it, byte for byte."""

from __future__ import annotations

import h11
import pytest
from wire import RFC_KEY, client_frame, http_request, ws_request

from asgiws.http11 import Wire, head_problem
from asgiws.responses import ResponseHead

UPGRADE = ws_request("/chat")


def test_a_whole_upgrade_head_is_taken_without_h11_and_handed_over_at_the_switch() -> None:
    wire = Wire(16384)
    early = client_frame(0x1, b"early")
    taken = wire.fast_head(UPGRADE + early)
    assert taken is not None
    head, fields, upgrading = taken
    assert upgrading and not wire.fast
    assert (head.method, head.target, head.size) == (b"GET", b"/chat", len(UPGRADE))
    assert fields[b"sec-websocket-key"] == [RFC_KEY]
    assert wire.hold(b"more")  # behind a head the app has not answered yet
    assert wire.parked == 4
    assert not wire.body_pending
    assert wire.switch() == early + b"more"
    assert wire.parked == 0


def test_h11_coming_in_late_is_given_the_head_and_the_bytes_behind_it() -> None:
    wire = Wire(16384)
    assert wire.fast_head(UPGRADE) is not None
    wire.hold(b"xy")
    conn = wire.h11()
    assert conn.their_state is h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]
    assert not wire.hold(b"z")  # h11 has the bytes from now on
    out = wire.send_refusal(403, b"Forbidden", [(b"content-length", b"0")], b"", method=b"GET")
    assert b"".join(out) == b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"
    assert wire.switch() == b"xy"


@pytest.mark.parametrize(
    "data",
    [
        UPGRADE[:-2],  # not whole
        http_request(headers=[("Host", "a"), ("Transfer-Encoding", "chunked")]),
        http_request(headers=[("Host", "a"), ("Expect", "100-continue"), ("Content-Length", "1")]),
        UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 1\r\n\r\nx"),
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        UPGRADE.replace(b"GET /chat ", b"CONNECT example.com:443 "),  # 501, not 405: h11's
    ],
)
def test_everything_else_is_left_to_h11(data: bytes) -> None:
    wire = Wire(16384)
    assert wire.fast_head(data) is None
    assert not wire.fast
    assert not wire.hold(b"x")


def test_a_plain_request_is_read_and_answered_without_h11() -> None:
    wire = Wire(16384)
    request = http_request("POST", "/up", [("Host", "a"), ("Content-Length", "5")])
    taken = wire.fast_head(request + b"hel")
    assert taken is not None and wire.fast
    head, _, upgrading = taken
    assert not upgrading and head.content_length == 5
    assert wire.fast_body(b"") == (b"hel", True)
    assert wire.fast_body(b"lo" + http_request()) == (b"lo", False)
    assert wire.parked == len(http_request())  # the next request waits behind this one
    assert wire.fast_body(b"x") is None and wire.parked == len(http_request()) + 1
    out = wire.start(ResponseHead(200, [(b"content-length", b"2")], b"OK"), b"POST")
    assert out + wire.data(b"ok") + wire.end() == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    assert wire.next_cycle() and not wire.fast and wire.parked == 0
    assert wire.buffered() == http_request() + b"x"
    assert wire._h11 is None  # never needed


def test_a_fast_request_with_connection_close_ends_the_connection() -> None:
    wire = Wire(16384)
    assert (
        wire.fast_head(http_request(headers=[("Host", "a"), ("Connection", "close")])) is not None
    )
    head = wire.start(ResponseHead(204, [], b"No Content"), b"GET")
    assert head == b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    assert wire.end() == b""
    assert not wire.next_cycle()


def test_h11_is_let_go_at_the_end_of_its_cycle() -> None:
    wire = Wire(16384)
    wire.receive(http_request()[:5], in_cycle=False)
    wire.receive(http_request()[5:] + b"GET", in_cycle=False)
    conn = wire.h11()
    assert isinstance(conn.next_event(), h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    wire.send(h11.Response(status_code=204, headers=[]))
    wire.send(h11.EndOfMessage())
    assert wire.next_cycle() and wire._h11 is None
    assert wire.buffered() == b"GET"  # the next request may take the fast path


def test_pipelined_bytes_are_parked_until_the_next_cycle() -> None:
    wire = Wire(1024)
    wire.receive(http_request(), in_cycle=False)
    conn = wire.h11()
    assert isinstance(conn.next_event(), h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    wire.receive(http_request() * 40, in_cycle=True)  # 40 more requests behind the first
    assert wire.parked == len(http_request()) * 40 and wire.paused
    wire.send(h11.Response(status_code=204, headers=[]))
    wire.send(h11.EndOfMessage())
    assert wire.next_cycle() and wire.parked == 0 and not wire.paused
    assert wire.has_buffered()


def test_a_refusal_is_written_by_hand_where_h11_cannot_send_one() -> None:
    wire = Wire(16384)
    wire.receive(http_request(), in_cycle=False)
    wire.h11().next_event()
    wire.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
    wire.send(h11.EndOfMessage())  # h11 is done with this cycle: it sends nothing more
    out = wire.send_refusal(500, b"Internal Server Error", [], b"x\n", method=b"GET")
    assert out == [b"HTTP/1.1 500 Internal Server Error\r\n\r\nx\n"]


def test_an_invalid_response_is_a_runtime_error_naming_it() -> None:
    wire = Wire(16384)
    wire.receive(http_request(), in_cycle=False)
    wire.h11().next_event()
    with pytest.raises(RuntimeError, match="invalid HTTP response"):
        wire.send(h11.Data(data=b"body before the head"))


def test_head_problem_names_the_limit() -> None:
    headers = [(b"x-%d" % i, b"v") for i in range(5)]
    assert head_problem(b"GET", b"/", headers, measure=True, limit=1024, max_count=5) is None
    assert head_problem(b"GET", b"/", headers, measure=True, limit=1024, max_count=4) == (
        "too many header fields: 5 (the limit is 4)"
    )
    big = [(b"x", b"v" * 2000)]
    assert head_problem(b"GET", b"/", big, measure=True, limit=1024, max_count=5) == (
        "request head too large (the limit is 1024 bytes)"
    )
    # A fast-path head is never over the limit: it is not measured again.
    assert head_problem(b"GET", b"/", big, measure=False, limit=1024, max_count=5) is None
