"""The WebSocket phase of a connection, after the 101: frames in, messages out, the closing
handshake, keep-alive pings.

:class:`WebSocketConnection` is built by :class:`asgiws.http.HTTPConnection` when the app
accepts, with the 101 already in its output and the bytes that came behind the request; the I/O
layer then swaps to it. A peer's Close (or a protocol failure) waits in the inbox behind the
messages that came first, as a :class:`~asgiws.states.PendingClose`, and the state is
``REMOTE_CLOSING`` while it waits: the app's answers to those messages go out ahead of our Close.
Exactly one ``websocket.disconnect`` reaches the app. Sans-IO: no asyncio, no clock.
"""

from __future__ import annotations

from typing import Final

from .asgi import ASGIMessage, Scope, close_args, ws_disconnect, ws_payload
from .config import Config
from .frames import (
    MAX_CLOSE_REASON,
    CloseCode,
    CloseReceived,
    Event,
    FrameCodec,
    Message,
    Ping,
    ProtocolFailure,
)
from .protocol import AccessRecord, scope_record
from .states import (
    LOCAL_CLOSING,
    OPEN,
    REMOTE_CLOSING,
    TIMER_CLOSE,
    TIMER_FIRST_PING,
    TIMER_NONE,
    TIMER_PING,
    TIMER_PONG,
    WS_CLOSED,
    ClientDisconnected,
    PendingClose,
    Timer,
    WSState,
)

# RFC 6455 §7.4.1 close codes this module sends or reports, as plain ints (what apps see).
_NORMAL: Final = CloseCode.NORMAL_CLOSURE.value
_ABNORMAL: Final = CloseCode.ABNORMAL_CLOSURE.value  # to the app only: no Close frame came
_NO_STATUS: Final = CloseCode.NO_STATUS_RCVD.value  # to the app only: a Close without a code
_INTERNAL_ERROR: Final = CloseCode.INTERNAL_ERROR.value

_EMPTY_OUTPUT: list[bytes] = []


class WebSocketConnection:
    """One open WebSocket connection: the phase after the 101."""

    # Thousands of these sit idle at once: no per-instance __dict__.
    __slots__ = (
        "_codec",
        "_disconnect_queued",
        "_output",
        "_ping_counter",
        "_scope",
        "close_code",
        "config",
        "inbox",
        "max_queue",
        "state",
        "timer",
        "timer_epoch",
    )

    def __init__(
        self,
        config: Config,
        codec: FrameCodec,
        output: list[bytes],
        inbox: list[ASGIMessage | PendingClose],
        scope: Scope,
        timer_epoch: int,
        shutdown: tuple[int, str] | None,
        trailing: bytes | bytearray = b"",
    ) -> None:
        self.config = config
        self._codec = codec
        # Bytes to write (data_to_send() takes them; the 101 is first) and messages for the app
        # (next_message() takes them). A list, not a deque: it holds at most max_queue items,
        # and an empty deque costs 600 bytes more per idle connection.
        self._output = output
        self.inbox = inbox
        self.max_queue = config.max_queue
        self._scope = scope  # for the access record, at the end
        self.state = OPEN
        if shutdown is None and config.ws_ping_interval > 0:
            # The first ping at a point within the interval (the I/O layer picks it, so that
            # connections opened together are not all pinged together); the later ones one
            # interval after the peer's answer. (Each written once: two stores less.)
            self.timer = TIMER_FIRST_PING
            self.timer_epoch = timer_epoch + 1
        else:
            self.timer = TIMER_NONE
            self.timer_epoch = timer_epoch
        self.close_code: int | None = None  # how the session ended
        self._disconnect_queued = False  # exactly one disconnect per connection
        self._ping_counter = 0
        if shutdown is not None:
            # Accepted while the server stops: closed at once with shutdown()'s code (1001, or
            # 1012 on a restart), not the configured default.
            self._close_from_app(*shutdown)
            self._queue_disconnect(*shutdown)
            return
        if trailing:
            # Bytes that came right behind the request are the start of the WebSocket stream.
            self.receive_data(bytes(trailing))

    upgraded: None = None  # the last phase: nothing takes over from it

    # -- bytes in ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> bool:
        """Feed bytes read from the socket (a view that may be reused once this returns).
        True when the I/O layer has more to do than wake the app."""
        if self.state is not OPEN:
            return self._receive_closing(data)
        codec = self._codec
        payload = codec.receive_one(data)
        if payload is not None:
            # The common case: one whole small message in this read.
            inbox = self.inbox
            if type(payload) is str:
                inbox.append({"type": "websocket.receive", "text": payload})
            else:
                inbox.append({"type": "websocket.receive", "bytes": payload})
            if self.timer is TIMER_PONG:
                self._set_timer(TIMER_PING)
                return True
            return len(inbox) >= self.max_queue
        epoch = self.timer_epoch
        events = codec.receive_declined(data)
        if events:
            self._take_events(events)
        # (_busy(epoch), inline: this runs for every read that is not one whole small message)
        return (
            self.state is not OPEN
            or bool(self._output)
            or self.timer_epoch != epoch
            or len(self.inbox) >= self.max_queue
            or codec.collecting
        )

    def _receive_closing(self, data: bytes | bytearray | memoryview) -> bool:
        """Bytes after a Close. After the peer's (REMOTE_CLOSING, CLOSED) nothing it sends
        counts: the codec stops at a Close. After ours (LOCAL_CLOSING) we read on until the
        peer's Close arrives (RFC 6455 §5.5.1, §7.1.1), and the data frames that come first
        are parsed, to find it, and dropped: the app has been told the session is ending, and
        nothing may reach it after its websocket.disconnect. So the inbox does not grow, and
        reading never stays paused on it."""
        if self.state is not LOCAL_CLOSING:
            return False
        epoch = self.timer_epoch
        codec = self._codec
        if codec.receive_one(data) is None:  # a whole message in one read: dropped
            events = codec.receive_declined(data)
            if events:
                self._take_events(events)
        return self._busy(epoch)

    def read_target(self) -> memoryview | None:
        """Where the rest of a large binary frame's payload may be read in place, or None."""
        if self.state is not OPEN and self.state is not LOCAL_CLOSING:
            return None
        return self._codec.read_target()

    def received_into(self, nbytes: int) -> bool:
        epoch = self.timer_epoch
        events = self._codec.received_into(nbytes)
        if events:
            self._take_events(events)
        return self._busy(epoch)

    def _busy(self, epoch: int) -> bool:
        """Whether the I/O layer has more to do than wake the app, after a read."""
        return (
            self.state is not OPEN
            or bool(self._output)
            or self.timer_epoch != epoch
            or len(self.inbox) >= self.max_queue
        )

    def _take_events(self, events: list[Event]) -> None:
        if self.timer is TIMER_PONG:
            # RFC 6455 leaves liveness to us: any frame after our ping proves the peer is there.
            self._set_timer(TIMER_PING)
        inbox = self.inbox
        for event in events:
            if type(event) is Message:
                if self.state is not OPEN:
                    continue  # after our Close: see _receive_closing
                data_ = event.data
                if type(data_) is str:
                    inbox.append({"type": "websocket.receive", "text": data_})
                else:
                    inbox.append({"type": "websocket.receive", "bytes": data_})
            elif type(event) is Ping:
                if self.state is OPEN:
                    # RFC 6455 §5.5.2: answer with a Pong carrying the same payload.
                    self._output.append(self._codec.encode_pong(event.payload))
            elif type(event) is CloseReceived or type(event) is ProtocolFailure:
                if self.state is LOCAL_CLOSING:
                    # The peer answered our Close (the closing handshake is complete) or broke
                    # the protocol while we waited for its answer.
                    if type(event) is ProtocolFailure:
                        self._queue_disconnect(_ABNORMAL, "")
                    else:
                        self._queue_disconnect(event.code, event.reason)
                    self._set_state(WS_CLOSED)
                else:
                    inbox.append(event)  # (a PendingClose: the event itself)
                    self._set_state(REMOTE_CLOSING)
                    self.timer = TIMER_CLOSE  # (_set_timer, inline: a call less per close)
                    self.timer_epoch += 1

    # -- bytes out -----------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """The buffers to write, in order; a large message's payload is one of them, uncopied."""
        out = self._output
        if not out:
            return _EMPTY_OUTPUT
        self._output = []
        return out

    def reading_paused(self) -> bool:
        """True while the app has ``max_queue`` unread messages: TCP pushes back on the peer.
        Never after our Close: what comes then is not queued, and the peer's Close must be
        read (RFC 6455 §7.1.1)."""
        return len(self.inbox) >= self.max_queue and self.state is not LOCAL_CLOSING

    # -- the app -------------------------------------------------------------------------------

    def next_scope(self) -> Scope | None:
        return None  # The app runs from the HTTP cycle that upgraded.

    def next_message(self) -> ASGIMessage | None:
        """The next message for the app's ``receive()``, or None when it must wait for more."""
        inbox = self.inbox
        if inbox:
            item = inbox.pop(0)
            if type(item) is dict:
                return item
            assert isinstance(item, PendingClose)
            # The app has read up to the peer's Close (or failure): answer it, tell the app.
            self._answer_close(item)
            self._disconnect_queued = True
            # (ws_disconnect, inline: a call less per session)
            return {"type": "websocket.disconnect", "code": item.code, "reason": item.reason}
        if self._disconnect_queued:
            raise ClientDisconnected("receive() called after 'websocket.disconnect' was delivered")
        return None

    def send(self, message: ASGIMessage) -> int:
        """Take one message from the app; raise RuntimeError when it is not allowed now.
        Returns how many messages wait for the app (the I/O layer batches its writes then)."""
        if type(message) is not dict:
            raise RuntimeError(f"an ASGI message must be a dict, not {type(message).__name__}")
        kind = message.get("type")
        state = self.state
        if kind == "websocket.send":
            # Also while the peer's Close waits unread: RFC 6455 §5.5.1 lets us send.
            if state is OPEN or state is REMOTE_CLOSING:
                text = message.get("text")
                if type(text) is not str or message.get("bytes") is not None:
                    text = ws_payload(message, state)  # bytes, or a mistake to report
                self._codec.encode_message_into(text, self._output)
                return len(self.inbox)
        elif kind == "websocket.close":
            if state is OPEN:
                self._close_from_app(*close_args(message))
                return 0
            if state is REMOTE_CLOSING:
                # The peer closed first; this Close is our answer.
                code, reason = close_args(message)
                pending = self._take_pending_close()
                self._output.append(self._codec.encode_close(code, reason))
                self.close_code = pending.code
                self._set_state(WS_CLOSED)
                return 0
        if state is LOCAL_CLOSING or state is WS_CLOSED:
            raise ClientDisconnected(f"cannot send {kind!r}: the WebSocket connection is closed")
        raise RuntimeError(f"cannot send {kind!r} in state {state.name}")

    def app_finished(self, error: BaseException | None) -> AccessRecord:
        """The app call returned (error None) or raised: close the WebSocket if it is open."""
        state = self.state
        if state is REMOTE_CLOSING:
            self._answer_close_now()
        elif state is OPEN:
            self._close_from_app(_NORMAL if error is None else _INTERNAL_ERROR, "")
        record = scope_record(self._scope, 101)
        record.close_code = self.close_code
        return record

    # -- events from the I/O layer -------------------------------------------------------------

    def connection_lost(self) -> AccessRecord | None:
        """The transport is gone (EOF, reset, or closed by us)."""
        if self.state is not WS_CLOSED:
            self._set_state(WS_CLOSED)
        if self.inbox and type(self.inbox[-1]) is not dict:  # a PendingClose
            # A Close the app has not read yet still reaches it with its code.
            self._take_pending_close()
        elif self.close_code is None or not self._disconnect_queued:
            # (After a closing handshake, nothing is left to queue: no call.)
            self._queue_disconnect(_ABNORMAL, "")
        return None

    def timeout(self, timer: Timer) -> None:
        """The I/O layer's timer for ``timer`` fired: keep-alive ping, pong deadline, or the
        closing handshake's time limit."""
        if timer is not self.timer:
            return
        if timer is TIMER_PING or timer is TIMER_FIRST_PING:
            self._ping_counter += 1
            self._output.append(self._codec.encode_ping(self._ping_counter.to_bytes(4, "big")))
            self._set_timer(TIMER_PONG if self.config.ws_ping_timeout > 0 else TIMER_PING)
        elif timer is TIMER_PONG:
            # Nothing arrived in time after our ping: RFC 6455 §7.4.1, 1011.
            self._output.append(self._codec.encode_close(_INTERNAL_ERROR, "keepalive ping timeout"))
            self.close_code = _INTERNAL_ERROR
            self._queue_disconnect(_INTERNAL_ERROR, "keepalive ping timeout")
            self._set_state(WS_CLOSED)
        elif timer is TIMER_CLOSE:
            if self.state is REMOTE_CLOSING:
                self._answer_close_now()  # The app did not read the peer's Close in time.
            else:
                # Our Close was never answered.
                self._queue_disconnect(_ABNORMAL, "")
                self._set_state(WS_CLOSED)

    def shutdown(self, code: int, reason: str = "") -> None:
        """The server ends the session (it is stopping, or the client reads too slowly): close
        with ``code`` (the peer's Close first, if it came)."""
        if self.state is REMOTE_CLOSING:
            self._answer_close_now()
        elif self.state is OPEN:
            self._close_from_app(code, reason)
            self._queue_disconnect(code, reason)

    # -- the closing handshake -----------------------------------------------------------------

    def _take_pending_close(self) -> PendingClose:
        """Take the peer's Close off the end of the inbox and queue its disconnect: the app
        still gets it after the messages ahead of it."""
        pending = self.inbox.pop()
        assert isinstance(pending, PendingClose)
        self._queue_disconnect(pending.code, pending.reason)
        return pending

    def _answer_close_now(self) -> None:
        """Answer the peer's Close before the app has read up to it."""
        self._answer_close(self._take_pending_close())

    def _answer_close(self, pending: PendingClose) -> None:
        codec = self._codec
        if type(pending) is ProtocolFailure:
            # RFC 6455 §7.1.7: fail the connection with a Close frame carrying the reason, cut
            # to the bytes a Close frame has room for (§5.5).
            reason = pending.reason.encode()[:MAX_CLOSE_REASON].decode("utf-8", "ignore")
            self._output.append(codec.encode_close(pending.code, reason))
        elif pending.code == _NO_STATUS:
            # RFC 6455 §5.5.1: echo the Close; it had no status code, so neither does ours.
            self._output.append(codec.encode_close(None))
        else:
            # RFC 6455 §5.5.1: echo the Close; its code and reason fit, as they came in one.
            self._output.append(codec.encode_close_reply(pending.code, pending.reason))
        self.close_code = pending.code
        # The closing handshake is complete, or the connection is failed: the server closes TCP
        # first (RFC 6455 §7.1.1).
        self._set_state(WS_CLOSED)

    def _close_from_app(self, code: int, reason: str) -> None:
        self._output.append(self._codec.encode_close(code, reason))
        self.close_code = code
        self._set_state(LOCAL_CLOSING)
        self._set_timer(TIMER_CLOSE)

    def _queue_disconnect(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
        if not self._disconnect_queued:
            self._disconnect_queued = True
            self.inbox.append(ws_disconnect(code, reason))

    # -- state ---------------------------------------------------------------------------------

    def _set_state(self, state: WSState) -> None:
        """The only writer of ``state`` (see ``states.WS_TRANSITIONS``)."""
        self.state = state
        if state is WS_CLOSED:
            # _set_timer(TIMER_NONE), inline: a call less per connection.
            self.timer = TIMER_NONE
            self.timer_epoch += 1

    def _set_timer(self, timer: Timer) -> None:
        self.timer = timer
        self.timer_epoch += 1
