"""The HTTP/1.1 bytes of one connection, both ways: the fast path, with h11 behind it.

A whole, plain request head that arrives in one read (:mod:`asgiws.fasthead`, a strict subset
of what h11 accepts) is served without h11: a request with no body or a Content-Length body is
read here, and its response is written by :class:`asgiws.writer.ResponseWriter`, byte for byte
as h11 would. Every other head goes to h11, created on first need: one the fast path cannot
take (split across reads, chunked, HTTP/1.0, ``Expect``, a non-WebSocket ``Upgrade``,
``CONNECT``, anything odd), and the answers that need h11's state (100 Continue, a denial of an
upgrade). When h11 comes in after the fast path took an upgrade head, it is given that head and
the bytes behind it, and brought to where it would be had it parsed them itself. At the end of
every cycle h11 is let go, so the next request may take the fast path again. Sans-IO.
"""

from __future__ import annotations

import re
from typing import Any, Final

import h11

from .asgi import Headers, raw_response
from .fasthead import RequestHead, parse_head
from .handshake import Fields, asks_upgrade, handshake_fields
from .responses import ResponseHead
from .writer import ResponseWriter, comma_tokens

# A documented h11 state (h11's docs list it with DONE and the rest) that its __all__ leaves out.
MIGHT_SWITCH_PROTOCOL = h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]
_WAITING = (h11.DONE, MIGHT_SWITCH_PROTOCOL)


class Marker:
    """One of the ends :meth:`Wire.next_event` reports."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END: Final = Marker("END")  # a request's end
LAST_END: Final = Marker("LAST_END")  # the last request's end: nothing behind it is read
CLOSED: Final = Marker("CLOSED")  # the client's EOF
_BODY_DONE = -1  # _body_left once the request's last body bytes are queued for the app


class Wire:
    """Request bytes in, response bytes out, for one HTTPConnection."""

    __slots__ = (
        "_body_left",
        "_buffer",
        "_close",
        "_early",
        "_h11",
        "_scan",
        "_scanned",
        "_writer",
        "fast",
        "limit",
        "parked",
        "plain",
        "problem",
        "taken",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit  # h11_max_incomplete_event_size: the largest request head, bytes
        self._h11: h11.Connection | None = None
        self.taken = b""  # a request head the fast path took, until the 101 or h11 needs it
        self._early = b""  # bytes that came behind that head, before the 101
        self.parked = 0  # bytes received behind the current request, waiting their turn
        # The raw bytes of the request head h11 is reading, checked before h11 may hand it on
        # (see head_syntax_problem); None while h11 reads a body or waits for the next cycle.
        self._scan: bytes | None = b""
        self._scanned = 0  # bytes of the head scanned so far
        self.problem: str | None = None  # why the head being read is refused with 400
        # A plain request the fast path took: served without h11 (fast), its body bytes still
        # to come (or _BODY_DONE), the bytes behind it, and whether it said Connection: close.
        self.fast = False
        self._body_left = _BODY_DONE
        self._buffer = b""
        self._close = False
        # fast, and the request did not say close: a whole response (its head and all of its
        # body, see ResponseWriter.whole) may go out as one buffer, with no writer.
        self.plain = False
        self._writer: ResponseWriter | None = None  # made for the first fast request

    # -- in --------------------------------------------------------------------------------------

    def fast_head(self, data: bytes) -> tuple[RequestHead, Fields, bool] | None:
        """The first bytes of a request cycle, taken without h11 when they hold a whole, plain
        request head (see asgiws.fasthead): the head, its handshake fields, and whether it is
        a WebSocket upgrade. None leaves the bytes to h11."""
        if self._h11 is not None:
            return None
        head = parse_head(data, self.limit)
        if head is None:
            return None
        fields = handshake_fields(head.headers)
        if b"upgrade" in fields:
            # (asks_upgrade looked at only here: a plain request has no Upgrade header.)
            if asks_upgrade(fields):
                if head.content_length or head.method == b"CONNECT":
                    # h11 reads it, and the accept refuses an upgrade with a body; CONNECT is
                    # h11's too, refused with 501 before the handshake is looked at (a fuzzed
                    # CONNECT upgrade got 405 here and 501 in two reads).
                    return None
                self.taken = data[: head.size]
                self._early = data[head.size :]
                return head, fields, True
            return None  # not a WebSocket's: h11's state machine handles it
        if b"expect" in fields or head.method == b"CONNECT":
            return None  # h11's state machine handles those
        self.fast = True
        connection = fields.get(b"connection")
        close = self._close = connection is not None and b"close" in comma_tokens(
            [(b"connection", value) for value in connection], b"connection"
        )
        self.plain = not close
        self._body_left = head.content_length
        self._buffer = data[head.size :]
        return head, fields, False

    def fast_body(self, data: bytes) -> tuple[bytes, bool] | None:
        """Bytes that came during a fast request's cycle (none: those behind its head): the
        body bytes among them and whether more are to come, or None when none are for the
        app. What follows the body waits, parked, for the next cycle."""
        left = self._body_left
        if left == _BODY_DONE:
            if data:
                self._buffer += data
                self.parked = len(self._buffer)
            return None
        buffer = self._buffer + data if self._buffer else data
        body = buffer[:left]
        self._buffer = buffer[left:]
        self.parked = len(self._buffer)
        left -= len(body)
        if left:
            self._body_left = left
            return (body, True) if body else None
        self._body_left = _BODY_DONE
        return body, False

    def head_body(self) -> tuple[bytes, bool] | None:
        """:meth:`fast_body` with no new bytes, right after :meth:`fast_head` took a plain head:
        the body bytes that came with the head, without the joining that later reads need."""
        left = self._body_left
        buffer = self._buffer
        if len(buffer) >= left:
            # All of the body came (or there is none): what follows waits for the next cycle.
            self._body_left = _BODY_DONE
            if left:
                body = buffer[:left]
                buffer = self._buffer = buffer[left:]
            else:
                body = b""
            self.parked = len(buffer)
            return body, False
        self._body_left = left - len(buffer)
        self._buffer = b""
        self.parked = 0
        return (buffer, True) if buffer else None

    def hold(self, data: bytes) -> bool:
        """Keep bytes that came behind a fast-path upgrade head the app has not answered yet;
        False when there is no such head (give them to :meth:`receive`)."""
        if not self.taken or self._h11 is not None:
            return False
        self._early += data
        self.parked += len(data)
        return True

    def receive(self, data: bytes, *, in_cycle: bool) -> None:
        """Bytes for h11. While a request is being served (``in_cycle``), those behind it are
        counted as parked: they wait in h11's buffer until the cycle is done. A request head is
        checked as its bytes come (:attr:`problem`)."""
        conn = self.h11()
        if in_cycle and conn.their_state in _WAITING:
            self.parked += len(data)
        elif self._scan is not None:
            self._check(data)
        conn.receive_data(data)

    def _check(self, data: bytes) -> None:
        """Check the next bytes of a request head: only they are scanned, with the last bytes
        before them (kept in ``_scan``) for what spans reads, so that a head sent a byte at a
        time costs no more than one sent whole. Scanning stops at the head's end, or once it is
        too large (h11 answers that with 431)."""
        before = self._scan or b""
        window = before + data
        end = window.find(b"\r\n\r\n")
        if end >= 0:
            window = window[: end + 4]
        self.problem = head_syntax_problem(window, len(before), complete=end >= 0)
        if end >= 0:
            self._scan = None
        else:
            self._scanned += len(data)
            self._scan = window[-3:] if self._scanned <= self.limit else None

    def h11(self) -> h11.Connection:
        """The h11 connection, created on first need."""
        conn = self._h11
        if conn is not None:
            return conn
        conn = self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limit)
        if self.taken:
            conn.receive_data(self.taken + self._early)
            self.taken = self._early = b""
            # The Request, its EndOfMessage, then PAUSED: the upgrade waits for an answer.
            for _ in range(3):
                event = conn.next_event()
                if event is h11.PAUSED or event is h11.NEED_DATA:
                    break
        return conn

    def next_event(self) -> RequestHead | bytes | Marker | None:
        """What h11 read next: a request head (``size`` 0), body bytes, :data:`END` of a
        request, :data:`LAST_END` of the last one (HTTP/1.0 or Connection: close: bytes
        behind it are not read as another, RFC 9112 §9.6; h11 would call them an error),
        :data:`CLOSED` (the client's EOF), or None: more bytes are needed. Raises
        h11.RemoteProtocolError."""
        conn = self.h11()
        event = conn.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return None
        if isinstance(event, h11.Request):
            return RequestHead(
                event.method, event.target, event.http_version, list(event.headers), 0
            )
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return LAST_END if conn.their_state is h11.MUST_CLOSE else END
        if isinstance(event, h11.ConnectionClosed):
            return CLOSED
        raise AssertionError(f"h11 event {event!r}")  # h11 gives a server nothing else

    @property
    def paused(self) -> bool:
        """More than one request head's worth of bytes wait behind the current request.
        Reading goes on until then, so that a client that leaves is noticed."""
        return self.parked > self.limit

    @property
    def waiting_for_100_continue(self) -> bool:
        conn = self._h11
        return conn is not None and bool(conn.client_is_waiting_for_100_continue)

    @property
    def body_pending(self) -> bool:
        """The request (an upgrade) carries a body that has not been read: h11 is not waiting
        to switch protocols."""
        conn = self._h11
        return conn is not None and conn.their_state is not MIGHT_SWITCH_PROTOCOL

    # -- out -------------------------------------------------------------------------------------

    def start(self, head: ResponseHead, method: bytes) -> bytes:
        """The head of the response to the current request."""
        if self.fast:
            writer = self._writer
            if writer is None:
                writer = self._writer = ResponseWriter()
            return writer.head(
                head.status, head.reason, head.headers, method=method, close=self._close
            )
        return self.send(head.event())

    def whole(self, head: ResponseHead, body: bytes) -> bytes | None:
        """A whole response (its head, then all of its body) in one buffer, when the fast path
        served the request, the request did not say close and the writer takes it
        (:meth:`ResponseWriter.whole`); else None, and :meth:`start`, :meth:`data` and
        :meth:`end` write it."""
        if not self.fast or self._close:
            return None
        writer = self._writer
        if writer is None:
            writer = self._writer = ResponseWriter()
        return writer.whole(head.status, head.reason, head.headers, body)

    def data(self, data: bytes) -> bytes:
        """Response body bytes, framed; RuntimeError when the response cannot carry them."""
        if self.fast:
            assert self._writer is not None
            return self._writer.data(data)
        return self.send(h11.Data(data=data))

    def end(self) -> bytes:
        """The end of the response; RuntimeError when its body fell short."""
        if self.fast:
            assert self._writer is not None
            return self._writer.end()
        return self.send(h11.EndOfMessage())

    def send(self, event: Any) -> bytes:
        """One response event as bytes, through h11; RuntimeError when h11 finds the response
        invalid."""
        try:
            return self.h11().send(event) or b""
        except h11.LocalProtocolError as exc:
            raise RuntimeError(f"invalid HTTP response: {exc}") from None

    def send_refusal(
        self, status: int, reason: bytes, headers: Headers, body: bytes, *, method: bytes
    ) -> list[bytes]:
        """A whole error response; written without h11 when h11 has given up on the
        connection (a request it could not parse)."""
        head = method == b"HEAD"
        if self.fast:
            writer = ResponseWriter()
            out = [writer.head(status, reason, headers, method=method, close=True)]
            if not head:
                out.append(writer.data(body))
            return out
        conn = self.h11()
        try:
            out = [conn.send(h11.Response(status_code=status, headers=headers, reason=reason))]
            if not head:
                out.append(conn.send(h11.Data(data=body)))
            out.append(conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            return [raw_response(status, headers, body)]
        return [chunk for chunk in out if chunk]

    # -- cycles ------------------------------------------------------------------------------

    def next_cycle(self) -> bool:
        """Start the next request cycle when both sides are done with this one (keep-alive);
        False when the connection cannot go on (Connection: close, HTTP/1.0, an unread body).
        h11 is let go: the bytes of the next request (:meth:`buffered`) may take the fast
        path."""
        if self.fast:
            if self._body_left != _BODY_DONE or self._close:
                return False
            writer = self._writer  # None when every response was whole (Wire.plain)
            if writer is not None:
                if not writer.keep_alive:
                    return False
                writer.reset()
            self.fast = self.plain = False
            # The head scan's state is as this cycle's start left it: only h11's heads are
            # scanned (receive), and a cycle the fast path took never gives bytes to h11.
            self.parked = 0
            return True
        else:
            conn = self._h11
            if conn is None or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return False
            self._buffer = bytes(conn.trailing_data[0])
            self._h11 = None
        self.parked = 0
        self._scan, self._scanned, self.problem = b"", 0, None
        return True

    def has_buffered(self) -> bool:
        """Bytes of a next request are already here."""
        return bool(self._buffer)

    def buffered(self) -> bytes:
        """At the start of a cycle: the bytes that came behind the last request, taken out."""
        data, self._buffer = self._buffer, b""
        return data

    def switch(self) -> bytes | bytearray:
        """The 101 is sent: the bytes that came right behind the request, which start the
        WebSocket stream. h11's part is over; its buffers are freed."""
        conn = self._h11
        if conn is None:
            trailing: bytes | bytearray = self._early
        else:
            trailing = conn.trailing_data[0]
        self._h11 = None
        self.taken = self._early = b""
        self.parked = 0
        return trailing


def head_problem(
    method: bytes, target: bytes, headers: Headers, *, measure: bool, limit: int, max_count: int
) -> str | None:
    """Why a request head is refused with 431, or None. h11 bounds only a head still arriving;
    one that came whole in a read is measured here (``measure``: the request line and header
    lines as sent, give or take white space). The fast path takes no head over the limit."""
    if measure:
        size = len(method) + len(target) + 13 + 4 * len(headers)
        for name, value in headers:
            size += len(name) + len(value)
        if size > limit:
            return f"request head too large (the limit is {limit} bytes)"
    if len(headers) > max_count:
        return f"too many header fields: {len(headers)} (the limit is {max_count})"
    return None


# h11 shows the offending bytes of a malformed head as a bytearray repr.
_BYTEARRAY_REPR = re.compile(r"bytearray\((b'.*?')\)")


def bad_request_reason(exc: h11.RemoteProtocolError, limit: int) -> str:
    """The plain-text reason of the error response to a head h11 refused; ``limit`` is the
    largest head, for a 431."""
    if exc.error_status_hint == 431:
        return f"request head too large (the limit is {limit} bytes)"
    return "malformed request: " + _BYTEARRAY_REPR.sub(r"\1", str(exc) or "unparsable")


# Control bytes other than HTAB, CR and LF: never allowed in a request head (RFC 9110 §5.5:
# field values are visible characters, SP, HTAB and obs-text; RFC 9112 §3: the request line
# has none either).
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def head_syntax_problem(window: bytes, start: int, *, complete: bool) -> str | None:
    """Why a request head gets 400 where h11 would let it through, judging the bytes of
    ``window`` from ``start`` on (those before are the end of what was judged already, for
    what spans reads; ``complete``: the window ends with the head's blank line): a bare LF or
    CR as a line end (RFC 9112 §2.2), obs-fold (a field line continued on the next, RFC 9112
    §5.2), a control byte other than HTAB (RFC 9110 §5.5). Stricter than h11 on purpose: a
    server that reads a head differently from another hop is how requests are smuggled."""
    new = window[start:]
    # A LF is a line end only right after a CR; a CR only right before a LF.
    body = new[1:] if new[:1] == b"\n" and window[start - 1 : start] == b"\r" else new
    lone = body.replace(b"\r\n", b"")
    if not complete and body.endswith(b"\r"):
        lone = lone[:-1]  # its LF may be in the next read
    if b"\n" in lone or b"\r" in lone or (window[start - 1 : start] == b"\r" and body is new):
        return "malformed request: a line ends in a bare LF or CR, not CRLF"
    tail = window[max(0, start - 2) :]
    if b"\r\n " in tail or b"\r\n\t" in tail:
        return "malformed request: obs-fold (a header line continued on the next line)"
    found = _CTL.search(new)
    if found is not None:
        return f"malformed request: control byte 0x{found[0][0]:02x} in the request head"
    return None
