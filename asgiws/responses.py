"""HTTP response heads, from the app's messages or from the server's own refusals.

Pure functions, no state: :class:`asgiws.http.HTTPConnection` decides when, these build what.
A :class:`ResponseHead` is checked as h11 checks a response (:func:`asgiws.writer.check_fields`)
and goes out through h11 (:meth:`ResponseHead.event`) or, for a request the fast path took,
through :class:`asgiws.writer.ResponseWriter`. A mistake in an app's message raises
RuntimeError naming the message type, the key and the value.
"""

from __future__ import annotations

import dataclasses

import h11

from .asgi import ASGIMessage, Headers, check_headers, reason_phrase
from .protocol import ServerHeaders
from .writer import check_fields


@dataclasses.dataclass(slots=True)
class ResponseHead:
    """A response's status, headers (lower-case names, checked, server headers merged) and
    reason phrase."""

    status: int
    headers: Headers
    reason: bytes

    def event(self) -> h11.Response:
        return h11.Response(status_code=self.status, headers=self.headers, reason=self.reason)


# RFC 9110 §6.4.1: these responses never carry content, so no Content-Length is added.
_NO_CONTENT = (204, 304)


def response_start(
    message: ASGIMessage, kind: str, server: ServerHeaders, *, denial: bool = False
) -> ResponseHead:
    """The response head of ``http.response.start`` (or, with ``denial``, of
    ``websocket.http.response.start``, which always closes the connection and is never 101).
    The common head of an HTTP response is taken before this, by ``Responder.start``."""
    status = message.get("status")
    if type(status) is not int or not 200 <= status <= 599:
        status = _checked_status(status, kind)
    headers = check_fields(check_headers(message.get("headers", []), kind))
    if denial and all(name != b"connection" for name, _ in headers):
        headers = [*headers, (b"connection", b"close")]
    return ResponseHead(status, server.merged(headers), reason_phrase(status))


def _checked_status(status: object, kind: str) -> int:
    # RFC 9110 §15: three digits, 1xx to 5xx; and a 1xx (informational) response is the
    # server's to send (100 Continue), never the app's final answer.
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        note = " (informational)" if isinstance(status, int) and 100 <= status < 200 else ""
        raise RuntimeError(f"invalid status in {kind!r}: {status!r}{note} (use 200-599)")
    return int(status)  # an IntEnum such as http.HTTPStatus.OK


def body_of(message: ASGIMessage, kind: str) -> bytes | bytearray | memoryview:
    body = message.get("body", b"")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise RuntimeError(f"'body' in {kind!r} must be bytes, not {type(body).__name__}")
    return body


def complete_head(response: ResponseHead, body_size: int | None, *, close: bool) -> ResponseHead:
    """The held head as it goes out: with Content-Length when the whole body is known
    (``body_size``, None when more is coming or for HEAD) and the app gave no framing, and
    with ``Connection: close`` when the server is shutting down."""
    extra: Headers = []
    if body_size is not None:
        status = response.status
        if status >= 200 and status not in _NO_CONTENT:
            names = {name for name, _ in response.headers}
            if b"content-length" not in names and b"transfer-encoding" not in names:
                extra.append((b"content-length", b"%d" % body_size))
    if close:
        extra.append((b"connection", b"close"))
    if not extra:
        return response
    return ResponseHead(response.status, [*response.headers, *extra], response.reason)


def error_response(
    status: int, reason: str, headers: Headers, server: ServerHeaders
) -> tuple[Headers, bytes]:
    """The headers and plain-text body of a refusal that names its problem and closes."""
    body = reason.encode("utf-8", "replace") + b"\n"
    return server.merged(
        [
            *headers,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
    ), body
