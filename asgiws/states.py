"""The vocabulary a connection's phases share: its states, its timers, and the error an app sees
when it sends on a closed WebSocket. No I/O, no clock."""

from __future__ import annotations

import enum


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


# In these states no timer runs: the app decides (HTTP, handshake) or nothing is left (CLOSED).
# A tuple, not a frozenset: membership by identity, where a set would call Enum.__hash__, a
# Python function before 3.12.
NO_TIMER_STATES = (State.CLOSED, State.HTTP, State.WS_CONNECTING, State.WS_DENYING)


class PendingClose:
    """Stands in the inbox where the peer's Close frame, or its protocol failure, arrived."""

    __slots__ = ("code", "failure", "reason")

    def __init__(self, code: int, reason: str, failure: bool) -> None:
        self.code = code
        self.reason = reason
        self.failure = failure
