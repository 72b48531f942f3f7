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

from typing import Any, Final

import h11

from .asgi import ASGIMessage, Headers, Scope, queue_body, ws_disconnect
from .config import Config
from .fasthead import RequestHead
from .frames import CloseCode, FrameCodec
from .handshake import (
    AcceptError,
    Fields,
    Upgrade,
    accept_headers,
    switching_protocols,
)
from .http11 import CLOSED, END, LAST_END, Wire, bad_request_reason
from .limits import Slot
from .protocol import UNCHANGED, AccessRecord, ServerHeaders, scope_record
from .reassembly import BufferPool
from .request import Peer, Refusal, open_request
from .responder import Responder
from .states import (
    APP_DONE,
    APP_NONE,
    APP_PENDING,
    APP_RUNNING,
    CYCLE_HTTP,
    CYCLE_NONE,
    CYCLE_WEBSOCKET,
    HTTP,
    HTTP_CLOSED,
    IDLE,
    TIMER_HEAD,
    TIMER_KEEP_ALIVE,
    TIMER_NONE,
    UPGRADED,
    WS_CONNECTING,
    WS_DENYING,
    ClientDisconnected,
    HTTPState,
    Response,
    Timer,
)
from .websocket import WebSocketConnection

__all__ = ["HTTPConnection"]

_NOTHING: list[bytes] = []
Address = tuple[str, int] | list[Any] | None  # (host, port); None on a Unix socket's client
_NO_RESPONSE: Final = Response.NONE
_HELD: Final = Response.HELD
_STREAMING: Final = Response.STREAMING
_COMPLETE: Final = Response.COMPLETE
_ABNORMAL: Final = CloseCode.ABNORMAL_CLOSURE.value  # RFC 6455 §7.4.1: to the app only


class HTTPConnection(Peer):
    """One HTTP/1.1 connection, until its last request cycle or the 101. It is itself the
    :class:`~asgiws.request.Peer` its requests are opened with (one object less per connection)."""

    # Thousands of these sit idle at once: no per-instance __dict__.
    __slots__ = (
        "_app", "_cycle", "_disconnect_queued", "_refused", "_reply", "_scope", "_shutdown",
        "_upgrade", "_wire", "http_version", "inbox", "max_queue", "path", "pool",
        "server_headers", "state", "timer", "timer_epoch", "upgraded",
    )  # fmt: skip

    def __init__(
        self, config: Config, client: Address, server: Address, scheme: str = "http",
        server_headers: ServerHeaders | None = None, lifespan_state: dict[str, Any] | None = None,
        pool: BufferPool | None = None, slot: Slot | None = None, tls: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        # What every request on this connection shares (request.Peer's attributes).
        self.config = config
        self.client = client
        self.server = server
        self.secure = scheme == "https"
        self.lifespan_state = lifespan_state
        self.slot = slot  # this connection's place under --limit-* (asgiws.limits)
        self.tls = tls  # the ASGI TLS extension of a TLS connection, for every scope
        self.server_headers = server_headers or ServerHeaders()
        self.pool = pool  # large-frame buffers, shared by the server's connections

        self.state = IDLE
        self.timer = TIMER_HEAD if config.timeout_handshake > 0 else TIMER_NONE
        self.timer_epoch = 0
        self.upgraded: WebSocketConnection | None = None

        self._wire = wire = Wire(config.h11_max_incomplete_event_size)  # fast path, h11 behind
        # What goes out (data_to_send() takes it), and the response state of each cycle.
        self._reply = Responder(wire, self.server_headers)
        # Messages for the app (next_message() takes them). A list, not a deque: an empty deque
        # costs 600 bytes more per connection.
        self.inbox: list[ASGIMessage] = []
        self.max_queue = config.max_queue
        # The server is draining: no next cycle, and a WebSocket accepted from now on is closed
        # at once, with the code and reason shutdown() was given (1012 on a restart).
        self._shutdown: tuple[int, str] | None = None

        # The current request cycle.
        self._cycle = CYCLE_NONE
        self._app = APP_NONE
        self._scope: Scope | None = None  # the cycle's scope, for next_scope() and its record
        self._disconnect_queued = False  # exactly one disconnect per cycle
        self._refused: AccessRecord | None = None  # a request no app saw, for its access line
        self.path = ""
        self.http_version = b"1.1"
        self._upgrade: Upgrade | None = None  # what an upgrade request offered

    # -- bytes in ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> bool:
        """Feed bytes read from the socket. They may be a view of a read buffer that is reused
        once this returns: whatever is kept is copied. Always True: the I/O layer steps."""
        if type(data) is not bytes:
            data = bytes(data)
        state = self.state
        if state is HTTP_CLOSED or state is UPGRADED:
            return True
        wire = self._wire
        if wire.fast:
            # The rest of a body, or a next request behind this one: the fast path's.
            body = wire.fast_body(data)
            if body is not None and state is HTTP:
                queue_body(self.inbox, body[0], body[1])  # (no star-call: slow on 3.11)
            return True
        if wire.taken and wire.hold(data):
            return True  # Bytes behind an upgrade request the app has not answered yet.
        if state is IDLE:
            taken = wire.fast_head(data)
            if taken is not None:
                head, fields, upgrading = taken
                self._start_request(
                    head.method, head.target, head.http_version, head.headers, fields, upgrading
                )
                if wire.fast and self.state is HTTP:
                    body = wire.head_body()
                    if body is not None:  # (queue_body, inline: the inbox is empty in IDLE)
                        self.inbox.append(
                            {"type": "http.request", "body": body[0], "more_body": body[1]}
                        )
                return True
        if self.timer is TIMER_KEEP_ALIVE and data:
            # The next request has begun: its head must now arrive within timeout_handshake.
            self._set_timer(TIMER_HEAD if self.config.timeout_handshake > 0 else TIMER_NONE)
        wire.receive(data, in_cycle=state is not IDLE)
        self._process_http()
        return True

    def connection_lost(self) -> AccessRecord | None:
        """The transport is gone (EOF, reset, or closed by us). Returns the access record of a
        request refused before any app saw it, once."""
        refused, self._refused = self._refused, None
        state = self.state
        if state is UPGRADED:
            return refused
        if state is not HTTP_CLOSED:
            self._set_state(HTTP_CLOSED)
        if self._app is APP_NONE or self._app is APP_DONE or self._disconnect_queued:
            return refused
        self._disconnect_queued = True
        if self._cycle is CYCLE_WEBSOCKET:
            self.inbox.append(ws_disconnect(_ABNORMAL))
        else:
            self.inbox.append({"type": "http.disconnect"})
        return refused

    # -- bytes out -----------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """The buffers to write, in order, taken out of the connection."""
        reply = self._reply  # its output taken here, not by a call: this runs at every I/O step
        out = reply.output
        if not out:
            return _NOTHING
        reply.output = []
        return out

    @property
    def status(self) -> int | None:
        """The response status sent in this cycle (101 once accepted)."""
        return self._reply.status

    def reading_paused(self) -> bool:
        """True while the I/O layer should stop reading: the app is behind, or h11 is paused."""
        # Bytes behind the current request (a pipelined request, early WebSocket frames) wait
        # until this cycle is done, up to the size of one request head.
        return len(self.inbox) >= self.max_queue or self._wire.parked > self._wire.limit

    # -- scopes and messages for the app ---------------------------------------------------------

    def next_scope(self) -> Scope | None:
        """A scope to start the app with, once per request cycle."""
        if self._app is not APP_PENDING:
            return None
        self._app = APP_RUNNING
        return self._scope

    def next_message(self) -> ASGIMessage | None:
        """The next message for the app's ``receive()``, or None when it must wait for more."""
        inbox = self.inbox
        if inbox:
            return inbox.pop(0)
        if self._cycle is CYCLE_WEBSOCKET:
            if self._disconnect_queued:
                raise ClientDisconnected(
                    "receive() called after 'websocket.disconnect' was delivered"
                )
            return None
        if self.state is HTTP_CLOSED or self._reply.state is _COMPLETE or self._disconnect_queued:
            # The client left, or the response is sent: nothing more comes but the end.
            self._disconnect_queued = True
            return {"type": "http.disconnect"}
        if self._wire.waiting_for_100_continue:
            self._reply.continue_100()
        return None

    # -- messages from the app -----------------------------------------------------------------

    def send(self, message: ASGIMessage) -> int:
        """Take one message from the app; raise RuntimeError when it is not allowed now.
        Returns how many messages wait for the app."""
        if type(message) is not dict:
            raise RuntimeError(f"an ASGI message must be a dict, not {type(message).__name__}")
        kind = message.get("type")
        state = self.state
        if kind == "http.response.body":
            if state is HTTP:
                if self._reply.body(message, kind) and self._app is not APP_RUNNING:
                    self._finish_http_cycle()  # (a running app's cycle ends when it returns)
                return len(self.inbox)
            if state is HTTP_CLOSED and self._cycle is CYCLE_HTTP:
                return 0  # The client left: in ASGI HTTP 2.3 send() is then a no-op.
        elif kind == "http.response.start":
            if state is HTTP:
                reply = self._reply
                reply.start(message, kind)
                return UNCHANGED if not reply.output else len(self.inbox)  # held
            if state is HTTP_CLOSED and self._cycle is CYCLE_HTTP:
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
        elif kind == "websocket.http.response.start":
            if state is WS_CONNECTING or state is WS_DENYING:
                self._reply.deny_start(message, kind)
                self._set_state(WS_DENYING)
                return 0
        elif kind == "websocket.http.response.body":
            if state is WS_CONNECTING or state is WS_DENYING:
                if self._reply.deny_body(message, kind):
                    self._set_state(HTTP_CLOSED)
                    self._queue_ws_disconnect()
                return 0
        if self._cycle is CYCLE_WEBSOCKET and state is HTTP_CLOSED:
            raise ClientDisconnected(f"cannot send {kind!r}: the WebSocket connection is closed")
        raise RuntimeError(f"cannot send {kind!r} in state {state.name}")

    def app_finished(self, error: BaseException | None) -> AccessRecord:
        """The app call returned (error None) or raised: finish what it left unfinished."""
        self._app = APP_DONE
        reply = self._reply
        status = reply.status
        sent = reply.sent
        scope = self._scope  # the next cycle may begin below
        problem: str | None = None
        state = self.state
        if state is HTTP:
            response = reply.state
            if response is _NO_RESPONSE or response is _HELD:
                if error is None:
                    problem = "ASGI app returned without starting a response"
                self._error_response(500, "Internal Server Error")
            elif response is _STREAMING:
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
        if status is None:  # (the status and body of an error answer given above)
            status, sent = reply.status, reply.sent
        if scope is not None:  # (_record's first case, inline: every cycle an app ran)
            return scope_record(scope, status, problem, sent)
        record = self._record(status, problem, scope)
        record.body_bytes = sent
        return record

    # -- timers and shutdown -------------------------------------------------------------------

    def timeout(self, timer: Timer) -> None:
        """The I/O layer's timer for ``timer`` fired: no head, or no next request, in time."""
        if timer is self.timer and (timer is TIMER_HEAD or timer is TIMER_KEEP_ALIVE):
            self._set_state(HTTP_CLOSED)

    def shutdown(self, code: int, reason: str = "") -> None:
        """The server is stopping: finish HTTP work; a WebSocket accepted from now on is
        closed with the shutdown code at once."""
        if self._shutdown is None:
            self._shutdown = (code, reason)
            self._reply.close = True
        if self.state is IDLE and self.timer is not TIMER_HEAD:
            # Idle between requests (keep-alive): closed now, as RFC 9112 §9.6 allows. A
            # connection whose request head is expected (just accepted, or part of the head
            # read) is not: its client may have sent the request already, and under --workers a
            # rolling restart must not lose it. It gets its answer, with Connection: close, or
            # the head timeout (--timeout-handshake) closes it.
            self._set_state(HTTP_CLOSED)

    # -- request cycles --------------------------------------------------------------------------

    def _process_http(self) -> None:
        wire = self._wire
        if wire.problem is not None and self.state is IDLE:
            self._error_response(400, wire.problem)  # before h11 may read the head otherwise
            return
        while True:
            state = self.state
            if state is HTTP_CLOSED or state is UPGRADED:
                return
            try:
                event = wire.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is None:
                return  # more bytes are needed
            if type(event) is bytes:
                if state is HTTP:
                    queue_body(self.inbox, event, True)
            elif event is END or event is LAST_END:
                if state is HTTP:
                    queue_body(self.inbox, b"", False)
                if event is LAST_END:
                    return  # nothing behind the last request is read
            elif event is CLOSED:
                self.connection_lost()
                return
            else:
                assert type(event) is RequestHead
                self._start_request(event.method, event.target, event.http_version, event.headers)

    def _start_request(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: Headers,
        fields: Fields | None = None,
        upgrading: bool = False,
    ) -> None:
        """A request head from h11, or from the fast path with its handshake fields (and
        whether it asks for a WebSocket). The cycle's other state is as __init__ or
        _finish_http_cycle left it."""
        self._reply.method = method
        self.http_version = http_version
        self._cycle = CYCLE_HTTP
        try:
            scope, upgrade = open_request(
                method, target, http_version, headers, fields, upgrading, self
            )
        except Refusal as refusal:
            self.path = target.decode("latin-1")  # as sent (open_request does not read it)
            if refusal.websocket:
                self._cycle = CYCLE_WEBSOCKET
                self.path = refusal.path or self.path
            self._scope = refusal.scope  # built before a --limit-* refusal: its client is shown
            self._error_response(refusal.status, refusal.reason, refusal.headers)
            return
        self.path = scope["path"]
        if upgrade is not None:
            self._cycle = CYCLE_WEBSOCKET
            self._upgrade = upgrade
            self._set_state(WS_CONNECTING)  # no timer: the app decides how long it takes
            self.inbox.append({"type": "websocket.connect"})
        else:
            self._set_state(HTTP)
        self._scope = scope
        self._app = APP_PENDING

    def _finish_http_cycle(self) -> None:
        if self.state is not HTTP or self._reply.state is not _COMPLETE or self._app is APP_RUNNING:
            return
        if self._shutdown is not None or not self._wire.next_cycle():
            # Connection: close, HTTP/1.0, an unread request body, or shutting down.
            self._set_state(HTTP_CLOSED)
            return
        self.inbox.clear()
        self._set_state(IDLE)
        self._reply.reset()
        self._cycle = CYCLE_NONE
        self._app = APP_NONE
        self._scope = None
        self._disconnect_queued = False
        wire = self._wire
        buffered = wire.has_buffered()
        config = self.config
        if buffered or config.timeout_keep_alive <= 0:
            self.timer = TIMER_HEAD if config.timeout_handshake > 0 else TIMER_NONE
        else:
            self.timer = TIMER_KEEP_ALIVE
        self.timer_epoch += 1  # (_set_timer's work, inline: once per request)
        if buffered:
            self.receive_data(wire.buffered())  # the next request came with the last

    # -- errors --------------------------------------------------------------------------------

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        state = self.state
        response = self._reply.state
        if state is IDLE or (state is HTTP and (response is _NO_RESPONSE or response is _HELD)):
            # A bad head; or a malformed body (a bad chunk line) before the response began:
            # the client is told why, and the app reading the body gets http.disconnect.
            limit = self.config.h11_max_incomplete_event_size
            self._error_response(exc.error_status_hint, bad_request_reason(exc, limit))
            return
        # The request body broke off after the response began: the app sees the client go.
        self.connection_lost()

    def _error_response(
        self,
        status: int,
        reason: str,
        headers: Headers = (),  # type: ignore[assignment]
    ) -> None:
        """Answer with a short plain-text error naming the problem, and close the connection."""
        reply = self._reply
        reply.error(status, reason, headers)
        if self._app is APP_NONE:
            # Refused before any app saw it: the access line is the core's to give.
            self._refused = self._record(status, None, self._scope)
            self._refused.body_bytes = reply.sent
        self._set_state(HTTP_CLOSED)
        if self._cycle is CYCLE_WEBSOCKET and self._app is not APP_NONE:
            self._queue_ws_disconnect()

    def _queue_ws_disconnect(self) -> None:
        """The WebSocket cycle ended before the 101: the app hears 1006, once."""
        if not self._disconnect_queued:
            self._disconnect_queued = True
            self.inbox.append(ws_disconnect(_ABNORMAL))

    def _record(self, status: int | None, problem: str | None, scope: Scope | None) -> AccessRecord:
        """The access record of a cycle: from its scope, or from the refused request's head."""
        if scope is not None:
            return scope_record(scope, status, problem)
        kind = "websocket" if self._cycle is CYCLE_WEBSOCKET else "http"
        method, version = self._reply.method, self.http_version
        return AccessRecord.of_head(kind, self.client, method, self.path, version, status)

    # -- the WebSocket handshake -----------------------------------------------------------------

    def _accept(self, message: ASGIMessage) -> None:
        config = self.config
        upgrade = self._upgrade
        assert upgrade is not None
        key, subprotocols, extension_offers, body = upgrade
        if len(message) == 1 and not extension_offers:
            # The plain accept ({"type": "websocket.accept"}, nothing offered to negotiate):
            # accept_headers' answer, no headers and no compression, without the call.
            headers: list[tuple[bytes, bytes]] = []
            deflate = None
        else:
            try:
                headers, deflate = accept_headers(message, subprotocols, extension_offers, config)
            except AcceptError:
                self._error_response(500, "Internal Server Error")
                raise
        if body or self._wire.body_pending:
            self._error_response(400, "a WebSocket upgrade request cannot carry a body")
            raise RuntimeError("cannot accept: the upgrade request carried a body")
        reply = self._reply
        reply.status = 101
        output = reply.output  # all of it goes to the WebSocketConnection, the 101 last
        output.append(switching_protocols(key, headers, self.server_headers))
        reply.output = []
        # Bytes that came right behind the request are the start of the WebSocket stream.
        trailing = self._wire.switch()
        self._upgrade = None  # the handshake's part is over
        # A websocket.connect the app has not read yet stays first in the inbox.
        inbox, self.inbox = self.inbox, []
        self.upgraded = WebSocketConnection(
            config,
            FrameCodec(config.ws_max_size, deflate, self.pool),
            output,
            inbox,  # type: ignore[arg-type]  # the same items: messages, no PendingClose yet
            self._scope,  # type: ignore[arg-type]  # set with the upgrade request
            self.timer_epoch + 1,
            self._shutdown,
            trailing,
        )
        self._set_state(UPGRADED)

    # -- state ---------------------------------------------------------------------------------

    def _set_state(self, state: HTTPState) -> None:
        """The only writer of ``state`` (see ``states.HTTP_TRANSITIONS``)."""
        self.state = state
        if state is not IDLE:  # (in HTTP_NO_TIMER, all but IDLE: test_states; ``in`` is slower)
            self.timer = TIMER_NONE  # (_set_timer's work, inline: at every request's start)
            self.timer_epoch += 1

    def _set_timer(self, timer: Timer) -> None:
        self.timer = timer
        self.timer_epoch += 1
