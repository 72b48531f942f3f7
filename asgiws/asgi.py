"""The ASGI side of a connection: scopes built from a request, and checks of what an app sends.

Pure functions, no state: :mod:`asgiws.protocol` calls them. The checks raise RuntimeError with a
message naming the message type, the key and the value, so that a mistake in an app is found
from the first line of its traceback.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from ._abnf import TOKEN_BYTES
from .frames import MAX_CLOSE_REASON, check_close
from .types import Headers
from .types import MessageDict as ASGIMessage
from .types import ScopeDict as Scope

__all__ = [
    "ASGI_VERSION",
    "HTTP_SPEC_VERSION",
    "MAX_CLOSE_REASON",
    "WS_SPEC_VERSION",
    "ASGIMessage",
    "Headers",
    "Scope",
    "check_field_lines",
    "check_headers",
    "close_args",
    "make_http_scope",
    "make_websocket_scope",
    "queue_body",
    "raw_response",
    "reason_phrase",
    "request_scope",
    "ws_disconnect",
    "ws_payload",
]

ASGI_VERSION = "3.0"
# HTTP 2.3, not 2.4: from 2.4 on, send() after the client left may raise, which broke Starlette's
# streaming responses when a server tried it; here it is a no-op.
HTTP_SPEC_VERSION = "2.3"
WS_SPEC_VERSION = "2.5"


_HTTP_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}


def request_scope(
    target: bytes,
    http_version: bytes,
    headers: Headers,
    root_path: str,
    client: Any,
    server: Any,
    lifespan_state: dict[str, Any] | None,
    method: bytes | None = None,
) -> Scope:
    """The keys an ``http`` and a ``websocket`` scope share, from a request's head; with the
    request's ``method``, an ``http`` scope's own keys too, but for an ``https`` scheme
    (:func:`make_http_scope` with ``secure`` False, without a call of its own)."""
    raw_path, _, query = target.partition(b"?")
    if raw_path[:1] != b"/" and raw_path.find(b"://") >= 0:  # (startswith() parses its args)
        # RFC 9112 §3.2.2 absolute-form (http://host/path): keep the path.
        after = raw_path.split(b"://", 1)[1]
        slash = after.find(b"/")
        raw_path = after[slash:] if slash >= 0 else b"/"
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = unquote(path)  # slow, and nearly every path has no %-escape to undo
    version = _HTTP_VERSIONS.get(http_version) or http_version.decode("ascii")
    if method is not None:
        # An http scope is one literal, the keys in the order below: a dict that grows past
        # its first size is rebuilt (the ten keys below and three more would be).
        asgi = {"version": ASGI_VERSION, "spec_version": HTTP_SPEC_VERSION}
        if lifespan_state is None:
            return {
                "http_version": version, "scheme": "http", "path": root_path + path,
                "raw_path": raw_path, "query_string": query, "root_path": root_path,
                "headers": headers, "client": client, "server": server,
                "type": "http", "asgi": asgi, "method": method.decode("ascii"),
            }  # fmt: skip
        return {
            "http_version": version, "scheme": "http", "path": root_path + path,
            "raw_path": raw_path, "query_string": query, "root_path": root_path,
            "headers": headers, "client": client, "server": server,
            "state": lifespan_state.copy(),  # (as below)
            "type": "http", "asgi": asgi, "method": method.decode("ascii"),
        }  # fmt: skip
    scope: Scope = {
        "http_version": version,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
    }
    if lifespan_state is not None:
        # ASGI lifespan: each request gets a shallow copy of what startup left.
        scope["state"] = lifespan_state.copy()
    return scope


def make_http_scope(scope: Scope, method: bytes, secure: bool) -> None:
    scope["type"] = "http"
    scope["asgi"] = {"version": ASGI_VERSION, "spec_version": HTTP_SPEC_VERSION}
    scope["method"] = method.decode("ascii")
    if secure:
        scope["scheme"] = "https"


def make_websocket_scope(scope: Scope, subprotocols: list[str], secure: bool) -> None:
    scope["type"] = "websocket"
    scope["asgi"] = {"version": ASGI_VERSION, "spec_version": WS_SPEC_VERSION}
    scope["scheme"] = "wss" if secure else "ws"
    scope["subprotocols"] = subprotocols
    scope["extensions"] = {"websocket.http.response": {}}


def ws_disconnect(code: int, reason: str = "") -> ASGIMessage:
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


def queue_body(inbox: list[ASGIMessage], body: bytes, more_body: bool) -> None:
    """Request body bytes for the app, as an ``http.request`` at the end of ``inbox``; the end
    of the body is folded into the last one when the app has not read it yet."""
    if not more_body and inbox:
        last = inbox[-1]
        if last.get("type") == "http.request" and last.get("more_body"):
            last["more_body"] = False
            return
    inbox.append({"type": "http.request", "body": body, "more_body": more_body})


def check_headers(headers: Any, kind: str) -> Headers:
    """``headers`` of an app message as a list of (lower-case name, value) byte pairs."""
    try:
        return [(bytes(name).lower(), bytes(value)) for name, value in headers]
    except (TypeError, ValueError):
        raise RuntimeError(
            f"'headers' in {kind!r} must be an iterable of (bytes, bytes) pairs"
        ) from None


# RFC 9110 §5.1 and §5.5: a field name is a token; a value has no CR, LF or NUL.
_TOKEN = re.compile(TOKEN_BYTES)
_FIELD_VALUE = re.compile(rb"[^\x00\r\n]*")


def check_field_lines(headers: Any, kind: str) -> Headers:
    """Like :func:`check_headers`, and each name and value is fit to write as it is."""
    checked = check_headers(headers, kind)
    for name, value in checked:
        if not _TOKEN.fullmatch(name):
            raise RuntimeError(f"invalid header name in {kind!r}: {name!r}")
        if not _FIELD_VALUE.fullmatch(value):
            raise RuntimeError(f"invalid value for header {name.decode()!r} in {kind!r}: {value!r}")
    return checked


def ws_payload(message: ASGIMessage, state: Any) -> str | bytes:
    """The payload of a ``websocket.send``: exactly one of ``text`` (str) and ``bytes``."""
    text = message.get("text")
    data = message.get("bytes")
    if text is not None:
        if data is not None:
            raise RuntimeError(
                f"'websocket.send' has both 'text' and 'bytes' in state {state.name}"
            )
        if type(text) is not str:
            raise RuntimeError(f"'text' in 'websocket.send' must be str, not {type(text).__name__}")
        return text
    if data is None:
        raise RuntimeError(f"'websocket.send' has neither 'text' nor 'bytes' in state {state.name}")
    if type(data) is not bytes:
        if not isinstance(data, bytearray | memoryview):
            raise RuntimeError(
                f"'bytes' in 'websocket.send' must be bytes, not {type(data).__name__}"
            )
        data = bytes(data)
    return data


def close_args(message: ASGIMessage) -> tuple[int, str]:
    """``code`` and ``reason`` of a ``websocket.close``, checked against RFC 6455 §7.4."""
    code = message.get("code", 1000)
    reason = message.get("reason") or ""
    if not isinstance(code, int) or isinstance(code, bool):
        raise RuntimeError(f"'code' in 'websocket.close' must be an int, not {code!r}")
    if not isinstance(reason, str):
        raise RuntimeError(
            f"'reason' in 'websocket.close' must be a str, not {type(reason).__name__}"
        )
    try:
        check_close(code, reason)  # RFC 6455 §7.4 and §5.5.1, the one rule (asgiws.frames)
    except ValueError as exc:
        raise RuntimeError(f"{exc} (in 'websocket.close')") from None
    return code, reason


def raw_response(status: int, headers: Headers, body: bytes) -> bytes:
    """An error response written without h11, for when h11 has given up on the connection."""
    lines = [b"HTTP/1.1 %d %s" % (status, reason_phrase(status))]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"")
