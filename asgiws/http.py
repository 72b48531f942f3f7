"""The HTTP/1.1 phase of a connection: request heads in, ASGI ``http`` cycles, and the WebSocket
handshake up to the app's accept or denial.

:class:`HTTPConnection` owns the bytes until its last cycle ends or the app accepts an upgrade.
A whole plain upgrade head that arrives in one read is taken by the strict fast path
(:mod:`asgiws.fasthead`); everything else goes through h11, created on first need. On
``websocket.accept`` it writes the 101 and builds a
:class:`~asgiws.websocket.WebSocketConnection` with the bytes that came behind the request (not
one may be lost), then offers it as :attr:`HTTPConnection.upgraded`; its own state becomes
``UPGRADED``. Sans-IO: no asyncio, no clock, no socket.
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
    make_http_scope,
    make_websocket_scope,
    raw_response,
    reason_phrase,
    request_scope,
    ws_disconnect,
)
from .config import Config
from .deflate import negotiate as negotiate_deflate
from .fasthead import parse_head
from .frames import FrameCodec
from .handshake import (
    Fields,
    HandshakeError,
    handshake_fields,
    is_upgrade_request,
    parse_subprotocols,
    switching_protocols,
    validate_upgrade,
)
from .protocol import AccessRecord, ServerHeaders
from .states import (
    HTTP,
    HTTP_CLOSED,
    HTTP_NO_TIMER,
    IDLE,
    TIMER_HEAD,
    TIMER_KEEP_ALIVE,
    TIMER_NONE,
    UPGRADED,
    WS_CONNECTING,
    WS_DENYING,
    App,
    ClientDisconnected,
    Cycle,
    HTTPState,
    Response,
    Timer,
)
from .websocket import WebSocketConnection

__all__ = ["HTTPConnection"]

# Headers the server computes for the 101 response; the app may not set them.
_RESERVED_ACCEPT_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-accept", b"sec-websocket-extensions"}
)
# A documented h11 state (h11's docs list it with DONE and the rest) that its __all__ leaves out.
_MIGHT_SWITCH_PROTOCOL = h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]
_H11_WAITING = (h11.DONE, _MIGHT_SWITCH_PROTOCOL)
_BYTEARRAY_REPR = re.compile(r"bytearray\((b'.*?')\)")
_EMPTY: list[str] = []
_EMPTY_OUTPUT: list[bytes] = []
_ABNORMAL = 1006  # RFC 6455 §7.4.1: reported to the app only, never sent


class HTTPConnection:
    """One HTTP/1.1 connection, until its last request cycle or the 101."""

    # Thousands of these sit idle at once: no per-instance __dict__.
    __slots__ = (
        "_app",
        "_cycle",
        "_disconnect_queued",
        "_early",
        "_extension_offers",
        "_h11",
        "_head",
        "_output",
        "_parked",
        "_refused",
        "_response",
        "_response_event",
        "_scope",
        "_shutting_down",
        "_subprotocols",
        "_ws_key",
        "client",
        "config",
        "http_version",
        "inbox",
        "lifespan_state",
        "max_queue",
        "method",
        "path",
        "secure",
        "server",
        "server_headers",
        "state",
        "status",
        "timer",
        "timer_epoch",
        "upgraded",
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
        self.upgraded: WebSocketConnection | None = None

        # h11 is created on the first bytes that the fast path (asgiws.fasthead) does not take,
        # or when a response has to go through it; an accepted WebSocket may never need it.
        self._h11: h11.Connection | None = None
        self._head = b""  # a request head the fast path took, until the 101 or h11 needs it
        self._early = b""  # bytes that came behind that head, before the 101
        # Bytes to write (data_to_send() takes them) and messages for the app (next_message()
        # takes them). A list, not a deque: an empty deque costs 600 bytes more per connection.
        self._output: list[bytes] = []
        self.inbox: list[ASGIMessage] = []
        self.max_queue = config.max_queue
        self._parked = 0  # bytes received behind the current request, waiting in h11
        self._shutting_down = False  # the server is draining: no next cycle, no new WebSocket

        # The current request cycle.
        self._cycle = Cycle.NONE
        self._app = App.NONE
        self._scope: Scope | None = None  # the cycle's scope, for next_scope() and its record
        self._disconnect_queued = False  # exactly one disconnect per cycle
        self._refused: AccessRecord | None = None  # a request no app saw, for its access line
        self.method = b""
        self.path = ""
        self.http_version = b"1.1"
        self.status: int | None = None  # the response status sent
        self._ws_key = b""
        self._subprotocols: list[str] = []
        self._extension_offers: list[str] = []
        self._response = Response.NONE
        self._response_event: h11.Response | None = None  # http.response.start, while HELD

    # -- bytes in ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> bool:
        """Feed bytes read from the socket. They may be a view of a read buffer that is reused
        once this returns: whatever is kept is copied. Always True: the I/O layer steps."""
        if type(data) is not bytes:
            data = bytes(data)
        state = self.state
        if state is HTTP_CLOSED or state is UPGRADED:
            return True
        conn = self._h11
        if conn is None:
            if self._head:
                if data:
                    # Bytes behind an upgrade request the app has not answered yet.
                    self._early += data
                    self._parked += len(data)
                    return True
            elif state is IDLE and self._fast_request(data):
                return True
            conn = self._h11_conn()
        if self.timer is TIMER_KEEP_ALIVE and data:
            # The next request has begun: its head must now arrive within timeout_handshake.
            self._set_timer(TIMER_HEAD if self.config.timeout_handshake > 0 else TIMER_NONE)
        if state is not IDLE and conn.their_state in _H11_WAITING:
            self._parked += len(data)
        conn.receive_data(data)
        self._process_http()
        return True

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

    def connection_lost(self) -> AccessRecord | None:
        """The transport is gone (EOF, reset, or closed by us). Returns the access record of a
        request refused before any app saw it, once."""
        refused, self._refused = self._refused, None
        state = self.state
        if state is UPGRADED:
            return refused
        if state is not HTTP_CLOSED:
            self._set_state(HTTP_CLOSED)
        if self._app is App.NONE or self._app is App.DONE or self._disconnect_queued:
            return refused
        self._disconnect_queued = True
        if self._cycle is Cycle.WEBSOCKET:
            self.inbox.append(ws_disconnect(_ABNORMAL))
        else:
            self.inbox.append({"type": "http.disconnect"})
        return refused

    # -- bytes out -----------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """The buffers to write, in order, taken out of the connection."""
        out = self._output
        if not out:
            return _EMPTY_OUTPUT
        self._output = []
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
        if self._app is not App.PENDING:
            return None
        self._app = App.RUNNING
        return self._scope

    def next_message(self) -> ASGIMessage | None:
        """The next message for the app's ``receive()``, or None when it must wait for more."""
        inbox = self.inbox
        if inbox:
            return inbox.pop(0)
        if self._cycle is Cycle.WEBSOCKET:
            if self._disconnect_queued:
                raise ClientDisconnected(
                    "receive() called after 'websocket.disconnect' was delivered"
                )
            return None
        if (
            self.state is HTTP_CLOSED
            or self._response is Response.COMPLETE
            or self._disconnect_queued
        ):
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

    def send(self, message: ASGIMessage) -> int:
        """Take one message from the app; raise RuntimeError when it is not allowed now.
        Returns how many messages wait for the app."""
        if type(message) is not dict:
            raise RuntimeError(f"an ASGI message must be a dict, not {type(message).__name__}")
        kind = message.get("type")
        state = self.state
        if kind == "http.response.start" or kind == "http.response.body":
            if state is HTTP:
                self._send_http(message, kind)
                return len(self.inbox)
            if state is HTTP_CLOSED and self._cycle is Cycle.HTTP:
                return 0  # The client left: in ASGI HTTP 2.3 send() is then a no-op.
        elif kind == "websocket.accept":
            if state is WS_CONNECTING:
                self._accept(message)
                return 0
        elif kind == "websocket.close":
            if state is WS_CONNECTING:
                # ASGI: close before accept rejects the handshake with 403.
                self._error_response(403, "WebSocket connection rejected by the application")
                return 0
        elif kind == "websocket.http.response.start" or kind == "websocket.http.response.body":
            if state is WS_CONNECTING or state is WS_DENYING:
                self._send_denial(message, kind)
                return 0
        if self._cycle is Cycle.WEBSOCKET and state is HTTP_CLOSED:
            raise ClientDisconnected(f"cannot send {kind!r}: the WebSocket connection is closed")
        raise RuntimeError(f"cannot send {kind!r} in state {state.name}")

    def app_finished(self, error: BaseException | None) -> AccessRecord:
        """The app call returned (error None) or raised: finish what it left unfinished."""
        self._app = App.DONE
        status = self.status
        scope = self._scope  # the next cycle may begin below
        problem: str | None = None
        state = self.state
        if state is HTTP:
            if self._response is Response.NONE or self._response is Response.HELD:
                if error is None:
                    problem = "ASGI app returned without starting a response"
                self._error_response(500, "Internal Server Error")
            elif self._response is Response.STREAMING:
                # The client got part of a response; only closing tells it so.
                if error is None:
                    problem = "ASGI app returned without completing the response"
                self._set_state(HTTP_CLOSED)
            else:
                self._finish_http_cycle()
        elif state is WS_CONNECTING:
            if error is None:
                problem = "ASGI app returned without accepting or closing the WebSocket"
            self._error_response(500, "Internal Server Error")
        elif state is WS_DENYING:
            problem = "ASGI app returned without completing its denial response"
            self._set_state(HTTP_CLOSED)
        elif state is UPGRADED:
            assert self.upgraded is not None
            return self.upgraded.app_finished(error)
        return self._record(status if status is not None else self.status, problem, scope)

    # -- timers and shutdown -------------------------------------------------------------------

    def timeout(self, timer: Timer) -> None:
        """The I/O layer's timer for ``timer`` fired: no head, or no next request, in time."""
        if timer is self.timer and (timer is TIMER_HEAD or timer is TIMER_KEEP_ALIVE):
            self._set_state(HTTP_CLOSED)

    def shutdown(self, code: int) -> None:
        """The server is stopping: finish HTTP work; a WebSocket accepted from now on is
        closed with the shutdown code at once."""
        self._shutting_down = True
        if self.state is IDLE:
            self._set_state(HTTP_CLOSED)

    # -- request cycles --------------------------------------------------------------------------

    def _process_http(self) -> None:
        conn = self._h11
        assert conn is not None
        while True:
            state = self.state
            if state is HTTP_CLOSED or state is UPGRADED:
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
        self._cycle = Cycle.HTTP
        self._app = App.NONE
        self._ws_key = b""
        self._response = Response.NONE
        self._response_event = None
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
            self._cycle = Cycle.WEBSOCKET
            try:
                self._ws_key = validate_upgrade(method, http_version, fields)
            except HandshakeError as exc:
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
        self._app = App.PENDING

    def _queue_body(self, body: bytes, more_body: bool) -> None:
        inbox = self.inbox
        if not more_body:
            # Fold the end into the last chunk when the app has not read it yet.
            if inbox:
                last = inbox[-1]
                if last.get("type") == "http.request" and last.get("more_body"):
                    last["more_body"] = False
                    return
        inbox.append({"type": "http.request", "body": body, "more_body": more_body})

    def _send_http(self, message: ASGIMessage, kind: str) -> None:
        if kind == "http.response.start":
            if self._response is not Response.NONE:
                raise RuntimeError(f"cannot send {kind!r} twice in state {self.state.name}")
            status = message.get("status")
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise RuntimeError(f"invalid status in {kind!r}: {status!r}")
            headers = check_headers(message.get("headers", []), kind)
            self._response_event = h11.Response(
                status_code=status,
                headers=self.server_headers.merged(headers),
                reason=reason_phrase(status),
            )
            self._response = Response.HELD
            self.status = status
            return
        # http.response.body
        if self._response is Response.NONE:
            raise RuntimeError(
                f"cannot send {kind!r} before 'http.response.start' in state {self.state.name}"
            )
        if self._response is Response.COMPLETE:
            raise RuntimeError(f"cannot send {kind!r} after the response is complete")
        body = message.get("body", b"")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise RuntimeError(f"'body' in {kind!r} must be bytes, not {type(body).__name__}")
        more_body = bool(message.get("more_body", False))
        if self._response is Response.HELD:
            response = self._response_event
            assert response is not None
            self._response_event = None
            extra: Headers = []
            if not more_body and self.method != b"HEAD":
                names = {name for name, _ in response.headers}
                if (
                    b"content-length" not in names
                    and b"transfer-encoding" not in names
                    and response.status_code not in (204, 304)
                    and response.status_code >= 200
                ):
                    extra.append((b"content-length", b"%d" % len(body)))
            if self._shutting_down:
                extra.append((b"connection", b"close"))
            if extra:
                response = h11.Response(
                    status_code=response.status_code,
                    headers=[*response.headers, *extra],
                    reason=response.reason,
                )
            self._response = Response.STREAMING
            self._h11_send(response)
        if body and self.method != b"HEAD":
            self._h11_send(h11.Data(data=bytes(body)))
        if not more_body:
            self._response = Response.COMPLETE
            self._h11_send(h11.EndOfMessage())
            self._finish_http_cycle()

    def _finish_http_cycle(self) -> None:
        conn = self._h11
        if (
            self.state is not HTTP
            or conn is None
            or self._response is not Response.COMPLETE
            or self._app is App.RUNNING
        ):
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE and not self._shutting_down:
            conn.start_next_cycle()
            self._parked = 0
            self.inbox.clear()
            self._set_state(IDLE)
            self.method = b""
            self._cycle = Cycle.NONE
            self._app = App.NONE
            self._scope = None
            if conn.trailing_data[0] or self.config.timeout_keep_alive <= 0:
                self._set_timer(TIMER_HEAD if self.config.timeout_handshake > 0 else TIMER_NONE)
            else:
                self._set_timer(TIMER_KEEP_ALIVE)
            self._process_http()
        else:
            # Connection: close, HTTP/1.0, an unread request body, or shutting down.
            self._set_state(HTTP_CLOSED)

    def _h11_send(self, event: Any) -> None:
        conn = self._h11_conn()
        try:
            data = conn.send(event)
        except h11.LocalProtocolError as exc:
            raise RuntimeError(f"invalid HTTP response: {exc}") from None
        if data:
            self._output.append(data)

    # -- errors --------------------------------------------------------------------------------

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
        if self._app is App.NONE:
            # Refused before any app saw it: the access line is the core's to give.
            self._refused = self._record(status, None, self._scope)
        body = reason.encode("utf-8", "replace") + b"\n"
        all_headers = self.server_headers.merged(
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
        self._output.extend(chunk for chunk in out if chunk)
        self._response = Response.COMPLETE
        self._set_state(HTTP_CLOSED)
        if self._cycle is Cycle.WEBSOCKET and self._app is not App.NONE:
            self._queue_ws_disconnect()

    def _queue_ws_disconnect(self) -> None:
        """The WebSocket cycle ended before the 101: the app hears 1006, once."""
        if not self._disconnect_queued:
            self._disconnect_queued = True
            self.inbox.append(ws_disconnect(_ABNORMAL))

    def _record(self, status: int | None, problem: str | None, scope: Scope | None) -> AccessRecord:
        """The access record of a cycle: from its scope when there is one, else from what the
        request head said."""
        kind = "websocket" if self._cycle is Cycle.WEBSOCKET else "http"
        if scope is None:
            method = self.method.decode("latin-1") or "-"
            version = self.http_version.decode("latin-1")
            return AccessRecord(kind, self.client, method, self.path or "-", version, status)
        path = scope.get("path", "")
        query = scope.get("query_string", b"")
        if query:
            path = f"{path}?{query.decode('latin-1')}"
        return AccessRecord(
            kind,
            scope.get("client"),
            scope.get("method", ""),
            path,
            scope.get("http_version", "1.1"),
            status,
            problem=problem,
        )

    # -- the WebSocket handshake -----------------------------------------------------------------

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
                self._error_response(500, "Internal Server Error")
                raise RuntimeError(
                    f"subprotocol {subprotocol!r} in 'websocket.accept' was not offered by the "
                    f"client (offered: {offered})"
                )
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
        config = self.config
        deflate = None
        if self._extension_offers and config.ws_per_message_deflate:
            negotiated = negotiate_deflate(
                self._extension_offers,
                window_bits=config.ws_deflate_window_bits,
                mem_level=config.ws_deflate_mem_level,
                client_window_bits=config.ws_deflate_client_window_bits,
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
        self._output.append(switching_protocols(self._ws_key, headers, self.server_headers))
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
        output, self._output = self._output, []
        self.upgraded = WebSocketConnection(
            config,
            FrameCodec(max_size=config.ws_max_size, deflate=deflate),
            output=output,
            inbox=[*self.inbox],  # a websocket.connect the app has not read yet stays first
            record=self._record(101, None, self._scope),
            timer_epoch=self.timer_epoch + 1,
            shutting_down=self._shutting_down,
            trailing=trailing,
        )
        self.inbox = []
        self._set_state(UPGRADED)

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
                    headers=self.server_headers.merged(headers),
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
            self._set_state(HTTP_CLOSED)
            self._queue_ws_disconnect()

    # -- state ---------------------------------------------------------------------------------

    def _set_state(self, state: HTTPState) -> None:
        """The only writer of ``state`` (see ``states.HTTP_TRANSITIONS``)."""
        self.state = state
        if state in HTTP_NO_TIMER:
            self._set_timer(TIMER_NONE)

    def _set_timer(self, timer: Timer) -> None:
        self.timer = timer
        self.timer_epoch += 1
