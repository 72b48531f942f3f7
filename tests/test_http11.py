"""asgiws.http11.Wire: the fast path with h11 behind it, byte for byte."""

from __future__ import annotations

import h11
import pytest
from wire import RFC_KEY, client_frame, http_request, ws_request

from asgiws.http11 import Wire, head_problem

UPGRADE = ws_request("/chat")


def test_a_whole_upgrade_head_is_taken_without_h11_and_handed_over_at_the_switch() -> None:
    wire = Wire(16384)
    early = client_frame(0x1, b"early")
    taken = wire.fast_head(UPGRADE + early)
    assert taken is not None
    head, fields = taken
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
    out = wire.send_refusal(403, b"Forbidden", [(b"content-length", b"0")], b"", head=False)
    assert b"".join(out) == b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"
    assert wire.switch() == b"xy"


@pytest.mark.parametrize(
    "data",
    [
        http_request(),  # a plain GET
        UPGRADE[:-2],  # not whole
        UPGRADE.replace(b"GET", b"PUT"),
        UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
    ],
)
def test_everything_else_is_left_to_h11(data: bytes) -> None:
    wire = Wire(16384)
    assert wire.fast_head(data) is None
    assert not wire.hold(b"x")


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
    assert wire.has_buffered


def test_a_refusal_is_written_by_hand_where_h11_cannot_send_one() -> None:
    wire = Wire(16384)
    wire.receive(http_request(), in_cycle=False)
    wire.h11().next_event()
    wire.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
    wire.send(h11.EndOfMessage())  # h11 is done with this cycle: it sends nothing more
    out = wire.send_refusal(500, b"Internal Server Error", [], b"x\n", head=False)
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
