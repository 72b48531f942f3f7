"""The sans-IO core of asgiws: one :class:`Connection` per TCP connection.

Bytes go in with :meth:`Connection.receive_data`; bytes to write come out of
:meth:`Connection.data_to_send`. ASGI messages for the app come out one at a time from
:meth:`Connection.next_message` (the app's ``receive()``), and the app's messages go in through
:meth:`Connection.send`. A new ASGI scope, for which the I/O layer starts the app, comes out of
:meth:`Connection.next_scope`.

Messages are pulled one at a time, not handed over in batches, because of one rule: a peer's
Close frame (or a protocol violation) is acted upon only when the app has read every message that
arrived before it. That way an answer the app sends to those messages goes out ahead of our Close
frame, as RFC 6455 §1.4 and Autobahn|Testsuite's strict cases expect. ``ws_close_timeout`` bounds
how long an app that does not read can delay the close.

This module never imports asyncio, never reads a clock and never touches a socket. Timers are the
I/O layer's: :attr:`Connection.timer` names the one that should be armed now (it changes together
with :attr:`Connection.timer_epoch`), and :meth:`Connection.timeout` is called when it fires.
"""

from __future__ import annotations

import re
from typing import Any

import h11

from .asgi import (
    ASGIMessage,
    Headers,
    Scope,
    check_field_lines,
    check_headers,
    close_args,
    make_http_scope,
    make_websocket_scope,
    raw_response,
    reason_phrase,
    request_scope,
    ws_payload,
)
from .config import Config
from .deflate import negotiate as negotiate_deflate
from .fasthead import parse_head
from .frames import FrameCodec
from .handshake import (
    Fields,
    HandshakeError,
    accept_value,
    handshake_fields,
    is_upgrade_request,
    parse_subprotocols,
    validate_upgrade,
)
from .states import (
    CLOSED,
    HTTP,
    IDLE,
    TIMER_HEAD,
    TIMER_KEEP_ALIVE,
    TIMER_NONE,
    TIMER_PING,
    WS_CLOSING,
    WS_CONNECTING,
    WS_DENYING,
    WS_OPEN,
    ClientDisconnected,
    PendingClose,
    State,
    Timer,
)
from .websocket import WebSocketPhase

# Headers the server computes for the 101 response; the app may not set them.
__all__ = ["ClientDisconnected", "Connection", "ServerHeaders", "State", "Timer"]

_RESERVED_ACCEPT_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-accept", b"sec-websocket-extensions"}
)


# The 101's fixed part, up to the Sec-WebSocket-Accept value.
_SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"upgrade: websocket\r\n"
    b"connection: Upgrade\r\n"
    b"sec-websocket-accept: "
)

_MIGHT_SWITCH_PROTOCOL = h11._state.MIGHT_SWITCH_PROTOCOL
_H11_WAITING = (h11.DONE, _MIGHT_SWITCH_PROTOCOL)


_BYTEARRAY_REPR = re.compile(r"bytearray\((b'.*?')\)")


_EMPTY: list[str] = []


class ServerHeaders:
    """Headers added to every response (``date``, ``server``), kept fresh by the I/O layer."""

    __slots__ = ("_lines", "_lines_of", "headers")

    def __init__(self, headers: Headers | None = None) -> None:
        self.headers: Headers = headers if headers is not None else [(b"server", b"asgiws")]
        self._lines = b""
        self._lines_of: Headers | None = None

    @property
    def lines(self) -> bytes:
        """The headers as field lines, each ending in CRLF, encoded once per change."""
        headers = self.headers
        if headers is not self._lines_of:
            self._lines = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
            self._lines_of = headers
        return self._lines


class Connection(WebSocketPhase):
    """One HTTP/1.1 connection, which may become a WebSocket connection."""

    # Thousands of these sit idle at once: no per-instance __dict__.
    __slots__ = (
        "_app_running",
        "_codec",
        "_early",
        "_extension_offers",
        "_h11",
        "_head",
        "_parked",
        "_response",
        "_response_complete",
        "_response_started",
        "_scope",
        "_shutting_down",
        "_subprotocols",
        "_upgrade_refused",
        "_ws_key",
        "client",
        "config",
        "http_version",
        "inbox",
        "lifespan_state",
        "max_queue",
        "method",
        "output",
        "path",
        "rejected",
        "secure",
        "server",
        "server_headers",
        "status",
    )

    def __init__(
        self,
        config: Config,
        *,
        client: tuple[str, int] | list[Any] | None,
        server: tuple[str, int] | list[Any] | None,
        scheme: str = "http",
        server_headers: ServerHeaders | None = None,
        lifespan_state: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.server = server
        self.secure = scheme == "https"
        self.server_headers = server_headers or ServerHeaders()
        self.lifespan_state = lifespan_state

        self.state = IDLE
        self.timer = TIMER_HEAD if config.timeout_handshake > 0 else TIMER_NONE
        self.timer_epoch = 0

        # h11 is created on the first bytes that the fast path (asgiws.fasthead) does not take,
        # or when a response has to go through it; an accepted WebSocket may never need it.
        self._h11: h11.Connection | None = None
        self._head = b""  # a request head the fast path took, until the 101 or h11 needs it
        self._early = b""  # bytes that came behind that head, before the 101
        self._codec: FrameCodec | None = None
        # Bytes waiting to be written (data_to_send() takes them) and messages waiting for the
        # app (next_message() takes them). The I/O layer may look at both, never change them.
        self.output: list[bytes] = []
        # A list, not a deque: it holds at most max_queue items, and an empty deque costs
        # 600 bytes more per idle connection.
        self.inbox: list[ASGIMessage | PendingClose] = []
        self.max_queue = config.max_queue
        self._parked = 0  # bytes received behind the current request, waiting in h11
        self._scope: Scope | None = None  # started by next_scope(), not yet taken
        self._app_running = False
        self._disconnect_queued = False  # exactly one disconnect per cycle
        self._shutting_down = False

        # The current request cycle.
        self.method = b""
        self.path = ""
        self.http_version = b"1.1"
        self.status: int | None = None  # the response status sent (101 for an accepted upgrade)
        self.close_code: int | None = None  # how the WebSocket session ended
        # "http" or "websocket" when the server refused a request that no app saw (400, 431,
        # a bad handshake): the I/O layer logs the access line for it.
        self.rejected: str | None = None
        self._upgrade_refused = False
        self._ws_key = b""
        self._subprotocols: list[str] = []
        self._extension_offers: list[str] = []
        self._response: h11.Response | None = None  # http.response.start, held until the body
        self._response_started = False
        self._response_complete = False
        self._ping_counter = 0

    # -- bytes in ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the socket. They may be a view of a read buffer that is reused
        once this returns: whatever is kept is copied."""
        if self._codec is not None:
            if self.state is WS_OPEN or self.state is WS_CLOSING:
                self._receive_frames(data)
            return
        if type(data) is not bytes:
            data = bytes(data)
        state = self.state
        if state is CLOSED:
            return
        conn = self._h11
        if conn is None:
            if self._head:
                if data:
                    # Bytes behind an upgrade request the app has not answered yet.
                    self._early += data
                    self._parked += len(data)
                    return
            elif state is IDLE and self._fast_request(data):
                return
            conn = self._h11_conn()
        if self.timer is TIMER_KEEP_ALIVE and data:
            # The next request has begun: its head must now arrive within timeout_handshake.
            self._set_timer(TIMER_HEAD if self.config.timeout_handshake > 0 else TIMER_NONE)
        if state is not IDLE and conn.their_state in _H11_WAITING:
            self._parked += len(data)
        conn.receive_data(data)
        self._process_http()

    def _fast_request(self, data: bytes) -> bool:
        """Take the connection's first bytes without h11 when they hold a whole, plain
        WebSocket upgrade request (see asgiws.fasthead); False leaves them to h11."""
        # Cheap tests first: an upgrade is a GET, and says "websocket" in some case.
        if not data.startswith(b"GET ") or (b"ebsocket" not in data and b"EBSOCKET" not in data):
            return False
        head = parse_head(data, self.config.h11_max_incomplete_event_size)
        if head is None:
            return False
        fields = handshake_fields(head.headers)
        if not is_upgrade_request(fields):
            return False
        self._head = data[: head.size]
        self._early = data[head.size :]
        self._start_request(head.method, head.target, head.http_version, head.headers, fields)
        return True

    def _h11_conn(self) -> h11.Connection:
        """The h11 connection, created on first need. When the fast path took the request, h11
        is given it too, and brought to where it would be had it parsed it itself."""
        conn = self._h11
        if conn is not None:
            return conn
        conn = self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_event_size
        )
        if self._head:
            conn.receive_data(self._head + self._early)
            self._head = self._early = b""
            # The Request, its EndOfMessage, then PAUSED: the upgrade waits for an answer.
            for _ in range(3):
                event = conn.next_event()
                if event is h11.PAUSED or event is h11.NEED_DATA:
                    break
        return conn

    def connection_lost(self) -> None:
        """The transport is gone (EOF, reset, or closed by us)."""
        state = self.state
        self._set_state(CLOSED)
        if self._scope is None and not self._app_running:
            return
        if state in (HTTP, IDLE):
            if not self._disconnect_queued:
                self._disconnect_queued = True
                self.inbox.append({"type": "http.disconnect"})
            return
        # A WebSocket cycle: a Close the app has not read yet still reaches it with its code.
        if self.inbox and isinstance(self.inbox[-1], PendingClose):
            pending = self.inbox.pop()
            assert isinstance(pending, PendingClose)
            self._queue_ws_disconnect(pending.code, pending.reason)
        else:
            self._queue_ws_disconnect(1006, "")

    # -- bytes out -----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = self.output
        if not out:
            return b""
        if len(out) == 1:
            data = out[0]
            out.clear()
            return data
        data = b"".join(out)
        out.clear()
        return data

    def output_buffers(self) -> list[bytes]:
        """Like :meth:`data_to_send`, as a list of buffers to write in order, without joining
        them (a large message's payload is one of them, uncopied)."""
        out = self.output
        self.output = []
        return out

    @property
    def reading_paused(self) -> bool:
        """True while the I/O layer should stop reading: the app is behind, or h11 is paused."""
        if len(self.inbox) >= self.max_queue:
            return True
        # Bytes behind the current request (a pipelined request, early WebSocket frames) wait
        # in h11's buffer until this cycle is done. Reading goes on, so that a client that
        # leaves is noticed, until they pass the size of one request head.
        return self._parked > self.config.h11_max_incomplete_event_size

    # -- scopes and messages for the app ---------------------------------------------------------

    def next_scope(self) -> Scope | None:
        """A scope to start the app with, once per request cycle."""
        scope = self._scope
        if scope is None or self._app_running:
            return None
        self._scope = None
        self._app_running = True
        return scope

    def next_message(self) -> ASGIMessage | None:
        """The next message for the app's ``receive()``, or None when it must wait for more."""
        inbox = self.inbox
        if inbox:
            item = inbox.pop(0)
            if type(item) is dict:
                return item
            assert isinstance(item, PendingClose)
            return self._act_on_close(item)
        if self._ws_key:  # a WebSocket cycle (_is_ws_cycle, without the call)
            if self._disconnect_queued:
                raise ClientDisconnected(
                    "receive() called after 'websocket.disconnect' was delivered"
                )
            return None
        if self.state is CLOSED or self._response_complete or self._disconnect_queued:
            # The client left, or the response is sent: nothing more comes but the end.
            self._disconnect_queued = True
            return {"type": "http.disconnect"}
        conn = self._h11
        if conn is not None and conn.client_is_waiting_for_100_continue:
            # ASGI: 100 Continue is sent only when the app asks for the body.
            self._h11_send(
                h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            )
        return None

    # -- messages from the app -----------------------------------------------------------------

    def send(self, message: ASGIMessage) -> None:
        """Take one message from the app; raise RuntimeError when it is not allowed now."""
        if type(message) is not dict:
            raise RuntimeError(f"an ASGI message must be a dict, not {type(message).__name__}")
        kind = message.get("type")
        state = self.state
        if kind == "websocket.send":
            if state is WS_OPEN:
                # Also while the peer's Close waits unread: RFC 6455 §5.5.1 lets us send.
                text = message.get("text")
                if type(text) is not str or message.get("bytes") is not None:
                    text = ws_payload(message, state)  # bytes, or a mistake to report
                self._codec.encode_message_into(text, self.output)  # type: ignore[union-attr]
                return
        elif kind == "http.response.start" or kind == "http.response.body":
            if state is HTTP:
                self._send_http(message, kind)
                return
            if state is CLOSED and self._is_http_cycle:
                return  # The client left: in ASGI HTTP 2.3 send() is then a no-op.
        elif kind == "websocket.accept":
            if state is WS_CONNECTING:
                self._accept(message)
                return
        elif kind == "websocket.close":
            if state is WS_CONNECTING:
                # ASGI: close before accept rejects the handshake with 403.
                self._error_response(403, "WebSocket connection rejected by the application")
                return
            if state is WS_OPEN:
                self._close_message(*close_args(message))
                return
        elif kind == "websocket.http.response.start" or kind == "websocket.http.response.body":
            if state is WS_CONNECTING or state is WS_DENYING:
                self._send_denial(message, kind)
                return
        if self._is_ws_cycle and (state is WS_CLOSING or state is CLOSED):
            raise ClientDisconnected(f"cannot send {kind!r}: the WebSocket connection is closed")
        raise RuntimeError(f"cannot send {kind!r} in state {state.name}")

    def app_finished(self, error: BaseException | None) -> str | None:
        """The app call returned (error None) or raised. Returns a problem worth logging."""
        self._app_running = False
        problem: str | None = None
        state = self.state
        if state is HTTP:
            if not self._response_started:
                if error is None:
                    problem = "ASGI app returned without starting a response"
                self._error_response(500, "Internal Server Error")
            elif not self._response_complete:
                # The client got part of a response; only closing tells it so.
                if error is None:
                    problem = "ASGI app returned without completing the response"
                self._set_state(CLOSED)
            else:
                self._finish_http_cycle()
        elif state is WS_CONNECTING:
            if error is None:
                problem = "ASGI app returned without accepting or closing the WebSocket"
            self._error_response(500, "Internal Server Error")
        elif state is WS_DENYING:
            problem = "ASGI app returned without completing its denial response"
            self._set_state(CLOSED)
        elif state is WS_OPEN:
            if self._peer_close_pending():
                self._answer_close_now()
            elif error is None:
                self._close_from_app(1000, "")
            else:
                self._close_from_app(1011, "")
        return problem

    # -- timers and shutdown -------------------------------------------------------------------

    def timeout(self, timer: Timer) -> None:
        """The I/O layer's timer for ``timer`` fired."""
        if timer is not self.timer:
            return
        if timer is TIMER_HEAD or timer is TIMER_KEEP_ALIVE:
            self._set_state(CLOSED)
        else:
            self._ws_timeout(timer)

    def shutdown(self, code: int) -> None:
        """The server is stopping: finish HTTP work, close WebSockets with ``code``."""
        self._shutting_down = True
        state = self.state
        if state is IDLE:
            self._set_state(CLOSED)
        elif state is WS_OPEN:
            if self._peer_close_pending():
                self._answer_close_now()
            else:
                self._close_from_app(code, "")
                self._queue_ws_disconnect(code, "")

    # -- HTTP ----------------------------------------------------------------------------------

    @property
    def _is_ws_cycle(self) -> bool:
        return self._ws_key != b""

    @property
    def _is_http_cycle(self) -> bool:
        return self._ws_key == b"" and self.method != b""

    def _process_http(self) -> None:
        conn = self._h11
        assert conn is not None
        while True:
            state = self.state
            if state is CLOSED or state is WS_OPEN:
                return
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._start_request(
                    event.method, event.target, event.http_version, list(event.headers)
                )
            elif isinstance(event, h11.Data):
                if state is HTTP:
                    self._queue_body(bytes(event.data), more_body=True)
            elif isinstance(event, h11.EndOfMessage):
                if state is HTTP:
                    self._queue_body(b"", more_body=False)
            elif isinstance(event, h11.ConnectionClosed):
                self.connection_lost()
                return

    def _h11_has_buffered(self) -> bool:
        conn = self._h11
        return conn is not None and bool(conn.trailing_data[0])

    def _start_request(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: Headers,
        fields: Fields | None = None,
    ) -> None:
        """A request head from h11, or from the fast path with its handshake fields."""
        self.method = method
        self.http_version = http_version
        self.path = target.decode("latin-1")  # as sent, until the scope decodes it
        self.status = None
        self.close_code = None
        self._ws_key = b""
        self._response = None
        self._response_started = False
        self._response_complete = False
        self._disconnect_queued = False
        self.inbox.clear()
        # h11 bounds only a head still arriving; one that came whole in a read is measured here
        # (request line and header lines, as sent, give or take white space).
        config = self.config
        if fields is None:
            # From h11 (the fast path takes no head over the limit).
            limit = config.h11_max_incomplete_event_size
            size = len(method) + len(target) + 13 + 4 * len(headers)
            for name, value in headers:
                size += len(name) + len(value)
            if size > limit:
                self._error_response(431, f"request head too large (the limit is {limit} bytes)")
                return
        if len(headers) > config.max_header_count:
            self._error_response(
                431,
                f"too many header fields: {len(headers)} (the limit is {config.max_header_count})",
            )
            return
        scope = request_scope(
            target,
            http_version,
            headers,
            root_path=config.root_path,
            client=self.client,
            server=self.server,
            lifespan_state=self.lifespan_state,
        )
        self.path = scope["path"]
        if fields is None:
            fields = handshake_fields(headers)
            upgrade = is_upgrade_request(fields)
        else:
            upgrade = True  # The fast path hands over upgrade requests only, checked.
        if upgrade:
            try:
                self._ws_key = validate_upgrade(method, http_version, fields)
            except HandshakeError as exc:
                self._ws_key = b""
                self._upgrade_refused = True
                self._error_response(exc.status, exc.reason, exc.headers)
                return
            self._subprotocols = parse_subprotocols(fields)
            make_websocket_scope(scope, self._subprotocols, secure=self.secure)
            offers = fields.get(b"sec-websocket-extensions")
            self._extension_offers = [v.decode("latin-1") for v in offers] if offers else _EMPTY
            self._set_state(WS_CONNECTING)  # no timer: the app decides how long it takes
            self.inbox.append({"type": "websocket.connect"})
        else:
            make_http_scope(scope, method, secure=self.secure)
            self._set_state(HTTP)
        self._scope = scope

    def _queue_body(self, body: bytes, more_body: bool) -> None:
        inbox = self.inbox
        if not more_body:
            # Fold the end into the last chunk when the app has not read it yet.
            if inbox and type(inbox[-1]) is dict:
                last = inbox[-1]
                if last.get("type") == "http.request" and last.get("more_body"):
                    last["more_body"] = False
                    return
        inbox.append({"type": "http.request", "body": body, "more_body": more_body})

    def _send_http(self, message: ASGIMessage, kind: str) -> None:
        if self.state is CLOSED:
            return  # ASGI HTTP 2.3: the client left, send() is a no-op.
        if kind == "http.response.start":
            if self._response is not None or self._response_started:
                raise RuntimeError(f"cannot send {kind!r} twice in state {self.state.name}")
            status = message.get("status")
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise RuntimeError(f"invalid status in {kind!r}: {status!r}")
            headers = check_headers(message.get("headers", []), kind)
            self._response = h11.Response(
                status_code=status,
                headers=self._with_server_headers(headers),
                reason=reason_phrase(status),
            )
            self.status = status
            return
        # http.response.body
        if self._response is None and not self._response_started:
            raise RuntimeError(
                f"cannot send {kind!r} before 'http.response.start' in state {self.state.name}"
            )
        if self._response_complete:
            raise RuntimeError(f"cannot send {kind!r} after the response is complete")
        body = message.get("body", b"")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise RuntimeError(f"'body' in {kind!r} must be bytes, not {type(body).__name__}")
        more_body = bool(message.get("more_body", False))
        if self._response is not None:
            response = self._response
            self._response = None
            if not more_body and self.method != b"HEAD":
                names = {name for name, _ in response.headers}
                if (
                    b"content-length" not in names
                    and b"transfer-encoding" not in names
                    and response.status_code not in (204, 304)
                    and response.status_code >= 200
                ):
                    response = h11.Response(
                        status_code=response.status_code,
                        headers=[*response.headers, (b"content-length", b"%d" % len(body))],
                        reason=response.reason,
                    )
            self._response_started = True
            if self._shutting_down:
                response = h11.Response(
                    status_code=response.status_code,
                    headers=[*response.headers, (b"connection", b"close")],
                    reason=response.reason,
                )
            self._h11_send(response)
        if body and self.method != b"HEAD":
            self._h11_send(h11.Data(data=bytes(body)))
        if not more_body:
            self._response_complete = True
            self._h11_send(h11.EndOfMessage())
            self._finish_http_cycle()

    def _finish_http_cycle(self) -> None:
        conn = self._h11
        if self.state is not HTTP or conn is None or not self._response_complete:
            return
        if self._app_running:
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE and not self._shutting_down:
            conn.start_next_cycle()
            self._parked = 0
            self.inbox.clear()
            self._set_state(IDLE)
            self.method = b""
            if self._h11_has_buffered() or self.config.timeout_keep_alive <= 0:
                self._set_timer(TIMER_HEAD if self.config.timeout_handshake > 0 else TIMER_NONE)
            else:
                self._set_timer(TIMER_KEEP_ALIVE)
            self._process_http()
        else:
            # Connection: close, HTTP/1.0, an unread request body, or shutting down.
            self._set_state(CLOSED)

    def _with_server_headers(self, headers: Headers) -> Headers:
        names = {name for name, _ in headers}
        extra = [h for h in self.server_headers.headers if h[0] not in names]
        return [*headers, *extra] if extra else headers

    def _h11_send(self, event: Any) -> None:
        conn = self._h11_conn()
        try:
            data = conn.send(event)
        except h11.LocalProtocolError as exc:
            raise RuntimeError(f"invalid HTTP response: {exc}") from None
        if data:
            self.output.append(data)

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        if self.state is IDLE:
            status = exc.error_status_hint
            # h11 shows the offending bytes as a bytearray repr; keep just the bytes.
            reason = "malformed request: " + _BYTEARRAY_REPR.sub(r"\1", str(exc) or "unparsable")
            if status == 431:
                reason = (
                    "request head too large (the limit is "
                    f"{self.config.h11_max_incomplete_event_size} bytes)"
                )
            self._error_response(status, reason)
            return
        # The request body broke off while the app reads it: the app sees the client go.
        self.connection_lost()

    def _error_response(
        self,
        status: int,
        reason: str,
        headers: Headers = (),  # type: ignore[assignment]
    ) -> None:
        """Answer with a short plain-text error naming the problem, and close the connection."""
        conn = self._h11_conn()
        self.status = status
        if not self._app_running and self._scope is None:
            # Refused before any app saw it: the I/O layer logs it on the app's behalf.
            self.rejected = "websocket" if self._ws_key or self._upgrade_refused else "http"
        body = reason.encode("utf-8", "replace") + b"\n"
        all_headers = self._with_server_headers(
            [
                *headers,
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ]
        )
        try:
            response = h11.Response(
                status_code=status, headers=all_headers, reason=reason_phrase(status)
            )
            out = [conn.send(response) or b""]
            if self.method != b"HEAD":
                out.append(conn.send(h11.Data(data=body)) or b"")
            out.append(conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            # h11 gave up on this connection (a request it could not parse): write it ourselves.
            out = [raw_response(status, all_headers, body)]
        self.output.extend(chunk for chunk in out if chunk)
        self._response_started = True
        self._response_complete = True
        self._set_state(CLOSED)
        if self._is_ws_cycle:
            self._queue_ws_disconnect(1006, "")

    # -- WebSocket handshake -------------------------------------------------------------------

    def _accept(self, message: ASGIMessage) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if not isinstance(subprotocol, str):
                raise RuntimeError(
                    f"'subprotocol' in 'websocket.accept' must be a str, not "
                    f"{type(subprotocol).__name__}"
                )
            if subprotocol not in self._subprotocols:
                offered = ", ".join(repr(p) for p in self._subprotocols) or "none"
                problem = (
                    f"subprotocol {subprotocol!r} in 'websocket.accept' was not offered by the "
                    f"client (offered: {offered})"
                )
                self._error_response(500, "Internal Server Error")
                raise RuntimeError(problem)
        app_headers = message.get("headers")
        if app_headers:
            app_headers = check_field_lines(app_headers, "websocket.accept")
            for name, _ in app_headers:
                if name in _RESERVED_ACCEPT_HEADERS:
                    self._error_response(500, "Internal Server Error")
                    raise RuntimeError(
                        f"'websocket.accept' headers may not set {name.decode()!r}; "
                        "use the 'subprotocol' key for Sec-WebSocket-Protocol"
                    )
        headers: Headers = []
        if subprotocol is not None:
            headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        deflate = None
        if self._extension_offers and self.config.ws_per_message_deflate:
            negotiated = negotiate_deflate(
                self._extension_offers,
                window_bits=self.config.ws_deflate_window_bits,
                mem_level=self.config.ws_deflate_mem_level,
                client_window_bits=self.config.ws_deflate_client_window_bits,
            )
            if negotiated is not None:
                response_value, deflate = negotiated
                headers.append((b"sec-websocket-extensions", response_value.encode("latin-1")))
        if app_headers:
            headers.extend(app_headers)
        conn = self._h11
        if conn is not None and conn.their_state is not _MIGHT_SWITCH_PROTOCOL:
            self._error_response(400, "a WebSocket upgrade request cannot carry a body")
            raise RuntimeError("cannot accept: the upgrade request carried a body")
        # The 101 is written here rather than through h11, which is dropped right after: it is
        # the one response of a WebSocket connection, and h11's checks would cost more than the
        # rest of the handshake. The app's own headers were checked by check_field_lines().
        accept = accept_value(self._ws_key)
        if headers:
            lines = [_SWITCHING + accept + b"\r\n"]
            for name, value in self._with_server_headers(headers):
                lines.append(b"%s: %s\r\n" % (name, value))
            lines.append(b"\r\n")
            self.output.append(b"".join(lines))
        else:
            # Nearly every accept: no subprotocol, extension or header of the app's.
            self.output.append(b"%s%s\r\n%s\r\n" % (_SWITCHING, accept, self.server_headers.lines))
        # Bytes that came right behind the request are the start of the WebSocket stream.
        if conn is None:
            trailing: bytes | bytearray = self._early
            self._head = self._early = b""
        else:
            trailing = conn.trailing_data[0]
        self._h11 = None  # h11's part is over; free its buffers ...
        self._subprotocols = self._extension_offers = _EMPTY  # ... and the handshake's.
        self._parked = 0
        self.status = 101
        self._codec = FrameCodec(max_size=self.config.ws_max_size, deflate=deflate)
        self._set_state(WS_OPEN)
        if self._shutting_down:
            self._close_from_app(self.config.ws_shutdown_code, "")
            self._queue_ws_disconnect(self.config.ws_shutdown_code, "")
            return
        self._set_timer(TIMER_PING if self.config.ws_ping_interval > 0 else TIMER_NONE)
        if trailing:
            # Bytes that came right behind the request belong to the WebSocket.
            self._receive_frames(bytes(trailing))

    def _send_denial(self, message: ASGIMessage, kind: str) -> None:
        if kind == "websocket.http.response.start":
            if self.state is WS_DENYING:
                raise RuntimeError(f"cannot send {kind!r} twice in state {self.state.name}")
            status = message.get("status")
            if not isinstance(status, int) or not 100 <= status <= 999 or status == 101:
                raise RuntimeError(f"invalid status in {kind!r}: {status!r}")
            headers = check_headers(message.get("headers", []), kind)
            names = {name for name, _ in headers}
            if b"connection" not in names:
                headers = [*headers, (b"connection", b"close")]
            self.status = status
            self._h11_send(
                h11.Response(
                    status_code=status,
                    headers=self._with_server_headers(headers),
                    reason=reason_phrase(status),
                )
            )
            self._set_state(WS_DENYING)
            return
        if self.state is not WS_DENYING:
            raise RuntimeError(
                f"cannot send {kind!r} before 'websocket.http.response.start' in state "
                f"{self.state.name}"
            )
        body = message.get("body", b"")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise RuntimeError(f"'body' in {kind!r} must be bytes, not {type(body).__name__}")
        if body:
            self._h11_send(h11.Data(data=bytes(body)))
        if not message.get("more_body", False):
            self._h11_send(h11.EndOfMessage())
            self._set_state(CLOSED)
            self._queue_ws_disconnect(1006, "")

    # -- WebSocket data --------------------------------------------------------------------------
