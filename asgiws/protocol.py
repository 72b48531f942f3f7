"""The surface between the sans-IO core and the I/O layer, written down so that mypy holds both
sides to it.

One TCP connection is served by one :class:`asgiws.http.HTTPConnection` until its last request
cycle ends or until the app accepts a WebSocket; then the HTTP side writes the 101, builds an
:class:`asgiws.websocket.WebSocketConnection` with the bytes that came behind the request, and
offers it as :attr:`SansIOConnection.upgraded`. The I/O layer swaps to it (h11 models the same
handoff with ``SWITCHED_PROTOCOL`` and ``trailing_data``). Both phases offer
:class:`SansIOConnection`; the I/O layer (:mod:`asgiws.asyncio.connection`) annotates its
connection with it and uses nothing else, so a new reach across the boundary fails the type
check.

Messages are pulled one at a time (``next_message``), not handed over in batches, because of one
rule: a peer's Close frame (or a protocol violation) is acted upon only when the app has read
every message that arrived before it, so that the app's answers to them go out ahead of our
Close frame (RFC 6455 §1.4, Autobahn|Testsuite's strict cases).

Timers are the I/O layer's: the core names the one timer that should be armed (``timer``,
changing together with ``timer_epoch``), and ``timeout(timer)`` is called when it fires.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from .asgi import ASGIMessage, Headers, Scope
from .states import ClientDisconnected, HTTPState, PendingClose, Timer, WSState

__all__ = [
    "UNCHANGED",
    "AccessRecord",
    "ClientDisconnected",
    "InPlaceReads",
    "SansIOConnection",
    "ServerHeaders",
    "scope_record",
]


# What send() returns when the message left nothing to write, no state or timer to act on.
UNCHANGED: Final = -1


class AccessRecord:
    """What the access line of one request cycle shows, returned by the core when it ends:
    ``kind`` is ``"http"`` or ``"websocket"``; ``status`` the status sent (101 for an accepted
    WebSocket, None when the client left before any); ``close_code`` how a WebSocket ended;
    ``body_bytes`` the response body bytes sent (None for an accepted WebSocket session);
    ``problem`` an app mistake worth an error line (a response never started, say).

    A record made from a scope (:meth:`of_scope`, every cycle an app ran) reads the scope only
    when a line is written: with the access log off, it costs one small object per cycle."""

    __slots__ = ("_fields", "body_bytes", "close_code", "problem", "scope", "status")

    def __init__(
        self,
        kind: str,
        client: Any,
        method: str,
        path: str,
        http_version: str,
        status: int | None,
        close_code: int | None = None,
        problem: str | None = None,
    ) -> None:
        self._fields: tuple[str, Any, str, str, str] | None = (
            kind, client, method, path, http_version,
        )  # fmt: skip
        self.scope: Scope | None = None  # the scope of a cycle an app ran
        self.status = status
        self.close_code = close_code
        self.problem = problem
        self.body_bytes: int | None = None

    @classmethod
    def of_scope(
        cls,
        scope: Scope,
        status: int | None,
        problem: str | None = None,
        body_bytes: int | None = None,
    ) -> AccessRecord:
        """The record of a cycle the app was started for: what its scope says (the core calls
        :func:`scope_record`, the same without the class method's lookup)."""
        return scope_record(scope, status, problem, body_bytes)

    @classmethod
    def of_head(
        cls, kind: str, client: Any, method: bytes, path: str, version: bytes, status: int | None
    ) -> AccessRecord:
        """The record of a request refused before a scope was made: what its head said."""
        method_text = method.decode("latin-1") or "-"
        return cls(kind, client, method_text, path or "-", version.decode("latin-1"), status)

    @property
    def kind(self) -> str:
        """``"http"`` or ``"websocket"``, without building :attr:`fields`."""
        scope = self.scope
        if scope is not None:
            return "websocket" if scope.get("type") == "websocket" else "http"
        assert self._fields is not None
        return self._fields[0]

    @property
    def fields(self) -> tuple[str, Any, str, str, str]:
        """``(kind, client, method, path with its query, http_version)``."""
        fields = self._fields
        if fields is None:
            scope = self.scope
            assert scope is not None
            path = scope.get("path", "")
            query = scope.get("query_string", b"")
            if query:
                path = f"{path}?{query.decode('latin-1')}"
            kind = "websocket" if scope.get("type") == "websocket" else "http"
            method = scope.get("method", "")
            fields = (kind, scope.get("client"), method, path, scope.get("http_version", "1.1"))
            self._fields = fields
        return fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccessRecord):
            return NotImplemented
        return (self.fields, self.status, self.close_code, self.problem) == (
            other.fields, other.status, other.close_code, other.problem,
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind, client, method, path, version = self.fields
        return (
            f"AccessRecord({kind!r}, {client!r}, {method!r}, {path!r}, {version!r}, "
            f"status={self.status!r}, close_code={self.close_code!r}, problem={self.problem!r})"
        )


class _ScopeRecord(AccessRecord):
    """An AccessRecord made from a scope (:func:`scope_record`). A class of its own so that it
    is made without a Python ``__init__``: on CPython 3.11 a class call that runs one costs some
    1,000 instructions more, once per request cycle."""

    __slots__ = ()
    __init__ = object.__init__


def scope_record(
    scope: Scope,
    status: int | None,
    problem: str | None = None,
    body_bytes: int | None = None,
) -> AccessRecord:
    """:meth:`AccessRecord.of_scope`: the record of a cycle the app was started for."""
    record: AccessRecord = _ScopeRecord()
    record._fields = None
    record.scope = scope
    record.status = status
    record.close_code = None
    record.problem = problem
    record.body_bytes = body_bytes
    return record


class SansIOConnection(Protocol):
    """What the I/O layer may use of a connection, in either phase. Fourteen members."""

    # -- what the I/O layer may look at (never change) -------------------------------------
    @property
    def state(self) -> HTTPState | WSState:
        """The phase's state; in ``states.CLOSED_STATES`` the transport is to be closed."""

    @property
    def timer(self) -> Timer:
        """The timer to arm now (``Timer.NONE``: none)."""

    @property
    def timer_epoch(self) -> int:
        """Changes whenever ``timer`` is set, even to the same kind (re-arm it)."""

    def reading_paused(self) -> bool:
        """True while the I/O layer should not read: the app is behind. (A method, not a
        property: the I/O layer asks at every step, and a call is cheaper.)"""

    @property
    def upgraded(self) -> InPlaceReads | None:
        """The WebSocketConnection that takes over after the 101, once the app accepted."""

    # -- bytes -------------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> bool:
        """Bytes read from the socket (a view that may be reused once this returns). True when
        the I/O layer has more to do than wake the app: bytes to write, a timer, a state."""

    def connection_lost(self) -> AccessRecord | None:
        """The transport is gone. Returns the access record of a request that the server
        refused (400, 431, a bad handshake) before any app saw it."""

    def data_to_send(self) -> list[bytes]:
        """The buffers to write, in order, taken out of the core (a large payload uncopied)."""

    # -- the app ---------------------------------------------------------------------------
    def next_scope(self) -> Scope | None:
        """A scope to start the app with, once per request cycle."""

    def next_message(self) -> ASGIMessage | None:
        """The next message for the app's ``receive()``, or None: wait for more."""

    def send(self, message: ASGIMessage) -> int:
        """One message from the app (RuntimeError when it is not allowed now). Returns how
        many messages still wait for the app, so that the I/O layer can batch its writes, or
        ``UNCHANGED`` (-1): nothing for the I/O layer to do (an HTTP response start, held
        until its body comes)."""

    def app_finished(self, error: BaseException | None) -> AccessRecord:
        """The app call returned (``error`` None) or raised. The cycle's access record."""

    # -- events from the I/O layer ---------------------------------------------------------
    def timeout(self, timer: Timer) -> None:
        """The timer ``timer`` fired."""

    def shutdown(self, code: int, reason: str = "") -> None:
        """The server is stopping (or ends this session): finish HTTP work, close a WebSocket
        with ``code`` and ``reason``."""


class InPlaceReads(SansIOConnection, Protocol):
    """The WebSocket phase also lets the transport read a large binary frame's payload
    straight into its buffer (one copy, by the kernel)."""

    def read_target(self) -> memoryview | None:
        """Where to read the rest of a large frame's payload now, or None: read as usual."""

    def received_into(self, nbytes: int) -> bool:
        """``nbytes`` were read into the start of ``read_target()``; True as receive_data."""

    @property
    def inbox(self) -> list[ASGIMessage | PendingClose]:
        """The messages waiting for the app, oldest first: looked at, never changed, by
        ``--metrics-port`` (asgiws.asyncio.metered), which counts what each read added."""


class ServerHeaders:
    """Headers added to every response (``date``, ``server``), kept fresh by the I/O layer."""

    __slots__ = ("_lines", "_lines_of", "_own_lines", "headers")

    def __init__(self, headers: Headers | None = None) -> None:
        self.headers: Headers = headers if headers is not None else [(b"server", b"asgiws")]
        self._lines = b""
        self._own_lines: bytes | None = None
        self._lines_of: Headers | None = None

    def _encode(self) -> None:
        headers = self._lines_of = self.headers
        self._lines = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
        own = all(name == b"server" or name == b"date" for name, _ in headers)
        self._own_lines = self._lines if own else None

    @property
    def lines(self) -> bytes:
        """The headers as field lines, each ending in CRLF, encoded once per change."""
        if self.headers is not self._lines_of:
            self._encode()
        return self._lines

    @property
    def own_lines(self) -> bytes | None:
        """:attr:`lines` when the headers are only ``server`` and ``date`` (an app that sets
        neither gets all of them, unmerged); None when ``--header`` added others."""
        if self.headers is not self._lines_of:
            self._encode()
        return self._own_lines

    def merged(self, headers: Headers) -> Headers:
        """``headers`` and, behind them, the server's headers the app did not set itself."""
        names = {name for name, _ in headers}
        extra = [h for h in self.headers if h[0] not in names]
        return [*headers, *extra] if extra else headers
