"""The open-WebSocket phase of a connection: frames in, the closing handshake, keep-alive.

:class:`WebSocketPhase` is a part of :class:`asgiws.protocol.Connection`, kept in its own module
because it is its own responsibility: once the 101 is sent, bytes go to the frame codec, messages
to the inbox, and a peer's Close (or a protocol failure) waits in the inbox behind the messages
that came first, so that the app's answers to them go out ahead of our Close. Sans-IO like the
rest: no asyncio, no clock.
"""

from __future__ import annotations

from .asgi import ASGIMessage, ws_disconnect
from .config import Config
from .frames import CloseReceived, Event, FrameCodec, Message, Ping, ProtocolFailure
from .states import (
    CLOSED,
    NO_TIMER_STATES,
    TIMER_CLOSE,
    TIMER_NONE,
    TIMER_PING,
    TIMER_PONG,
    WS_CLOSING,
    WS_OPEN,
    PendingClose,
    State,
    Timer,
)


class WebSocketPhase:
    """The WebSocket half of a connection's state machine (a mixin of Connection)."""

    # The state this phase sets; Connection's own slots hold the rest.
    __slots__ = (
        "_disconnect_queued",
        "_ping_counter",
        "close_code",
        "state",
        "timer",
        "timer_epoch",
    )

    state: State
    timer: Timer
    timer_epoch: int
    close_code: int | None  # how the WebSocket session ended
    _disconnect_queued: bool  # exactly one disconnect per cycle
    _ping_counter: int
    # The connection's state this phase reads (declared here for type checking).
    config: Config
    inbox: list[ASGIMessage | PendingClose]
    output: list[bytes]
    _codec: FrameCodec | None

    def _receive_frames(self, data: bytes | bytearray | memoryview) -> None:
        codec = self._codec
        assert codec is not None
        payload = codec.receive_one(data)
        if payload is not None:
            # The common case: one whole small message in this read.
            if type(payload) is str:
                self.inbox.append({"type": "websocket.receive", "text": payload})
            else:
                self.inbox.append({"type": "websocket.receive", "bytes": payload})
            if self.timer is TIMER_PONG:
                self._set_timer(TIMER_PING)
            return
        events = codec.receive_declined(data)
        if events:
            self._take_events(events, codec)

    @property
    def collecting(self) -> bool:
        """True while a large binary frame arrives: the I/O layer may read straight into
        :meth:`read_target` and report with :meth:`received_into` (one copy fewer)."""
        codec = self._codec
        return codec is not None and codec.collecting and self.state is WS_OPEN

    def read_target(self) -> memoryview | None:
        codec = self._codec
        if codec is None or not (self.state is WS_OPEN or self.state is WS_CLOSING):
            return None
        return codec.read_target()

    def received_into(self, nbytes: int) -> None:
        codec = self._codec
        assert codec is not None
        events = codec.received_into(nbytes)
        if events:
            self._take_events(events, codec)

    def _take_events(self, events: list[Event], codec: FrameCodec) -> None:
        if self.timer is TIMER_PONG:
            # RFC 6455 leaves liveness to us: any frame after our ping proves the peer is there.
            self._set_timer(TIMER_PING)
        inbox = self.inbox
        for event in events:
            if type(event) is Message:
                data_ = event.data
                if type(data_) is str:
                    inbox.append({"type": "websocket.receive", "text": data_})
                else:
                    inbox.append({"type": "websocket.receive", "bytes": data_})
            elif type(event) is Ping:
                if self.state is WS_OPEN:
                    # RFC 6455 §5.5.2: answer with a Pong carrying the same payload.
                    self.output.append(codec.encode_pong(event.payload))
            elif type(event) is CloseReceived:
                if self.state is WS_CLOSING:
                    # The peer answered our Close: the closing handshake is complete.
                    self._queue_ws_disconnect(event.code, event.reason)
                    self._set_state(CLOSED)
                else:
                    inbox.append(PendingClose(event.code, event.reason, failure=False))
                    self._set_timer(TIMER_CLOSE)
            elif type(event) is ProtocolFailure:
                if self.state is WS_CLOSING:
                    self._queue_ws_disconnect(1006, "")
                    self._set_state(CLOSED)
                else:
                    inbox.append(PendingClose(event.code, event.reason, failure=True))
                    self._set_timer(TIMER_CLOSE)

    def _peer_close_pending(self) -> bool:
        inbox = self.inbox
        return bool(inbox) and type(inbox[-1]) is PendingClose

    def _act_on_close(self, pending: PendingClose) -> ASGIMessage:
        """The app has read up to the peer's Close (or failure): answer it, tell the app."""
        self._answer_close(pending)
        self._disconnect_queued = True
        return ws_disconnect(pending.code, pending.reason)

    def _answer_close_now(self) -> None:
        """Answer the peer's Close at the end of the inbox before the app has read up to it;
        the app still gets its disconnect after the messages ahead of it."""
        pending = self.inbox.pop()
        assert isinstance(pending, PendingClose)
        self._queue_ws_disconnect(pending.code, pending.reason)
        self._answer_close(pending)

    def _answer_close(self, pending: PendingClose) -> None:
        codec = self._codec
        assert codec is not None
        if self.state is WS_OPEN:
            if pending.failure:
                # RFC 6455 §7.1.7: fail the connection with a Close frame carrying the reason,
                # cut to the 123 bytes a Close frame has room for (§5.5).
                reason = pending.reason.encode()[:123].decode("utf-8", "ignore")
                self.output.append(codec.encode_close(pending.code, reason))
            elif pending.code == 1005:
                # RFC 6455 §5.5.1: echo the Close; it had no status code, so neither does ours.
                self.output.append(codec.encode_close(None))
            else:
                # RFC 6455 §5.5.1: echo the Close; its code and reason fit, as they came in one.
                self.output.append(codec.encode_close(pending.code, pending.reason))
        self.close_code = pending.code
        # The closing handshake is complete, or the connection is failed: the server closes TCP
        # first (RFC 6455 §7.1.1).
        self._set_state(CLOSED)

    def _close_from_app(self, code: int, reason: str) -> None:
        codec = self._codec
        assert codec is not None
        self.output.append(codec.encode_close(code, reason))
        self.close_code = code
        self._set_state(WS_CLOSING)
        self._set_timer(TIMER_CLOSE)

    def _queue_ws_disconnect(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
        if not self._disconnect_queued:
            self._disconnect_queued = True
            self.inbox.append(ws_disconnect(code, reason))

    # -- state ---------------------------------------------------------------------------------

    def _ws_timeout(self, timer: Timer) -> None:
        """A WebSocket timer fired: keep-alive ping, pong deadline, or closing handshake."""
        if timer is TIMER_PING:
            self._ping_counter += 1
            self.output.append(self._codec.encode_ping(self._ping_counter.to_bytes(4, "big")))  # type: ignore[union-attr]
            if self.config.ws_ping_timeout > 0:
                self._set_timer(TIMER_PONG)
            else:
                self._set_timer(TIMER_PING)
        elif timer is TIMER_PONG:
            # Nothing arrived in time after our ping: RFC 6455 §7.4.1, 1011.
            assert self._codec is not None
            self.output.append(self._codec.encode_close(1011, "keepalive ping timeout"))
            self.close_code = 1011
            self._queue_ws_disconnect(1011, "keepalive ping timeout")
            self._set_state(CLOSED)
        elif timer is TIMER_CLOSE:
            if self._peer_close_pending():
                self._answer_close_now()  # The app did not read the peer's Close in time.
            else:
                # Our Close was never answered.
                self._queue_ws_disconnect(1006, "")
                self._set_state(CLOSED)

    def _close_message(self, code: int, reason: str) -> None:
        """The app's ``websocket.close`` while the WebSocket is open."""
        if self._peer_close_pending():
            # The peer closed first; this Close is our answer.
            pending = self.inbox.pop()
            assert isinstance(pending, PendingClose)
            self._queue_ws_disconnect(pending.code, pending.reason)
            self.output.append(self._codec.encode_close(code, reason))  # type: ignore[union-attr]
            self.close_code = pending.code
            self._set_state(CLOSED)
        else:
            self._close_from_app(code, reason)

    def _set_state(self, state: State) -> None:
        self.state = state
        if state in NO_TIMER_STATES:
            self._set_timer(TIMER_NONE)

    def _set_timer(self, timer: Timer) -> None:
        self.timer = timer
        self.timer_epoch += 1
