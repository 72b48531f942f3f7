"""HTTP/1.1 response bytes written without h11, for requests the fast path served.

A plain request that :mod:`asgiws.fasthead` took (HTTP/1.1, no Transfer-Encoding, no Upgrade,
no Expect) is answered here instead of through an ``h11.Connection``: the head, the body framing
and the end of the message. The bytes are the ones h11 0.16 writes for the same response to the
same request, byte for byte (``tests/test_writer.py`` checks that against h11 on generated
responses), so which path served a request never shows on the wire. What h11 decides is
decided here by the same rules:

* the response headers are validated and normalised as h11 does (a field name is a token; a
  value has no NUL and no white space at either end; Content-Length is digits, repeated values
  must agree and are written once; Transfer-Encoding may only be ``chunked``): RuntimeError
  otherwise, raised when the app sends ``http.response.start``;
* the body framing (RFC 9112 §6.3): a response to HEAD and a 204 or 304 have no body; else
  Transfer-Encoding ``chunked`` wins over Content-Length; with neither, the body is chunked and
  ``Transfer-Encoding: chunked`` is added (the client is HTTP/1.1). A HEAD response's headers
  are those of a GET's;
* keep-alive: when the request or the response says ``Connection: close`` (the server's drain
  adds it to the response), the connection ends after the response; when the request said it,
  the response's Connection header is rewritten to hold ``close`` as h11 rewrites it;
* a body longer or shorter than its Content-Length is an error of the app.

Sans-IO, no state but the one response in progress.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final

from ._abnf import TOKEN_BYTES
from .asgi import Headers, reason_phrase

__all__ = [
    "ResponseWriter",
    "check_fields",
    "comma_tokens",
    "plain_lines",
    "plain_response",
    "whole_response",
]

_FIELD_NAME: Final = re.compile(TOKEN_BYTES)
# h11's field-value: runs of bytes that are neither NUL nor white space, separated by SP / HTAB.
_VALUE: Final = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
_FIELD_VALUE: Final = re.compile(_VALUE)
# The field lines of the common response (plain_lines): names already lower-case tokens, values
# as above (so no CR or LF: a line cannot hide another), at most one Content-Length of digits,
# and none of the headers the server frames with or adds itself.
_PLAIN_LINES: Final = re.compile(
    rb"(?:(?:content-length: [0-9]{1,20}"
    rb"|(?!(?:content-length|transfer-encoding|connection|host|server|date):)"
    + TOKEN_BYTES.replace(b"A-Z", b"")
    + rb": "
    + _VALUE
    + rb")\r\n)*"
)
# The Content-Length values of a block _PLAIN_LINES took. Values hold no LF, so a line (and a
# name) begins only at the start or after one: the look-behind refuses the words anywhere else.
# The pattern begins with its literal, which the regex engine scans for quickly. (findall, not
# ``in``: on CPython 3.11 ``bytes in bytes`` first tries the needle as an integer, raising and
# clearing a TypeError each time.)
_PLAIN_LENGTHS: Final = re.compile(rb"content-length: (?<![^\n]content-length: )([0-9]+)\r")
_DIGITS: Final = re.compile(rb"[0-9]+")
# Header lists plain_lines took, as tuples, with what it returned: an equal list is taken again
# without a check. Equal means equal pairs of equal bytes (a bytes-like value that compares equal,
# such as a read-only memoryview, gives the same bytes on the general path too). At most this
# many, for the whole process; the table starts again when full.
PLAIN_SEEN_SIZE: Final = 256
_PLAIN_SEEN: dict[tuple[object, ...], tuple[bytes, bytes | None]] = {}
_MAX_DIGITS: Final = 20  # h11's limit on a Content-Length value
_NO_CONTENT: Final = (204, 304)

# How the body of the response in progress is written.
_NONE: Final = 0  # no response started
_LENGTH: Final = 1  # exactly ``left`` more bytes
_CHUNKED: Final = 2
_DONE: Final = 3  # complete, or broken by an error


def invalid(problem: str) -> RuntimeError:
    return RuntimeError(f"invalid HTTP response: {problem}")


def check_fields(headers: Headers) -> Headers:
    """An app's response headers (names lower-cased) validated and normalised as h11 does."""
    out: Headers = []
    seen_length: bytes | None = None
    saw_coding = False
    for name, value in headers:
        if _FIELD_NAME.fullmatch(name) is None:
            raise invalid(f"Illegal header name {name!r}")
        if _FIELD_VALUE.fullmatch(value) is None:
            raise invalid(f"Illegal header value {value!r}")
        if name == b"content-length":
            lengths = {length.strip() for length in value.split(b",")}
            if len(lengths) != 1:
                raise invalid("conflicting Content-Length headers")
            value = lengths.pop()
            if _DIGITS.fullmatch(value) is None or len(value) > _MAX_DIGITS:
                raise invalid("bad Content-Length")
            if seen_length is None:
                seen_length = value
            elif seen_length != value:
                raise invalid("conflicting Content-Length headers")
            else:
                continue  # the same length again: written once
        elif name == b"transfer-encoding":
            if saw_coding:
                raise invalid("multiple Transfer-Encoding headers")
            value = value.lower()
            if value != b"chunked":
                raise invalid("Only Transfer-Encoding: chunked is supported")
            saw_coding = True
        out.append((name, value))
    return out


def plain_lines(headers: object) -> tuple[bytes, bytes | None] | None:
    """The common response's headers as field lines, each ending in CRLF, and its Content-Length
    value (None when the app gave none), in one check for the whole block: a list of
    (bytes, bytes) pairs that check_fields would pass unchanged, with no Transfer-Encoding,
    Connection, Host, Server or Date and at most one Content-Length. None sends the headers the
    general way (check_headers, check_fields, ServerHeaders.merged), which also names a
    mistake."""
    if type(headers) is not list:
        return None
    try:
        # Most responses repeat a header list seen before (a constant list, or the same type
        # and length): an equal one was taken, so this one is too, and gives the same block.
        seen: tuple[object, ...] = tuple(headers)
        found = _PLAIN_SEEN.get(seen)
        key: tuple[object, ...] | None = seen
    except (TypeError, BytesWarning):  # an unhashable pair (a list, a bytearray value); -bb
        key = found = None
    if found is not None:
        return found
    try:
        lines = [
            b"%s: %s\r\n" % (name, value)
            for name, value in headers
            if type(name) is bytes and type(value) is bytes
        ]
    except (TypeError, ValueError):
        return None  # not pairs
    if len(lines) != len(headers):
        return None
    block = b"".join(lines)
    if _PLAIN_LINES.fullmatch(block) is None:
        return None
    lengths = _PLAIN_LENGTHS.findall(block)
    if len(lengths) > 1:
        return None  # two of them: check_fields decides
    taken = block, lengths[0] if lengths else None
    if key is not None:
        if len(_PLAIN_SEEN) >= PLAIN_SEEN_SIZE:
            _PLAIN_SEEN.clear()  # many distinct lists (lengths that vary): start again
        _PLAIN_SEEN[key] = taken
    return taken


def whole_response(
    status: int, reason: bytes, lines: bytes, length: bytes | None, body: bytes
) -> bytes | None:
    """A whole response with all of its body in one buffer, from the header block as it goes
    out (``lines``: field lines, each ending in CRLF, with neither framing nor Connection
    headers but the app's one Content-Length, whose value is ``length``): the bytes h11 writes
    for it, with the Content-Length that ``responses.complete_head`` adds when the app gave
    none. None when the app's Content-Length is not the body's (the general path names that
    mistake). Not for a 204 or 304, which carry no body."""
    size = len(body)
    if length is None:
        end = b"content-length: %d\r\n\r\n" % size
    elif int(length) == size:
        end = b"\r\n"
    else:
        return None
    return b"HTTP/1.1 %d %s\r\n%s%s%s" % (status, reason, lines, end, body)


# The status line of every status with a reason phrase of its own (HTTPStatus), made once: a
# constant table, no state (another status's line is formatted each time).
_STATUS_LINES: Final = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, reason_phrase(status.value))
    for status in HTTPStatus
}


def plain_response(
    status: int, lines: bytes, more: bytes, length: bytes | None, body: bytes
) -> bytes | None:
    """:func:`whole_response` with the status's own reason phrase (``asgi.reason_phrase``) and
    the header block in two parts (``lines``, then ``more``: the app's, then the server's): the
    same bytes, joined instead of formatted, the status line taken from a table made at import,
    the parts not joined first."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))
    size = len(body)
    if length is None:
        return b"".join((line, lines, more, b"content-length: %d\r\n\r\n" % size, body))
    if int(length) == size:
        return b"".join((line, lines, more, b"\r\n", body))
    return None


def comma_tokens(headers: Headers, name: bytes) -> list[bytes]:
    """The comma-separated values of every ``name`` header, lower-cased, empty ones left out."""
    out: list[bytes] = []
    for found, value in headers:
        if found == name:
            for item in value.lower().split(b","):
                item = item.strip()
                if item:
                    out.append(item)
    return out


class ResponseWriter:
    """The bytes of one response at a time, to a request the fast path took."""

    __slots__ = ("_left", "_mode", "keep_alive")

    def __init__(self) -> None:
        self._mode = _NONE
        self._left = 0
        self.keep_alive = True  # the connection may serve another request after this one

    def head(
        self,
        status: int,
        reason: bytes,
        headers: Headers,
        *,
        method: bytes,
        close: bool,
    ) -> bytes:
        """The status line and header block of a final response (status 200-999, headers
        checked by :func:`check_fields`, server headers merged); ``close``: the request said
        ``Connection: close``."""
        chunked = False
        length = 0
        framing = False  # a Content-Length or Transfer-Encoding header is among them
        connection = False
        for name, _ in headers:
            if name == b"content-length" or name == b"transfer-encoding":
                framing = True
            elif name == b"connection":
                connection = True
        if status not in _NO_CONTENT:
            if not framing:
                chunked = True  # no framing given: chunked, to an HTTP/1.1 client
            else:
                names = [name for name, _ in headers]
                if b"transfer-encoding" in names:
                    chunked = True
                else:
                    length = int(headers[names.index(b"content-length")][1])
        if chunked:
            # Transfer-Encoding wins over Content-Length (RFC 9112 §6.3), written last.
            headers = [
                h for h in headers if h[0] != b"content-length" and h[0] != b"transfer-encoding"
            ]
            headers.append((b"Transfer-Encoding", b"chunked"))
        if close:
            # The request said close: h11 makes the response say so too, in its own spelling.
            tokens = set(comma_tokens(headers, b"connection"))
            tokens.discard(b"keep-alive")
            tokens.add(b"close")
            headers = [h for h in headers if h[0] != b"connection"]
            headers.extend((b"Connection", token) for token in sorted(tokens))
            self.keep_alive = False
        elif connection and b"close" in comma_tokens(headers, b"connection"):
            self.keep_alive = False  # the response says close (the app, or the server's drain)
        if method == b"HEAD" or status in _NO_CONTENT:
            self._mode, self._left = _LENGTH, 0
        elif chunked:
            self._mode = _CHUNKED
        else:
            self._mode, self._left = _LENGTH, length
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for header in headers:
            if header[0] == b"host":
                # h11 writes Host first: never in a sane response, but the same bytes.
                first = [h for h in headers if h[0] == b"host"]
                headers = first + [h for h in headers if h[0] != b"host"]
                break
        lines.extend([b"%s: %s\r\n" % (name, value) for name, value in headers])
        lines.append(b"\r\n")
        return b"".join(lines)

    def whole(self, status: int, reason: bytes, headers: Headers, body: bytes) -> bytes | None:
        """The whole response in one buffer, for the common case, in one pass over the
        headers: the app sent its head and then all of its body at once, to a GET or POST
        that did not say close. None (then :meth:`head`, :meth:`data` and :meth:`end` write it)
        for a 204 or 304, Transfer-Encoding, Connection or Host among the headers, or a
        Content-Length other than the body's. The bytes are :meth:`head`'s with the
        Content-Length that ``responses.complete_head`` adds, then the body."""
        if status in _NO_CONTENT:
            return None
        length = None
        for name, value in headers:
            if name == b"content-length":
                length = value  # digits, once (check_fields)
            elif name == b"transfer-encoding" or name == b"connection" or name == b"host":
                return None
        lines = b"".join([b"%s: %s\r\n" % (name, value) for name, value in headers])
        whole = whole_response(status, reason, lines, length, body)
        if whole is not None:
            self._mode = _DONE
        return whole

    def data(self, data: bytes) -> bytes:
        """Body bytes, framed."""
        mode = self._mode
        if mode == _LENGTH:
            if len(data) > self._left:
                self._mode = _DONE
                raise invalid("Too much data for declared Content-Length")
            self._left -= len(data)
            return data
        if mode == _CHUNKED:
            if not data:
                return b""
            return b"%x\r\n%s\r\n" % (len(data), data)
        raise invalid("no response body is being written")

    def end(self) -> bytes:
        """The end of the message."""
        mode = self._mode
        self._mode = _DONE
        if mode == _LENGTH:
            if self._left:
                raise invalid("Too little data for declared Content-Length")
            return b""
        if mode == _CHUNKED:
            return b"0\r\n\r\n"
        raise invalid("no response body is being written")

    def reset(self) -> None:
        """Ready for the next request's response."""
        self._mode = _NONE
        self._left = 0
        self.keep_alive = True
