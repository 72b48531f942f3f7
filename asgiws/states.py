"""The states of a connection's two phases, their legal transitions, and the timers.

Rule one, after h11's ``_state.py``: every state a connection can be in is named here, and the
transitions it may make are data in this module. :class:`asgiws.http.HTTPConnection` and
:class:`asgiws.websocket.WebSocketConnection` each change state in exactly one method,
``_set_state``; the test suite runs with that method recording every ``(old, new)`` pair and
fails on any pair that is not in :data:`HTTP_TRANSITIONS` or :data:`WS_TRANSITIONS`. No I/O, no
clock.
"""

from __future__ import annotations

import enum
from typing import Final

from .events import CloseReceived, ProtocolFailure


class ClientDisconnected(OSError):
    """``send()`` or ``receive()`` was called after the WebSocket connection closed."""


class HTTPState(enum.Enum):
    """An HTTP/1.1 connection, from its first byte to the end of its last request cycle or the
    101 that hands it to a WebSocketConnection. The values say what the connection waits for."""

    IDLE = "waiting for a request head"
    HTTP = "serving an HTTP request"
    WS_CONNECTING = "waiting for the app to accept the WebSocket"
    WS_DENYING = "sending the app's denial response"
    UPGRADED = "handed over to a WebSocketConnection after the 101"
    CLOSED = "closed"


class WSState(enum.Enum):
    """An open WebSocket, after the 101. The closing phases are wsproto's names."""

    OPEN = "WebSocket open"
    REMOTE_CLOSING = "the peer's Close (or its protocol failure) waits for the app to read it"
    LOCAL_CLOSING = "our Close frame sent, waiting for the peer's"
    CLOSED = "closed"


class Cycle(enum.Enum):
    """What the current request cycle of an HTTPConnection is, which its state alone cannot say
    once the cycle is CLOSED."""

    NONE = "between requests"
    HTTP = "an HTTP request"
    WEBSOCKET = "a WebSocket upgrade request"


class Response(enum.Enum):
    """How far the app's HTTP response has gone."""

    NONE = "no http.response.start yet"
    HELD = "http.response.start held until the first body, for its Content-Length"
    STREAMING = "head sent, more body to come"
    COMPLETE = "the whole response sent"


class App(enum.Enum):
    """The app call of the current request cycle."""

    NONE = "no app call for this cycle yet (and none at all if the request is refused)"
    PENDING = "a scope waits for next_scope()"
    RUNNING = "the app is running"
    DONE = "the app returned"


class Timer(enum.IntEnum):
    """The timer a connection wants armed. An int, so that it indexes a table of delays."""

    NONE = enum.auto()
    HEAD = enum.auto()  # timeout_handshake: a complete request head must arrive
    KEEP_ALIVE = enum.auto()  # timeout_keep_alive: between requests
    PING = enum.auto()  # ws_ping_interval: time to send a keep-alive ping
    # The first keep-alive ping: due at a point within ws_ping_interval that the I/O layer
    # picks, so that connections opened together are not pinged together (each later ping
    # is a PING, one interval after the peer's answer).
    FIRST_PING = enum.auto()
    PONG = enum.auto()  # ws_ping_timeout: something must arrive after our ping
    CLOSE = enum.auto()  # ws_close_timeout: the closing handshake must finish


# The members again, as module names. Before Python 3.12 the enum metaclass has a __getattr__,
# so every ``WSState.OPEN`` runs Python-level lookup code (about 850 instructions, a sixth of
# the server's work per echoed message on 3.11); a module global costs one dict lookup. The
# hot modules use only these (tests/test_states.py checks that).
IDLE: Final = HTTPState.IDLE
HTTP: Final = HTTPState.HTTP
WS_CONNECTING: Final = HTTPState.WS_CONNECTING
WS_DENYING: Final = HTTPState.WS_DENYING
UPGRADED: Final = HTTPState.UPGRADED
HTTP_CLOSED: Final = HTTPState.CLOSED
OPEN: Final = WSState.OPEN
REMOTE_CLOSING: Final = WSState.REMOTE_CLOSING
LOCAL_CLOSING: Final = WSState.LOCAL_CLOSING
WS_CLOSED: Final = WSState.CLOSED
TIMER_NONE: Final = Timer.NONE
TIMER_HEAD: Final = Timer.HEAD
TIMER_KEEP_ALIVE: Final = Timer.KEEP_ALIVE
TIMER_PING: Final = Timer.PING
TIMER_FIRST_PING: Final = Timer.FIRST_PING
TIMER_PONG: Final = Timer.PONG
TIMER_CLOSE: Final = Timer.CLOSE
CYCLE_NONE: Final = Cycle.NONE
CYCLE_HTTP: Final = Cycle.HTTP
CYCLE_WEBSOCKET: Final = Cycle.WEBSOCKET
APP_NONE: Final = App.NONE
APP_PENDING: Final = App.PENDING
APP_RUNNING: Final = App.RUNNING
APP_DONE: Final = App.DONE

# Either phase's end: the I/O layer closes the transport. A tuple, not a frozenset: membership
# by identity, where a set would call Enum.__hash__, a Python function before 3.12.
CLOSED_STATES: Final = (HTTP_CLOSED, WS_CLOSED)
# In these HTTP states no timer runs: the app decides how long it takes (HTTP, the handshake),
# the WebSocket phase owns the timers now (UPGRADED), or nothing is left (CLOSED). Every state
# but IDLE: HTTPConnection._set_state tests that by identity.
HTTP_NO_TIMER: Final = (HTTP_CLOSED, HTTP, WS_CONNECTING, WS_DENYING, UPGRADED)

# The legal transitions, as data: state -> the states it may move to. A state may also be set
# to itself only where it is listed among its own successors.
HTTP_TRANSITIONS: Final[dict[HTTPState, tuple[HTTPState, ...]]] = {
    # A request head starts a cycle; a bad head, a timeout, shutdown or EOF closes.
    IDLE: (HTTP, WS_CONNECTING, HTTP_CLOSED),
    # The response is complete: the next cycle (keep-alive) or the end.
    HTTP: (IDLE, HTTP_CLOSED),
    # The app accepts (the 101, then the WebSocket phase), denies with its own response, or
    # closes (403); the client may leave first.
    WS_CONNECTING: (UPGRADED, WS_DENYING, HTTP_CLOSED),
    WS_DENYING: (HTTP_CLOSED,),
    UPGRADED: (),
    HTTP_CLOSED: (),
}
WS_TRANSITIONS: Final[dict[WSState, tuple[WSState, ...]]] = {
    # The peer's Close or failure arrives; the app closes, or shutdown does; the transport
    # goes, or the keep-alive ping is not answered.
    OPEN: (REMOTE_CLOSING, LOCAL_CLOSING, WS_CLOSED),
    # The app reads up to the peer's Close, answers it, or runs out of time: we answer, close.
    REMOTE_CLOSING: (WS_CLOSED,),
    # The peer answers our Close, fails, goes, or runs out of time.
    LOCAL_CLOSING: (WS_CLOSED,),
    WS_CLOSED: (),
}


# What stands in a WebSocket's inbox where the peer's Close frame, or its protocol failure,
# arrived: the codec's event itself, with its code and reason (a failure is a ProtocolFailure).
# Not an object made for it: on CPython 3.11 that was a class call, some 1,800 instructions,
# once per closing handshake.
PendingClose = CloseReceived | ProtocolFailure
