"""What an HTTP connection writes before the 101: the app's response of the current request
cycle, the app's denial of a WebSocket, and the server's own error responses.

One :class:`Responder` per :class:`asgiws.http.HTTPConnection`, reset at each cycle. It follows
the app's response through :class:`~asgiws.states.Response` (NONE, HELD, STREAMING, COMPLETE),
keeps what the cycle's access line needs (the status, the body bytes sent), and turns each step
into bytes with the connection's :class:`~asgiws.http11.Wire` (the fast path's writer, or h11).
The buffers collect in :attr:`Responder.output` until ``data_to_send()`` takes them. The order
of one response's messages is checked here; which phase a message belongs to (an HTTP cycle, a
WebSocket handshake) is the connection's to decide. Sans-IO.
"""

from __future__ import annotations

from typing import Any

import h11

from .asgi import ASGIMessage, Headers, reason_phrase
from .http11 import Wire
from .protocol import ServerHeaders
from .responses import ResponseHead, body_of, complete_head, error_response, response_start
from .states import Response
from .writer import plain_lines, plain_response

__all__ = ["Responder"]

_NONE = Response.NONE
_HELD = Response.HELD
_STREAMING = Response.STREAMING
_COMPLETE = Response.COMPLETE
_CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")


class Responder:
    """The response side of one connection's request cycles."""

    __slots__ = (
        "_head", "_plain", "_wire", "close", "method", "output", "sent", "server_headers",
        "state", "status",
    )  # fmt: skip

    def __init__(self, wire: Wire, server_headers: ServerHeaders) -> None:
        self._wire = wire
        self.server_headers = server_headers
        self.output: list[bytes] = []
        # Shutting down: every response head from now on says Connection: close.
        self.close = False
        self.method = b""  # the request's, for HEAD and the access line
        self.state = _NONE
        self.status: int | None = None  # the response status sent in this cycle
        self.sent = 0  # response body bytes sent in this cycle
        self._head: ResponseHead | None = None  # http.response.start, while HELD
        # Or, for the common head (writer.plain_lines), held without a ResponseHead: the app's
        # header block as it goes out and the server's after it, the app's Content-Length and
        # headers.
        self._plain: tuple[bytes, bytes, bytes | None, Headers] | None = None

    def reset(self) -> None:
        """A new request cycle."""
        self.method = b""
        self.state = _NONE
        self.sent = 0
        self.status = None

    # -- the app's HTTP response ---------------------------------------------------------------

    def start(self, message: ASGIMessage, kind: str) -> None:
        """``http.response.start``: checked, and held until the first body tells its length."""
        if self.state is not _NONE:
            raise RuntimeError(f"cannot send {kind!r} twice in state HTTP")
        server = self.server_headers
        own = server.own_lines
        status = message.get("status")
        if own is not None and type(status) is int and 200 <= status <= 599:
            raw = message.get("headers", [])
            plain = plain_lines(raw)
            if plain is not None:
                # The common head, checked in one pass; it sets neither server nor date, so
                # all of the server's headers follow it.
                self._plain = (plain[0], own, plain[1], raw)
                self.status = status
                self.state = _HELD
                return
        head = response_start(message, kind, server)
        self._head = head
        self.status = head.status
        self.state = _HELD

    def body(self, message: ASGIMessage, kind: str) -> bool:
        """``http.response.body``: written. True once the response is complete."""
        state = self.state
        plain = self._plain
        if plain is not None and state is _HELD:
            # The common response first: a head plain_lines took, then all of a bytes body
            # (more_body left out or False), to a request that was not HEAD and did not say
            # close: its head and all of its body in one buffer, with no header list looked at
            # and no writer needed (nothing follows it). Anything else, and an app
            # Content-Length that is not the body's (named below), takes the general path,
            # which reads the message again from the start (a dict: nothing else runs).
            body = message.get("body", b"")
            if (
                type(body) is bytes
                and message.get("more_body", False) is False
                and self.method != b"HEAD"
                and not self.close
                and self._wire.plain
            ):
                status = self.status
                if status != 204 and status != 304:
                    assert status is not None
                    lines, own, length, _ = plain
                    whole = plain_response(status, lines, own, length, body)
                    if whole is not None:
                        self._plain = None
                        self.output.append(whole)
                        self.sent += len(body)
                        self.state = _COMPLETE
                        return True
        if state is _NONE:
            raise RuntimeError(f"cannot send {kind!r} before 'http.response.start' in state HTTP")
        if state is _COMPLETE:
            raise RuntimeError(f"cannot send {kind!r} after the response is complete")
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = body_of(message, kind)  # bytearray or memoryview; else it names the mistake
        more_body = bool(message.get("more_body", False))
        method = self.method
        head = method == b"HEAD"
        wire = self._wire
        output = self.output
        if state is _HELD:
            data = body if type(body) is bytes else bytes(body)
            plain = self._plain
            if plain is not None:
                self._plain = None
                lines, own, length, raw = plain
                status = self.status
                assert status is not None
                if not more_body and not head and not self.close and wire.plain:
                    # The common response (above) with more_body 0, a bytearray body...
                    if status != 204 and status != 304:
                        whole = plain_response(status, lines, own, length, data)
                        if whole is not None:
                            output.append(whole)
                            self.sent += len(body)
                            self.state = _COMPLETE
                            return True
                extra = self.server_headers.headers
                response = ResponseHead(status, [*raw, *extra], reason_phrase(status))
            else:
                held = self._head
                assert held is not None
                self._head = None
                response = held
                if not more_body and not head and not self.close:
                    whole = wire.whole(response, data)  # the same for any head the writer takes
                    if whole is not None:
                        output.append(whole)
                        self.sent += len(body)
                        self.state = _COMPLETE
                        return True
            self.state = _STREAMING
            known = None if more_body or head else len(body)
            output.append(wire.start(complete_head(response, known, close=self.close), method))
        if body and not head:
            data = wire.data(bytes(body))
            if data:
                output.append(data)
            self.sent += len(body)
        if more_body:
            return False
        self.state = _COMPLETE
        data = wire.end()
        if data:
            output.append(data)
        return True

    def continue_100(self) -> None:
        """ASGI: 100 Continue is sent only when the app asks for the body."""
        self._send(_CONTINUE)

    # -- the app's denial of a WebSocket -------------------------------------------------------

    def deny_start(self, message: ASGIMessage, kind: str) -> None:
        """``websocket.http.response.start``: written at once (h11 frames the body)."""
        if self.state is not _NONE:
            raise RuntimeError(f"cannot send {kind!r} twice in state WS_DENYING")
        response = response_start(message, kind, self.server_headers, denial=True)
        self.status = response.status
        self._send(response.event())
        self.state = _STREAMING

    def deny_body(self, message: ASGIMessage, kind: str) -> bool:
        """``websocket.http.response.body``. True once the denial is complete."""
        if self.state is not _STREAMING:
            raise RuntimeError(
                f"cannot send {kind!r} before 'websocket.http.response.start' in state "
                "WS_CONNECTING"
            )
        body = body_of(message, kind)
        if body:
            self._send(h11.Data(data=bytes(body)))
            self.sent += len(body)
        if message.get("more_body", False):
            return False
        self._send(h11.EndOfMessage())
        self.state = _COMPLETE
        return True

    # -- the server's own answers ----------------------------------------------------------------

    def error(self, status: int, reason: str, headers: Headers = ()) -> None:  # type: ignore[assignment]
        """A short plain-text error naming the problem; the connection closes after it."""
        self.status = status
        all_headers, body = error_response(status, reason, headers, self.server_headers)
        method = self.method
        self.sent = 0 if method == b"HEAD" else len(body)
        self.output.extend(
            self._wire.send_refusal(status, reason_phrase(status), all_headers, body, method=method)
        )
        self.state = _COMPLETE

    def _send(self, event: Any) -> None:
        data = self._wire.send(event)
        if data:
            self.output.append(data)
