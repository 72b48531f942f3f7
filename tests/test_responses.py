"""asgiws.responses: response heads from the app's messages, and the server's refusals."""

from __future__ import annotations

import pytest

from asgiws.protocol import ServerHeaders
from asgiws.responses import (
    ResponseHead,
    body_of,
    complete_head,
    error_response,
    response_start,
)

SERVER = ServerHeaders([(b"date", b"today"), (b"server", b"asgiws")])


def test_response_start_adds_the_server_headers_the_app_did_not_set() -> None:
    message = {"type": "http.response.start", "status": 200, "headers": [(b"Server", b"mine")]}
    response = response_start(message, "http.response.start", SERVER)
    assert response.status == 200 and response.reason == b"OK"
    assert response.headers == [(b"server", b"mine"), (b"date", b"today")]


def test_a_denial_closes_the_connection_and_is_never_101() -> None:
    kind = "websocket.http.response.start"
    response = response_start({"status": 401}, kind, SERVER, denial=True)
    assert (b"connection", b"close") in list(response.headers)
    with pytest.raises(RuntimeError, match=r"invalid status in '.*': 101"):
        response_start({"status": 101}, kind, SERVER, denial=True)


@pytest.mark.parametrize("status", [99, 100, 103, 199, 600, 1000, "200", None, True])
def test_statuses_outside_100_to_599_are_refused(status: object) -> None:
    with pytest.raises(RuntimeError, match=r"invalid status in 'http.response.start'"):
        response_start({"status": status}, "http.response.start", SERVER)


def _head(status: int, headers: list[tuple[bytes, bytes]] = []) -> ResponseHead:  # noqa: B006
    return ResponseHead(status, headers, b"")


def test_complete_head_frames_a_known_body_unless_the_app_did() -> None:
    assert (b"content-length", b"5") in list(complete_head(_head(200), 5, close=False).headers)
    chunked = _head(200, [(b"transfer-encoding", b"chunked")])
    assert complete_head(chunked, 5, close=False) is chunked
    for status in (204, 304):
        assert complete_head(_head(status), 0, close=False).headers == _head(status).headers
    assert complete_head(_head(200), None, close=False).headers == []  # more body to come
    closing = complete_head(_head(200), None, close=True)
    assert closing.headers == [(b"connection", b"close")]


def test_response_headers_are_checked_as_h11_checks_them() -> None:
    kind = "http.response.start"
    for headers, problem in [
        ([(b"x y", b"1")], "Illegal header name"),
        ([(b"x", b" 1")], "Illegal header value"),
        ([(b"x", b"a\x00b")], "Illegal header value"),
        ([(b"content-length", b"1, 2")], "conflicting Content-Length"),
        ([(b"content-length", b"1"), (b"content-length", b"2")], "conflicting Content-Length"),
        ([(b"content-length", b"-1")], "bad Content-Length"),
        ([(b"transfer-encoding", b"gzip")], "Only Transfer-Encoding: chunked"),
    ]:
        with pytest.raises(RuntimeError, match=f"invalid HTTP response: {problem}"):
            response_start({"status": 200, "headers": headers}, kind, SERVER)
    twice = [(b"content-length", b"2"), (b"Content-Length", b"2, 2")]
    head = response_start({"status": 200, "headers": twice}, kind, SERVER)
    assert head.headers[0] == (b"content-length", b"2") and len(head.headers) == 3


def test_error_response_is_plain_text_naming_the_problem() -> None:
    headers, body = error_response(426, "unsupported version: 8", [(b"x", b"1")], SERVER)
    assert body == b"unsupported version: 8\n"
    assert headers == [
        (b"x", b"1"),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"23"),
        (b"connection", b"close"),
        (b"date", b"today"),
        (b"server", b"asgiws"),
    ]


def test_body_must_be_bytes() -> None:
    assert body_of({"body": bytearray(b"x")}, "http.response.body") == bytearray(b"x")
    assert body_of({}, "http.response.body") == b""
    with pytest.raises(RuntimeError, match=r"'body' in 'http.response.body' must be bytes"):
        body_of({"body": "x"}, "http.response.body")
