"""The sans-IO core as a hypothesis state machine: every input it takes, in any order.

:class:`CoreMachine` drives one connection as the asyncio layer does (the same verbs, the same
``_step``: take the output, swap to the WebSocketConnection after the 101, close the transport in
a CLOSED state, start the app once a scope is offered), with rules for every input:

- the client: any request head from a list, pipelined heads, WebSocket frames valid and invalid
  (unmasked, reserved opcodes, RSV bits, oversize, fragmented, compressed), Close frames with
  valid and invalid codes, raw garbage, all of it delivered in reads split anywhere, or read in
  place into a large frame's buffer (``read_target`` / ``received_into``); TCP loss;
- the app: ``receive()``, each ASGI message valid and out of order, returning or raising;
- the I/O layer: each :class:`~asgiws.states.Timer` firing, shutdown with 1001 or 1012.

After every step it checks: at most one ``websocket.disconnect`` and nothing after it (exactly one
at the end, for an app that keeps reading), codes we send sendable and codes the app sees valid,
every status 1xx-5xx, no frame after our Close (the output is parsed, frame by frame), the inbox
growing only on reads made while reading was not paused, output bounded by input, a timer armed
whenever the core waits on the peer, every ``(old, new)`` state pair in ``asgiws.states``.

The app is played three ways (drawn per example): every call a rule (``manual``), or an app
that accepts at once and reads whatever comes (``reader``), or also sends it back (``echo``).

Profiles: the quick suite runs ``ci``, a fixed 80 examples of up to 80 steps with a 2 s
deadline per example (about 6 s of CPU; pytest-timeout's 120 s bounds it). For a long local run::

    ASGIWS_STATE_MACHINE=long python -m pytest tests/test_state_machine.py -q

(``long``: 5,000 examples of up to 100 steps, no deadline, about 28 minutes on a shared 2-core
machine; hypothesis's example database is kept in ``.hypothesis/``, so that a failure found is
tried first next time.
``ASGIWS_STATE_MACHINE_EXAMPLES=N`` sets the count of either profile.)
"""

from __future__ import annotations

import enum
import re
import struct
import zlib
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from profiles import LONG_RUN, profile
from transitions import TABLES, illegal
from wire import RFC_KEY, client_frame, ws_request

from asgiws.config import Config
from asgiws.events import is_sendable_close_code, is_valid_close_code
from asgiws.http import HTTPConnection
from asgiws.protocol import UNCHANGED, ClientDisconnected, SansIOConnection, ServerHeaders
from asgiws.states import (
    CLOSED_STATES,
    HTTPState,
    Timer,
    WSState,
)
from asgiws.websocket import WebSocketConnection

# -- what the client sends ---------------------------------------------------------------------

DEFLATE_OFFER = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
HEADS = [
    ws_request("/ws"),
    ws_request("/ws", extra=[DEFLATE_OFFER]),
    ws_request("/ws", extra=[("Sec-WebSocket-Protocol", "chat, superchat")]),
    ws_request("/ws", extra=[("Content-Length", "3")]) + b"abc",
    ws_request("/ws", ws_version="8"),
    ws_request("/ws", version="1.0"),
    ws_request("/ws", key=b"abc"),
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody",
    b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
    b"",
]
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
OPCODES = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0x7, 0xB, 0xF]
# UTF-8 of one to four bytes, and NUL; a fixed alphabet (the default one costs seconds to build).
TEXT = "ab é€😀\x00"


def text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=TEXT, max_size=max_size)


def compressed(data: bytes) -> bytes:
    """RFC 7692 §7.2.1: a message compressed on its own, the sync flush's tail removed."""
    deflater = zlib.compressobj(wbits=-15)
    out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


BOMB = compressed(b"\x00" * 200_000)

# -- what the app sends ------------------------------------------------------------------------

APP_MESSAGES: list[Any] = [
    {"type": "websocket.accept"},
    {"type": "websocket.accept", "subprotocol": "chat"},
    {"type": "websocket.accept", "subprotocol": "not offered"},
    {"type": "websocket.accept", "headers": [(b"x-a", b"1")]},
    {"type": "websocket.accept", "headers": [(b"sec-websocket-accept", b"1")]},
    {"type": "websocket.send", "text": "hi"},
    {"type": "websocket.send", "text": "é" * 70},
    {"type": "websocket.send", "bytes": b"\x00" * 200},
    {"type": "websocket.send", "bytes": bytearray(b"x")},
    {"type": "websocket.send"},
    {"type": "websocket.send", "text": "a", "bytes": b"b"},
    {"type": "websocket.send", "text": b"not str"},
    {"type": "websocket.close"},
    {"type": "websocket.close", "code": 4000, "reason": "bye"},
    {"type": "websocket.close", "code": 1012},
    {"type": "websocket.close", "code": 1005},
    {"type": "websocket.close", "code": 2999},
    {"type": "websocket.close", "code": 1000, "reason": "x" * 124},
    {"type": "websocket.http.response.start", "status": 403},
    {"type": "websocket.http.response.start", "status": 700},
    {"type": "websocket.http.response.body", "body": b"no"},
    {"type": "websocket.http.response.body", "body": b"more", "more_body": True},
    {"type": "http.response.start", "status": 200},
    {"type": "http.response.start", "status": 204},
    {"type": "http.response.start", "status": 700},
    {"type": "http.response.start", "status": 99},
    {"type": "http.response.body", "body": b"ok"},
    {"type": "http.response.body", "body": b"part", "more_body": True},
    {"type": "lifespan.startup.complete"},
    "not a dict",
]


# What the app sends: a message of its session often, any message out of order as often.
APP_SENDS = st.one_of(
    st.sampled_from([m for m in APP_MESSAGES[5:9]]),
    st.sampled_from(APP_MESSAGES),
)


def payload_size(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    size = 0
    for key in ("text", "bytes", "body", "reason"):
        value = message.get(key)
        if isinstance(value, str | bytes | bytearray):
            size += len(value) * (4 if isinstance(value, str) else 1)
    return size


# -- reading what the server wrote -------------------------------------------------------------

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")


class Output:
    """The server's bytes as a client reads them: HTTP responses, then, after a 101, frames."""

    def __init__(self) -> None:
        self.buffer = b""
        self.switched = False
        self.body_to_close = False  # a response without length: the rest is its body
        self.statuses: list[int] = []
        self.frames: list[tuple[int, bytes]] = []
        self.our_close: int | bool | None = False  # False until our Close: then its code

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer and not self.body_to_close:
            if not (self._frame() if self.switched else self._response()):
                return

    def _response(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = self.buffer[: end + 4]
        line = _STATUS_LINE.match(head)
        assert line is not None, f"not an HTTP response head: {head!r}"
        status = int(line[1])
        assert 100 <= status <= 599, f"status {status} written (RFC 9110 §15: 1xx-5xx)"
        headers = head.lower()
        rest = self.buffer[end + 4 :]
        if status == 101:
            self.statuses.append(status)
            self.switched = True
            self.buffer = rest
            return True
        if 100 <= status < 200 or status in (204, 304):
            body_end = 0
        elif b"\r\ntransfer-encoding: chunked\r\n" in headers:
            body_end = self._chunked_end(rest)
            if body_end < 0:
                return False
        else:
            length = re.search(rb"\r\ncontent-length: (\d+)\r\n", headers)
            if length is None:
                self.statuses.append(status)
                self.body_to_close = True
                return False
            body_end = int(length[1])
            if len(rest) < body_end:
                return False
        self.statuses.append(status)
        self.buffer = rest[body_end:]
        return True

    @staticmethod
    def _chunked_end(data: bytes) -> int:
        pos = 0
        while True:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                return -1
            size = int(data[pos:eol].split(b";")[0], 16)
            pos = eol + 2 + size + 2
            if len(data) < pos:
                return -1
            if size == 0:
                return pos

    def _frame(self) -> bool:
        data = self.buffer
        if len(data) < 2:
            return False
        first, second = data[0], data[1]
        assert not second & 0x80, "a server frame is masked (RFC 6455 §5.1)"
        length, pos = second & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return False
            (length,) = struct.unpack_from("!H", data, 2)
            pos = 4
        elif length == 127:
            if len(data) < 10:
                return False
            (length,) = struct.unpack_from("!Q", data, 2)
            pos = 10
        if len(data) < pos + length:
            return False
        opcode, payload = first & 0x0F, data[pos : pos + length]
        self.buffer = data[pos + length :]
        assert self.our_close is False, f"a frame (opcode {opcode:#x}) after our Close"
        assert opcode in (0x1, 0x2, 0x8, 0x9, 0xA), f"we sent opcode {opcode:#x}"
        assert first & 0x80, "we fragment nothing"
        if opcode >= 0x8:
            assert length <= 125, f"control frame of {length} bytes (RFC 6455 §5.5)"
        if opcode == 0x8:
            if payload:
                assert len(payload) >= 2, "a Close payload of one byte"
                (code,) = struct.unpack_from("!H", payload)
                assert is_sendable_close_code(code), f"we sent close code {code}"
                payload[2:].decode()  # RFC 6455 §5.5.1: the reason is UTF-8
                self.our_close = code
            else:
                self.our_close = None
        self.frames.append((opcode, payload))
        return True


# -- the rules' inputs --------------------------------------------------------------------------


def _message(data: str, binary: bool, parts: int) -> bytes:
    """A valid message, fragmented into ``parts`` frames."""
    raw = data.encode()
    cut = [raw[i::parts] for i in range(parts)] if len(raw) >= parts else [raw]
    out = b""
    for i, piece in enumerate(cut):
        opcode = (0x2 if binary else 0x1) if i == 0 else 0x0
        out += client_frame(opcode, piece, fin=i == len(cut) - 1)
    return out


def _close(code: int | None, reason: bytes, short: bool) -> bytes:
    no_code = b"\x03" if short else b""  # a 1-byte payload is a protocol error
    return client_frame(0x8, no_code if code is None else struct.pack("!H", code) + reason)


_ANY_FRAME = st.builds(
    lambda opcode, payload, fin, rsv, masked: client_frame(
        opcode, payload, fin=fin, rsv=rsv, mask=b"\x37\xfa\x21\x3d" if masked else None
    ),
    st.sampled_from(OPCODES),
    st.one_of(st.binary(max_size=30), text(10).map(str.encode)),
    st.booleans(),
    st.sampled_from([0, 0, 0, 0x40, 0x20, 0x10]),
    st.sampled_from([True, True, True, False]),
)
_VALID_MESSAGE = st.builds(_message, text(40), st.booleans(), st.integers(1, 3))
_PING = st.builds(
    lambda payload, pong: client_frame(0xA if pong else 0x9, payload),
    st.binary(max_size=125),
    st.booleans(),
)
_COMPRESSED = text(60).map(lambda t: client_frame(0x1, compressed(t.encode()), rsv=0x40))
_CLOSE = st.builds(
    _close,
    st.one_of(st.sampled_from(VALID_CODES), st.sampled_from(INVALID_CODES), st.none()),
    st.one_of(text(20).map(str.encode), st.just(b"\xff\xfe")),
    st.booleans(),
)
# What the client writes: valid traffic mostly (so that sessions last), its Close, and every
# kind of mistake, each of which ends the session.
_MISTAKES = st.one_of(
    _ANY_FRAME,
    st.binary(min_size=1, max_size=20),  # garbage
    st.sampled_from(HEADS[:3] + HEADS[7:12]),  # a request, pipelined or out of place
    st.sampled_from(["oversize"]),  # made to the measure of ws_max_size
    st.just(client_frame(0x2, BOMB, rsv=0x40)),  # inflates past any max_size here
)
CLIENT_WRITES = st.one_of(
    _VALID_MESSAGE,
    _VALID_MESSAGE,
    _VALID_MESSAGE,
    _PING,
    _PING,
    _COMPRESSED,  # valid where permessage-deflate was negotiated
    st.just("large"),  # valid where ws_max_size allows it: read in place
    _CLOSE,
    _MISTAKES,
)
READ_SIZES = st.one_of(st.integers(1, 16), st.integers(17, 1024), st.integers(1025, 70_000))
IO_EVENTS = st.one_of(
    st.tuples(st.just("lost")),
    st.tuples(st.just("timer"), st.sampled_from(list(Timer)), st.sampled_from([True, True, False])),
    st.tuples(st.just("shutdown"), st.sampled_from([1001, 1012])),
)

# -- the machine -------------------------------------------------------------------------------


class CoreMachine(RuleBasedStateMachine):
    """One connection: HTTPConnection, then the WebSocketConnection after the 101."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[type, enum.Enum, enum.Enum]] = []
        self.originals = {cls: cls.__dict__["_set_state"] for cls in TABLES}
        for cls, original in self.originals.items():

            def recording(
                self_: Any, state: Any, original: Any = original, cls: type = cls
            ) -> None:
                self.made.append((cls, self_.state, state))
                original(self_, state)

            cls._set_state = recording  # type: ignore[attr-defined]

    def teardown(self) -> None:
        try:
            if hasattr(self, "conn"):
                self._finish()
        finally:
            for cls, original in self.originals.items():
                cls._set_state = original  # type: ignore[attr-defined]

    # -- setup -------------------------------------------------------------------------------

    @initialize(
        # Mostly a valid upgrade, so that most examples reach the WebSocket phase.
        head=st.one_of(st.sampled_from(HEADS[:3]), st.sampled_from(HEADS)),
        read_at_once=st.booleans(),
        then=st.lists(CLIENT_WRITES, max_size=8),
        app_mode=st.sampled_from(["manual", "reader", "echo"]),
        max_queue=st.sampled_from([1, 2, 4]),
        ws_max_size=st.sampled_from([64, 1 << 17]),
        ping=st.booleans(),
        ping_timeout=st.booleans(),
        timeouts=st.booleans(),
        deflate=st.booleans(),
        shutdown_code=st.sampled_from([1001, 1012]),
    )
    def start(
        self,
        head: bytes,
        read_at_once: bool,
        then: list[bytes | str],
        app_mode: str,
        max_queue: int,
        ws_max_size: int,
        ping: bool,
        ping_timeout: bool,
        timeouts: bool,
        deflate: bool,
        shutdown_code: int,
    ) -> None:
        self.config = Config(
            max_queue=max_queue,
            ws_max_size=ws_max_size,
            ws_ping_interval=20.0 if ping else 0.0,
            ws_ping_timeout=20.0 if ping_timeout else 0.0,
            timeout_handshake=10.0 if timeouts else 0.0,
            timeout_keep_alive=5.0 if timeouts else 0.0,
            ws_per_message_deflate=deflate,
            ws_shutdown_code=shutdown_code,
        )
        self.http = HTTPConnection(
            self.config,
            client=("127.0.0.1", 50000),
            server=("127.0.0.1", 8000),
            server_headers=ServerHeaders([(b"server", b"asgiws")]),
        )
        self.conn: SansIOConnection = self.http
        self.ws: WebSocketConnection | None = None
        self.pending = bytearray(head)  # written by the client, not read by the server yet
        self.closed = False  # the I/O layer closed the transport
        self.lost = False  # connection_lost() was called
        self.app: str | None = None  # the running app's scope type
        self.got: list[dict[str, Any]] = []  # what the app's receive() returned, this cycle
        self.disconnects = 0
        self.after_disconnect = False  # receive() raised ClientDisconnected
        self.output = Output()
        self.bytes_in = self.bytes_out = self.app_bytes = self.app_messages = 0
        self.cycles = 0
        self.shutdown_code: int | None = None
        self.expected_close: int | None = None  # the code our Close must carry
        self.held = 0  # bytes read while the app has not answered the upgrade
        # manual: the app's every call is a rule. reader: it accepts at once and reads whatever
        # comes, as most apps do (returning after the disconnect); echo: and sends it back.
        self.app_mode = app_mode
        self.draining = False
        self.step()
        if read_at_once and head:
            self.read(len(head))  # the usual first read: the whole head (the fast path)
        for write in then:  # what the client sends next, for the rules to read
            self.client_writes(write, None)

    # -- the I/O layer's _step ---------------------------------------------------------------

    def step(self) -> None:
        conn = self.conn
        if conn.upgraded is not None and self.ws is None:
            self.ws = conn.upgraded  # type: ignore[assignment]
            self.conn = conn = conn.upgraded
            # What came behind the upgrade request is parsed now: a message per 6 bytes at
            # most, behind a websocket.connect not read yet, and a PendingClose or disconnect.
            assert len(conn.inbox) <= self.held // 6 + 3
            if self.shutdown_code is not None:
                self.expected_close = self.shutdown_code  # accepted while shutting down
        out = b"".join(conn.data_to_send())
        self.bytes_out += len(out)
        self.output.feed(out)
        if not self.closed and conn.state in CLOSED_STATES:
            self.closed = True  # transport.close(); connection_lost() follows
        if self.app is None:
            scope = conn.next_scope()
            if scope is not None:
                self.app = scope["type"]
                self.got = []
                self.disconnects = 0
                self.after_disconnect = False
                self.cycles += 1
                if self.app_mode != "manual" and self.app == "websocket":
                    self.app_receive()
                    self.app_accepts()
        if self.app_mode != "manual" and self.app == "websocket" and not self.draining:
            self.draining = True
            try:
                self._app_reads()
            finally:
                self.draining = False

    def _app_reads(self) -> None:
        """The reader and echo apps: receive() until it would wait; return after the end."""
        for _ in range(self.config.max_queue + 8):
            if self.disconnects or self.after_disconnect:
                self._app_finished(False)
                return
            before = len(self.got)
            self.app_receive()
            if len(self.got) == before:
                return  # it waits
            message = self.got[-1]
            if self.app_mode == "echo" and message["type"] == "websocket.receive":
                self.app_send({k: v for k, v in message.items()} | {"type": "websocket.send"})

    # -- the client --------------------------------------------------------------------------

    @rule(write=CLIENT_WRITES, read=st.one_of(st.none(), READ_SIZES))
    def client_writes(self, write: bytes | str, read: int | None) -> None:
        """The client writes one thing; the server may read at once (the reads cut the stream
        anywhere, here and in the rules below)."""
        if write == "oversize":
            write = client_frame(0x2, b"a" * (self.config.ws_max_size + 1))
        elif write == "large":  # read in place (read_target) when ws_max_size allows it
            write = client_frame(0x2, bytes(range(256)) * 260)
        assert isinstance(write, bytes)
        self.pending += write
        if read is not None and self._can_read():
            self.read(read)

    def _can_read(self) -> bool:
        return bool(self.pending) and not self.closed and not self.conn.reading_paused()

    @precondition(lambda self: self._can_read())
    @rule(size=READ_SIZES)
    def read(self, size: int) -> None:
        data = bytes(self.pending[:size])
        del self.pending[:size]
        self._read(len(data), lambda: self.conn.receive_data(data))

    @precondition(
        lambda self: self._can_read() and self.ws is not None and self.ws.read_target() is not None
    )
    @rule(size=st.integers(1, 70_000))
    def read_in_place(self, size: int) -> None:
        ws = self.ws
        assert ws is not None
        target = ws.read_target()
        assert target is not None and len(target) > 0
        n = min(size, len(target), len(self.pending))
        target[:n] = self.pending[:n]
        del self.pending[:n]
        self._read(n, lambda: ws.received_into(n))

    def _read(self, n: int, call: Any) -> None:
        before = len(self.conn.inbox)  # type: ignore[attr-defined]
        http_phase = self.ws is None
        if self.conn.state is WSState.OPEN:  # reading pauses on a full inbox until our Close
            assert before < self.config.max_queue
        self.bytes_in += n
        result = call()
        assert type(result) is bool
        if http_phase and self.conn.state is HTTPState.WS_CONNECTING:
            self.held += n  # the head and what came behind it, handed over at the 101
        # Each message is a frame of 6 bytes or more; a PendingClose or disconnect may follow.
        assert len(self.conn.inbox) <= before + n // 6 + 2  # type: ignore[attr-defined]
        self.step()

    # -- the I/O layer -----------------------------------------------------------------------

    @rule(event=IO_EVENTS, now=st.integers(0, 2))
    def io_event(self, event: tuple[Any, ...], now: int) -> None:
        """TCP loss, a timer firing, or shutdown: one rule, taken one time in three, so that
        they do not end most examples within a few steps."""
        if now:
            return
        if event[0] == "lost":
            if not self.lost:
                self.connection_lost()
        elif not self.closed:  # the I/O layer does neither once it closed the transport
            if event[0] == "timer":
                self.timer_fires(event[1], event[2])
            else:
                self.shutdown(event[1])

    def connection_lost(self) -> None:
        self.closed = self.lost = True
        record = self.conn.connection_lost()
        assert record is None or record.status is not None
        self.step()

    def timer_fires(self, timer: Timer, armed: bool) -> None:
        # Mostly the armed timer, as the I/O layer fires it; sometimes another, to be ignored.
        kind = self.conn.timer if armed else timer
        current, state, epoch = self.conn.timer, self.conn.state, self.conn.timer_epoch
        self.conn.timeout(kind)
        if kind is not current or kind is Timer.NONE:  # a stale timer changes nothing
            assert (self.conn.state, self.conn.timer_epoch) == (state, epoch)
        self.step()

    def shutdown(self, code: int) -> None:
        if self.shutdown_code is None:
            self.shutdown_code = code  # the server's code: the first one wins
        code = self.shutdown_code
        if self.ws is not None and self.ws.state is WSState.OPEN:
            self.expected_close = code
        self.conn.shutdown(code)
        self.step()

    # -- the app -----------------------------------------------------------------------------

    @precondition(lambda self: self.app is not None)
    @rule()
    def app_receive(self) -> None:
        try:
            message = self.conn.next_message()
        except ClientDisconnected:
            assert self.app == "websocket"
            assert self.disconnects == 1, "ClientDisconnected before any websocket.disconnect"
            self.after_disconnect = True
            message = None
        if message is not None:
            self._delivered(message)
        self.step()

    def _delivered(self, message: dict[str, Any]) -> None:
        assert isinstance(message, dict)
        kind = message["type"]
        assert self.disconnects == 0 and not self.after_disconnect, (
            f"{kind!r} after websocket.disconnect"
        )
        if self.app == "websocket":
            assert kind in ("websocket.connect", "websocket.receive", "websocket.disconnect"), kind
            if kind == "websocket.connect":
                assert not self.got, "websocket.connect is not the first message"
            if kind == "websocket.receive":
                data = message.get("text", message.get("bytes"))
                assert isinstance(data, str | bytes)
                assert len(data) <= self.config.ws_max_size * (4 if isinstance(data, str) else 1)
            if kind == "websocket.disconnect":
                self.disconnects += 1
                code = message["code"]
                assert is_valid_close_code(code) or code in (1005, 1006), f"app got code {code}"
                assert isinstance(message["reason"], str)
        else:
            assert kind in ("http.request", "http.disconnect"), kind
        self.got.append(message)

    @precondition(lambda self: self.app is not None)
    @rule(message=APP_SENDS)
    def app_send(self, message: Any) -> None:
        if isinstance(message, dict):
            message = {k: (list(v) if isinstance(v, list) else v) for k, v in message.items()}
        self.app_bytes += payload_size(message)
        self.app_messages += 1
        before = len(self.conn.inbox)  # type: ignore[attr-defined]
        epoch, state = self.conn.timer_epoch, self.conn.state
        try:
            waiting = self.conn.send(message)
        except (RuntimeError, ClientDisconnected):
            pass  # documented: an app mistake, or the connection is closed
        else:
            assert type(waiting) is int and waiting >= UNCHANGED
            if waiting == UNCHANGED:
                # Nothing for the I/O layer to do: nothing to write, no timer to act on.
                assert self.conn.data_to_send() == []
                assert (self.conn.timer_epoch, self.conn.state) == (epoch, state)
                assert message.get("type") == "http.response.start"
        assert len(self.conn.inbox) <= before + 1  # type: ignore[attr-defined]
        self.step()

    @precondition(lambda self: self.app == "websocket")
    @rule()
    def app_accepts(self) -> None:
        self.app_send({"type": "websocket.accept"})  # the usual answer, often

    @precondition(lambda self: self.app is not None)
    @rule(raises=st.booleans(), now=st.integers(0, 2))
    def app_finishes(self, raises: bool, now: int) -> None:
        if not now:  # one time in three: most apps run a while
            self._app_finished(raises)

    def _app_finished(self, raises: bool) -> None:
        record = self.conn.app_finished(ValueError("the app failed") if raises else None)
        assert record.status is None or 100 <= record.status <= 599
        self.app = None
        self.step()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def transitions_are_in_the_table(self) -> None:
        bad = illegal(self.made)
        assert not bad, f"transitions missing from asgiws.states: {bad}"

    @invariant()
    def at_most_one_disconnect(self) -> None:
        if hasattr(self, "conn"):
            assert self.disconnects <= 1

    @invariant()
    def our_close_carries_the_expected_code(self) -> None:
        if hasattr(self, "conn") and self.expected_close is not None:
            if self.output.our_close is not False:
                assert self.output.our_close == self.expected_close, (
                    f"our Close has {self.output.our_close}, shutdown asked {self.expected_close}"
                )

    @invariant()
    def output_is_bounded_by_input(self) -> None:
        if hasattr(self, "conn"):
            bound = (
                1024 * (self.cycles + 1)
                + 8 * self.bytes_in
                + 2 * self.app_bytes
                + 32 * self.app_messages
            )
            assert self.bytes_out <= bound, (self.bytes_out, bound)

    @invariant()
    def inbox_is_bounded(self) -> None:
        if not hasattr(self, "conn"):
            return
        ws = self.ws
        if ws is None:
            return
        inbox = len(ws.inbox)
        if ws.state is WSState.OPEN or ws.state is WSState.REMOTE_CLOSING:
            assert ws.reading_paused() is (inbox >= self.config.max_queue)
        else:
            # RFC 6455 §7.1.1: after our Close, the peer's is read whatever the app does.
            assert not ws.reading_paused() or ws.state is WSState.CLOSED

    @invariant()
    def a_timer_bounds_every_wait_on_the_peer(self) -> None:
        if not hasattr(self, "conn") or self.closed:
            return
        conn = self.conn
        if conn.state is WSState.LOCAL_CLOSING or conn.state is WSState.REMOTE_CLOSING:
            assert conn.timer is Timer.CLOSE, f"{conn.state.name} with timer {conn.timer.name}"
        elif conn.state is HTTPState.IDLE and self.config.timeout_handshake > 0:
            assert conn.timer in (Timer.HEAD, Timer.KEEP_ALIVE), conn.timer
        elif conn.state in CLOSED_STATES:
            assert conn.timer is Timer.NONE

    # -- the end -----------------------------------------------------------------------------

    def _finish(self) -> None:
        """The transport goes (if it has not), then an app still running reads to the end:
        a WebSocket app gets exactly one websocket.disconnect, and then ClientDisconnected."""
        if not self.lost:
            self.connection_lost()
        if self.app is None:
            return
        for _ in range(self.config.max_queue + 200):
            try:
                message = self.conn.next_message()
            except ClientDisconnected:
                assert self.app == "websocket"
                break
            if message is None:
                break
            self._delivered(message)
            if self.app == "http" and message["type"] == "http.disconnect":
                break
        if self.app == "websocket":
            assert self.disconnects == 1, f"{self.disconnects} websocket.disconnect, not one"
            with pytest.raises(ClientDisconnected):
                self.conn.next_message()


@pytest.mark.timeout(0 if LONG_RUN else 120)
def test_the_core_as_a_state_machine() -> None:
    run_state_machine_as_test(CoreMachine, settings=profile(80, 5000, ci_steps=80, long_steps=100))


def test_an_accept_during_a_restart_closes_with_the_restart_code() -> None:
    """Found by the state machine: shutdown(1012) (a restart, server.stop(1012)) while the app
    has not answered the upgrade, then the app accepts: the Close must carry 1012, the code the
    server shuts down with, not --ws-shutdown-code's default 1001."""
    conn = HTTPConnection(Config(), client=None, server=None)
    conn.receive_data(ws_request("/", key=RFC_KEY))
    assert conn.next_scope() is not None
    conn.shutdown(1012)
    conn.send({"type": "websocket.accept"})
    ws = conn.upgraded
    assert ws is not None
    out = b"".join(ws.data_to_send())
    assert out.endswith(b"\x88\x02\x03\xf4")  # Close 1012
    assert ws.next_message() == {"type": "websocket.connect"}
    assert ws.next_message() == {"type": "websocket.disconnect", "code": 1012, "reason": ""}


@pytest.mark.parametrize("cut", [None, 2, 1])
def test_an_upgrade_with_a_body_is_refused_however_its_bytes_come(cut: int | None) -> None:
    """Found while fuzzing the request heads: an upgrade request announcing a body got the 101
    when the body had fully arrived before the app accepted, and the 400 when it had not; the
    head alone now decides (400 either way)."""
    data = ws_request("/", extra=[("Content-Length", "2")]) + b"ab"
    conn = HTTPConnection(Config(), client=None, server=None)
    if cut is None:
        conn.receive_data(data)
    else:
        conn.receive_data(data[:-cut])
    assert conn.next_scope() is not None
    with pytest.raises(RuntimeError, match="carried a body"):
        conn.send({"type": "websocket.accept"})
    assert b"".join(conn.data_to_send()).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert conn.upgraded is None
