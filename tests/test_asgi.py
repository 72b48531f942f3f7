"""asgiws.asgi: scopes built from a request head, and the checks of what an app sends."""

from __future__ import annotations

from typing import Any

import pytest

from asgiws import asgi, frames
from asgiws.states import WSState

HEADERS = [(b"host", b"example.com"), (b"x-a", b"1")]


def scope_of(target: bytes, **options: Any) -> dict[str, Any]:
    keywords: dict[str, Any] = {
        "root_path": "",
        "client": ("10.0.0.1", 5000),
        "server": ("10.0.0.2", 80),
        "lifespan_state": None,
    }
    keywords.update(options)
    return asgi.request_scope(target, b"1.1", HEADERS, **keywords)


def test_request_scope_holds_the_shared_keys() -> None:
    assert scope_of(b"/a%20b?x=1&y") == {
        "http_version": "1.1",
        "scheme": "http",
        "path": "/a b",
        "raw_path": b"/a%20b",
        "query_string": b"x=1&y",
        "root_path": "",
        "headers": HEADERS,
        "client": ("10.0.0.1", 5000),
        "server": ("10.0.0.2", 80),
    }


def test_request_scope_root_path_and_absolute_form() -> None:
    scope = scope_of(b"http://example.com/p?q", root_path="/api")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/api/p", b"/p", b"q")
    assert scope_of(b"http://example.com")["raw_path"] == b"/"  # RFC 9112 §3.2.2


def test_request_scope_copies_the_lifespan_state() -> None:
    state = {"db": "pool"}
    scope = scope_of(b"/", lifespan_state=state)
    assert scope["state"] == state and scope["state"] is not state
    assert "state" not in scope_of(b"/")


def test_http_version_other_than_1_x_is_decoded() -> None:
    scope = asgi.request_scope(
        b"/", b"2", [], root_path="", client=None, server=None, lifespan_state=None
    )
    assert scope["http_version"] == "2"


def test_make_http_scope() -> None:
    scope = scope_of(b"/")
    asgi.make_http_scope(scope, b"POST", secure=True)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert scope["method"] == "POST"
    assert scope["scheme"] == "https"


@pytest.mark.parametrize("state", [None, {"db": "pool"}])
def test_request_scope_with_a_method_is_make_http_scope_on_the_shared_keys(
    state: dict[str, Any] | None,
) -> None:
    expected = scope_of(b"/a%20b?x=1", root_path="/api", lifespan_state=state)
    asgi.make_http_scope(expected, b"POST", secure=False)
    scope = scope_of(b"/a%20b?x=1", root_path="/api", lifespan_state=state, method=b"POST")
    assert list(scope.items()) == list(expected.items())  # the same keys in the same order
    if state is not None:
        assert scope["state"] is not state


def test_make_websocket_scope() -> None:
    scope = scope_of(b"/ws")
    asgi.make_websocket_scope(scope, ["chat"], secure=False)
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["scheme"] == "ws"
    assert scope["subprotocols"] == ["chat"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    asgi.make_websocket_scope(scope, [], secure=True)
    assert scope["scheme"] == "wss"


def test_ws_disconnect() -> None:
    assert asgi.ws_disconnect(1001) == {"type": "websocket.disconnect", "code": 1001, "reason": ""}


def test_check_headers_lower_cases_names() -> None:
    assert asgi.check_headers([(b"X-A", bytearray(b"v")), [b"B", b"w"]], "k") == [
        (b"x-a", b"v"),
        (b"b", b"w"),
    ]
    with pytest.raises(RuntimeError, match=r"^'headers' in 'k' must be an iterable of \(bytes"):
        asgi.check_headers([("x", "y")], "k")
    with pytest.raises(RuntimeError, match="must be an iterable"):
        asgi.check_headers([(b"x",)], "k")


def test_check_field_lines_refuses_what_cannot_be_written() -> None:
    kind = "http.response.start"
    assert asgi.check_field_lines([(b"X-Ok", b"a b\t")], kind) == [(b"x-ok", b"a b\t")]
    with pytest.raises(
        RuntimeError, match=r"^invalid header name in 'http.response.start': b'a b'"
    ):
        asgi.check_field_lines([(b"a b", b"v")], kind)
    with pytest.raises(RuntimeError, match=r"^invalid header name .*: b''$"):
        asgi.check_field_lines([(b"", b"v")], kind)
    with pytest.raises(RuntimeError, match=r"^invalid value for header 'x' in .*: b'a\\r\\nb'"):
        asgi.check_field_lines([(b"x", b"a\r\nb")], kind)
    with pytest.raises(RuntimeError, match="invalid value for header 'x'"):
        asgi.check_field_lines([(b"x", b"\x00")], kind)


def test_ws_payload() -> None:
    state = WSState.OPEN
    assert asgi.ws_payload({"type": "websocket.send", "text": "hi"}, state) == "hi"
    assert asgi.ws_payload({"bytes": b"hi", "text": None}, state) == b"hi"
    converted = asgi.ws_payload({"bytes": bytearray(b"hi")}, state)
    assert converted == b"hi" and type(converted) is bytes
    with pytest.raises(
        RuntimeError, match=r"^'websocket.send' has both 'text' and 'bytes' in state"
    ):
        asgi.ws_payload({"text": "a", "bytes": b"b"}, state)
    with pytest.raises(RuntimeError, match=r"^'websocket.send' has neither 'text' nor 'bytes'"):
        asgi.ws_payload({}, state)
    with pytest.raises(RuntimeError, match=r"^'text' in 'websocket.send' must be str, not bytes$"):
        asgi.ws_payload({"text": b"a"}, state)
    with pytest.raises(RuntimeError, match=r"^'bytes' in 'websocket.send' must be bytes, not str$"):
        asgi.ws_payload({"bytes": "a"}, state)


def test_close_args_defaults_and_values() -> None:
    assert asgi.close_args({"type": "websocket.close"}) == (1000, "")
    assert asgi.close_args({"code": 4000, "reason": None}) == (4000, "")
    assert asgi.close_args({"code": 1012, "reason": "é" * 61 + "x"}) == (1012, "é" * 61 + "x")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 5000])
def test_close_args_refuses_codes_that_may_not_be_sent(code: int) -> None:
    with pytest.raises(RuntimeError) as info:
        asgi.close_args({"type": "websocket.close", "code": code})
    assert str(info.value) == (
        f"invalid close code {code}: it may not be sent in a Close frame; use 1000-4999 except "
        "1004, 1005, 1006 and 1015 (RFC 6455 §7.4) (in 'websocket.close')"
    )


def test_1004_is_refused_both_ways() -> None:
    # RFC 6455 §7.4.1: 1004 is reserved. An app may not send it ...
    with pytest.raises(RuntimeError, match="invalid close code 1004"):
        asgi.close_args({"code": 1004})
    # ... and a peer that sends it fails the connection with 1002 (Autobahn 7.9.x).
    assert not frames.is_valid_close_code(1004)
    frame = b"\x88\x82" + bytes(4) + (1004).to_bytes(2, "big")  # mask 0: the payload as is
    assert frames.FrameCodec().receive_data(frame) == [
        frames.ProtocolFailure(1002, "invalid close code 1004")
    ]


def test_the_sendable_codes_are_the_frames_rule() -> None:
    for code in range(0, 6000):
        try:
            asgi.close_args({"code": code})
        except RuntimeError:
            sendable = False
        else:
            sendable = True
        assert sendable is frames.is_sendable_close_code(code), code


def test_close_args_type_and_reason_checks() -> None:
    with pytest.raises(
        RuntimeError, match=r"^'code' in 'websocket.close' must be an int, not True"
    ):
        asgi.close_args({"code": True})
    with pytest.raises(RuntimeError, match=r"must be an int, not '1000'"):
        asgi.close_args({"code": "1000"})
    with pytest.raises(
        RuntimeError, match=r"^'reason' in 'websocket.close' must be a str, not bytes"
    ):
        asgi.close_args({"code": 1000, "reason": b"x"})
    with pytest.raises(RuntimeError) as info:
        asgi.close_args({"code": 1000, "reason": "x" * 124})
    assert str(info.value) == (
        "close reason is 124 bytes of UTF-8; the limit is 123 (in 'websocket.close')"
    )
    assert asgi.MAX_CLOSE_REASON == frames.MAX_CLOSE_REASON == 123


def test_raw_response_and_reason_phrase() -> None:
    assert asgi.raw_response(400, [(b"content-length", b"2")], b"no") == (
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno"
    )
    assert asgi.reason_phrase(431) == b"Request Header Fields Too Large"
    assert asgi.reason_phrase(599) == b""


def test_queue_body_folds_the_end_into_an_unread_chunk() -> None:
    from asgiws.asgi import queue_body

    inbox: list[dict[str, object]] = []
    queue_body(inbox, b"ab", True)
    queue_body(inbox, b"", False)  # the end, while the app has not read "ab": folded
    assert inbox == [{"type": "http.request", "body": b"ab", "more_body": False}]
    inbox.clear()
    queue_body(inbox, b"", False)  # nothing unread: an empty last chunk of its own
    queue_body(inbox, b"cd", True)
    assert inbox == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.request", "body": b"cd", "more_body": True},
    ]
    disconnect: dict[str, object] = {"type": "http.disconnect"}
    inbox[:] = [disconnect]
    queue_body(inbox, b"", False)  # only an http.request with more to come takes the end
    assert inbox[-1] == {"type": "http.request", "body": b"", "more_body": False}
