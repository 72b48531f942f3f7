"""The vocabulary a connection's phases share: its states, its timers, and the error an app sees
when it sends on a closed WebSocket. No I/O, no clock."""

from __future__ import annotations

import enum
from typing import Final


class ClientDisconnected(OSError):
    """``send()`` was called after the WebSocket connection closed."""


class State(enum.Enum):
    IDLE = "waiting for a request head"
    HTTP = "serving an HTTP request"
    WS_CONNECTING = "waiting for the app to accept the WebSocket"
    WS_DENYING = "sending the app's denial response"
    WS_OPEN = "WebSocket open"
    WS_CLOSING = "WebSocket Close frame sent, waiting for the peer's"
    CLOSED = "closed"


class Timer(enum.IntEnum):
    """The timer a connection wants armed. An int, so that it indexes a table of delays."""

    NONE = enum.auto()
    HEAD = enum.auto()  # timeout_handshake: a complete request head must arrive
    KEEP_ALIVE = enum.auto()  # timeout_keep_alive: between requests
    PING = enum.auto()  # ws_ping_interval: time to send a keep-alive ping
    PONG = enum.auto()  # ws_ping_timeout: something must arrive after our ping
    CLOSE = enum.auto()  # ws_close_timeout: the closing handshake must finish


# The members again, as module names. Before Python 3.12 the enum metaclass has a __getattr__,
# so every ``State.WS_OPEN`` runs Python-level lookup code (about 850 instructions, a sixth of
# the server's work per echoed message on 3.11); a module global costs one dict lookup.
IDLE: Final = State.IDLE
HTTP: Final = State.HTTP
WS_CONNECTING: Final = State.WS_CONNECTING
WS_DENYING: Final = State.WS_DENYING
WS_OPEN: Final = State.WS_OPEN
WS_CLOSING: Final = State.WS_CLOSING
CLOSED: Final = State.CLOSED
TIMER_NONE: Final = Timer.NONE
TIMER_HEAD: Final = Timer.HEAD
TIMER_KEEP_ALIVE: Final = Timer.KEEP_ALIVE
TIMER_PING: Final = Timer.PING
TIMER_PONG: Final = Timer.PONG
TIMER_CLOSE: Final = Timer.CLOSE

# In these states no timer runs: the app decides (HTTP, handshake) or nothing is left (CLOSED).
# A tuple, not a frozenset: membership by identity, where a set would call Enum.__hash__, a
# Python function before 3.12.
NO_TIMER_STATES = (CLOSED, HTTP, WS_CONNECTING, WS_DENYING)


class PendingClose:
    """Stands in the inbox where the peer's Close frame, or its protocol failure, arrived."""

    __slots__ = ("code", "failure", "reason")

    def __init__(self, code: int, reason: str, failure: bool) -> None:
        self.code = code
        self.reason = reason
        self.failure = failure
