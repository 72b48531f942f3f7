"""asgiws.fasthead.parse_head against h11, its oracle.

parse_head may refuse anything (``None`` sends the bytes to h11), but a head it returns must be
exactly what h11 makes of the same bytes: an ``h11.Request`` with the same method, target,
HTTP version and ``list(headers)``, then ``EndOfMessage`` (no body), and the head must be
``size`` bytes long. ``check`` asserts all of that; the Hypothesis tests feed it heads built
from a grammar that makes valid and subtly invalid heads, header blocks with bytes from the
whole 0-255 range, and mutations of a browser's upgrade request.
``test_clean_heads_are_accepted`` keeps the fast path honest the other way: a head built only
from the plain grammar must not fall back. The example tests pin each refusal.

The number of examples per property is ``FASTHEAD_EXAMPLES`` (default 500).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asgiws.fasthead import RequestHead, parse_head

SETTINGS = settings(
    max_examples=int(os.environ.get("FASTHEAD_EXAMPLES", "500")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

BIG = 1 << 16

# -- the oracle -------------------------------------------------------------------------------


def h11_connection(data: bytes | bytearray, max_size: int) -> h11.Connection:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
    conn.receive_data(bytes(data))
    return conn


def check(data: bytes | bytearray, max_size: int = BIG) -> RequestHead | None:
    """parse_head(data), after asserting that h11 agrees with every head it returns."""
    head = parse_head(data, max_size)
    if head is None:
        return None
    assert isinstance(head.method, bytes)
    assert isinstance(head.target, bytes)
    assert all(type(n) is bytes and type(v) is bytes for n, v in head.headers)
    # size: the first CRLF CRLF ends the head, which fits in max_size.
    assert head.size == bytes(data).find(b"\r\n\r\n") + 4
    assert head.size <= max_size
    # h11 on all the bytes: the same Request, the rest left in its buffer, then the body of
    # content_length bytes (as much of it as is there).
    conn = h11_connection(data, max_size)
    request = conn.next_event()
    assert isinstance(request, h11.Request), request
    assert request.method == head.method
    assert request.target == head.target
    assert request.http_version == head.http_version == b"1.1"
    assert list(request.headers) == head.headers
    assert conn.trailing_data == (bytes(data[head.size :]), False)
    body = bytes(data[head.size : head.size + head.content_length])
    got = b""
    event = conn.next_event()
    while type(event) is h11.Data:
        got += event.data
        event = conn.next_event()
    assert got == body
    if len(body) == head.content_length:
        assert type(event) is h11.EndOfMessage
    else:
        assert event is h11.NEED_DATA
    # h11 on the head alone: Request, then EndOfMessage and a wait (PAUSED for an upgrade or
    # CONNECT, NEED_DATA otherwise) with no body, or NEED_DATA for the body; no error.
    conn = h11_connection(data[: head.size], max_size)
    events: list[Any] = [conn.next_event() for _ in range(3)]
    if head.content_length:
        assert type(events[0]) is h11.Request and events[1] is h11.NEED_DATA
    else:
        assert [type(e) for e in events[:2]] == [h11.Request, h11.EndOfMessage]
        assert events[2] in (h11.PAUSED, h11.NEED_DATA)
    return head


# -- strategies -------------------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VCHAR = "".join(map(chr, range(0x21, 0x7F)))
# What the fast path takes inside a field value: field-vchar, VCHAR and obs-text (RFC 9110
# §5.5). h11 takes control bytes and DEL as well; the server refuses those heads with 400
# (tests/test_strict_heads.py), so the fast path leaves them to that check.
FIELD_VCHAR = "".join(chr(b) for b in range(256) if 0x21 <= b <= 0x7E or b >= 0x80)
# Bytes that break or stretch the grammar, mixed into otherwise plain text.
ODD = '\x00\t\n\x0b\x0c\r :\x01\x1f\x7f\x80\xa0\xff/;,"()@'


def text(alphabet: str, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[bytes]:
    """Bytes from ``alphabet`` (latin-1), drawn as one binary blob and translated: cheap."""
    table = bytes((alphabet * 256)[:256].encode("latin-1"))
    return st.binary(min_size=min_size, max_size=max_size).map(lambda b: b.translate(table))


def noisy(alphabet: str, max_size: int = 12) -> st.SearchStrategy[bytes]:
    return text(alphabet + ODD, 0, max_size)


@st.composite
def field_content(draw: st.DrawFn, max_runs: int = 4) -> bytes:
    """A value as h11 reads it: runs of visible bytes separated by SP / HTAB runs."""
    runs = draw(st.lists(text(FIELD_VCHAR, 1, 8), max_size=max_runs))
    gaps = [draw(text(" \t", 1, 3)) for _ in runs[1:]]
    return runs[0] + b"".join(g + r for g, r in zip(gaps, runs[1:], strict=True)) if runs else b""


NAMES = [
    b"Upgrade", b"Connection", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version",
    b"Origin", b"User-Agent", b"Host-X", b"Accept", b"Expect", b"X-Empty", b"Content-Lengthx",
    b"Content-Length", b"content-length", b"Transfer-Encoding", b"transfer-encoding",
]  # fmt: skip
VALUES = [
    b"", b"websocket", b"Upgrade", b"close", b"0", b"5", b"1, 1", b"-1", b"chunked",
    b"gzip, chunked", b"localhost", b"a b", b"x\tY", b"100-continue", b"\xe2\x82\xac",
]  # fmt: skip


class Part:
    """One place in the head: a plain strategy, and a strategy for the odd things put there."""

    def __init__(self, plain: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]) -> None:
        self.plain = plain
        self.odd = odd


def choice(*items: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from(items)


METHOD = Part(
    st.one_of(choice(b"GET", b"POST", b"CONNECT", b"OPTIONS", b"M-SEARCH"), text(TCHAR, 1, 8)),
    st.one_of(choice(b"", b"G T", b"GET\x00"), noisy(TCHAR, 8)),
)
SP = Part(st.just(b" "), choice(b"", b"  ", b"\t", b" \t", b"\x0b"))
TARGET = Part(
    st.one_of(choice(b"/", b"/chat?room=1", b"*", b"example.com:443"), text(VCHAR, 1, 20)),
    st.one_of(choice(b"", b"/a b", b"/\x7f", b"/\xc3\xa9"), noisy(VCHAR, 20)),
)
ODD_VERSIONS = [
    b"HTTP/1.0", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1.10", b"HTTP/1",
    b"HTTP/a.b", b"HTTP/1.1\t", b"HTTP/0.9", b"HTTP/1.1\x00",
]  # fmt: skip
VERSION = Part(st.just(b"HTTP/1.1"), st.sampled_from(ODD_VERSIONS))
EOL = Part(st.just(b"\r\n"), choice(b"\n", b"\r", b"\r\r\n", b"\n\r", b"", b" \r\n"))
FOLD = Part(st.just(b""), choice(b" ", b"\t", b"\r\n", b"\n"))  # SP / HTAB: an obs-fold line
NAME = Part(
    st.one_of(st.sampled_from(NAMES), text(TCHAR, 1, 12), text(TCHAR, 1, 12)),
    st.one_of(choice(b"", b"Host ", b" Host", b"X Y", b"\xe9"), noisy(TCHAR, 12)),
)
COLON = Part(choice(b":", b": ", b":\t", b":  \t ", b"::"), choice(b" :", b"\t:", b"", b";"))
VALUE = Part(
    st.one_of(st.sampled_from(VALUES), field_content()),
    st.one_of(choice(b"a\x00b", b"\x0b", b"a\x0cb", b"a\rb", b"a\nb"), noisy(FIELD_VCHAR, 16)),
)
OWS = Part(choice(b"", b" ", b"\t", b" \t "), choice(b"\x0b", b"\x00", b"\x0c", b"\r"))
HOST_NAME = Part(choice(b"Host", b"host", b"HOST", b"hOsT"), choice(b"Host ", b"Hos", b"Host\x00"))


@st.composite
def grammar_data(draw: st.DrawFn) -> tuple[bytes, int]:
    """A request head, valid or subtly not, then extra bytes, maybe truncated; and a max_size.

    Each place takes its plain form, or, with a probability set per example (none, rarely,
    often), an odd one. The plain forms still hold things the fast path must refuse (no
    Host or two, Content-Length, Transfer-Encoding), so the head is valid, h11-only or
    invalid in every proportion.
    """
    noise = draw(st.sampled_from([0, 0, 1, 3, 10]))  # in 100

    def part(p: Part) -> bytes:
        if noise and draw(st.integers(0, 99)) < noise:
            return draw(p.odd)
        return draw(p.plain)

    def header_line(name: Part) -> bytes:
        return b"".join([part(FOLD), part(name), part(COLON), part(VALUE), part(OWS), part(EOL)])

    request_line = b"".join(
        [part(METHOD), part(SP), part(TARGET), part(SP), part(VERSION), part(EOL)]
    )
    lines = [header_line(NAME) for _ in range(draw(st.integers(0, 6)))]
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 1, 1, 0, 2]))):
        lines.insert(draw(st.integers(0, len(lines))), header_line(HOST_NAME))
    head = b"".join([request_line, *lines, part(EOL)])
    data = head + draw(st.one_of(st.just(b""), st.binary(max_size=12), st.just(UPGRADE)))
    if draw(st.integers(0, 7)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data, draw(max_sizes(data))


@st.composite
def max_sizes(draw: st.DrawFn, data: bytes) -> int:
    """BIG most of the time, else just around the end of the head, or anywhere in the data."""
    end = data.find(b"\r\n\r\n") + 4
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return draw(st.integers(0, len(data) + 4))
    if kind == 1 and end >= 4:
        return draw(st.sampled_from([end - 1, end, end + 1]))
    return BIG


@st.composite
def clean_data(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    """A head from the strict grammar only, the fields h11 gives for it, and the extra bytes."""
    method = draw(text(TCHAR, 1, 10))
    target = draw(text(VCHAR, 1, 30))
    ows = text(" \t", 0, 3)
    names = text(TCHAR, 1, 16).filter(
        lambda n: n.lower() not in (b"host", b"content-length", b"transfer-encoding")
    )
    fields = draw(st.lists(st.tuples(names, field_content()), max_size=6))
    fields.insert(
        draw(st.integers(0, len(fields))),
        (draw(st.sampled_from([b"Host", b"host", b"HOST"])), draw(field_content())),
    )
    lines = [n + b":" + draw(ows) + v + draw(ows) + b"\r\n" for n, v in fields]
    head = b"".join([method, b" ", target, b" HTTP/1.1\r\n", *lines, b"\r\n"])
    rest = draw(st.one_of(st.just(b""), st.binary(max_size=20), st.just(UPGRADE)))
    expected = [(n.lower(), v) for n, v in fields]
    return head, rest, expected, method + b" " + target


# -- properties -------------------------------------------------------------------------------


@SETTINGS
@given(grammar_data())
def test_grammar_heads_agree_with_h11(case: tuple[bytes, int]) -> None:
    data, max_size = case
    event("fast path" if check(data, max_size) else "None")
    check(bytearray(data), max_size)


@SETTINGS
@given(clean_data(), st.sampled_from([0, 1, BIG]))
def test_clean_heads_are_accepted(
    case: tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes], slack: int
) -> None:
    head_bytes, rest, expected, request_line = case
    head = check(head_bytes + rest, len(head_bytes) + slack)
    assert head is not None, head_bytes
    assert head.method + b" " + head.target == request_line
    assert head.headers == expected
    assert head.size == len(head_bytes)


INTERESTING = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"\x00", b"\x0b", b"\x7f", b"\x80"]
BYTE = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 255).map(lambda b: bytes([b])))


@st.composite
def mutated_upgrade(draw: st.DrawFn) -> bytes:
    data = bytearray(UPGRADE_HEAD + draw(st.sampled_from([b"", UPGRADE[len(UPGRADE_HEAD) :]])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "insert":
            data[at:at] = draw(BYTE)
        elif op == "delete":
            del data[at]
        else:
            data[at : at + 1] = draw(BYTE)
    return bytes(data)


@SETTINGS
@given(mutated_upgrade())
def test_mutated_upgrade_requests_agree_with_h11(data: bytes) -> None:
    event("fast path" if check(data) else "None")


# Header blocks from the whole byte range: plain header lines (OWS around the values), among
# them a few pieces: a plain line with one byte, any byte, put somewhere in its name or value;
# bare names and values; any single byte (each CTL and DEL more often); CR, LF, CRLF, colons,
# white space, obs-fold starts; and the Host, Transfer-Encoding and Content-Length lines and an
# empty name, each letter's case drawn. The request line is plain, so every example reaches
# the header-block rules.
PLAIN_LINE: st.SearchStrategy[bytes] = st.builds(
    lambda name, before, value, after: b"\r\n" + name + b":" + before + value + after,
    text(TCHAR, 1, 10),
    text(" \t", 0, 2),
    field_content(),
    text(" \t", 0, 2),
)
ANY_BYTE = st.one_of(
    st.integers(0, 255).map(lambda b: bytes([b])),
    st.sampled_from([bytes([b]) for b in [*range(0x20), 0x7F]]),
)


@st.composite
def odd_line(draw: st.DrawFn) -> bytes:
    line = draw(PLAIN_LINE)
    at = draw(st.integers(2, len(line)))
    return line[:at] + draw(ANY_BYTE) + line[at:]


def flip(line: bytes, bits: int) -> bytes:
    """``line`` with the case swapped of each letter whose bit is set."""
    return bytes(c ^ 0x20 if bits >> i & 1 and chr(c).isalpha() else c for i, c in enumerate(line))


SPECIAL_LINES = [
    b"\r\nHost: a",
    b"\r\nTransfer-Encoding: chunked",
    b"\r\nContent-Length: 5",
    b"\r\n:",
]
PIECES = st.one_of(
    PLAIN_LINE,
    odd_line(),
    odd_line(),
    odd_line(),
    text(TCHAR, 1, 10),
    text(FIELD_VCHAR, 1, 10),
    ANY_BYTE,
    choice(b"\r\n", b"\r", b"\n", b":", b": ", b" ", b"\t", b"\r\n ", b"\r\n\t"),
    st.sampled_from(SPECIAL_LINES).flatmap(
        lambda line: st.integers(0, (1 << len(line)) - 1).map(lambda bits: flip(line, bits))
    ),
)


@st.composite
def raw_blocks(draw: st.DrawFn) -> tuple[bytes, int]:
    """GET / HTTP/1.1, a header block (a Host line, up to 8 plain lines, 0 to 16 pieces: few,
    most of the time), the blank line, then extra bytes; and a max_size."""
    odd = draw(st.integers(0, 4))
    lines = draw(st.lists(PLAIN_LINE, max_size=8))
    for piece in draw(st.lists(PIECES, max_size=odd * odd)):
        lines.insert(draw(st.integers(0, len(lines))), piece)
    lines.insert(draw(st.integers(0, len(lines))), b"\r\nHost: a")
    data = b"GET / HTTP/1.1" + b"".join(lines) + b"\r\n\r\n"
    data += draw(st.one_of(st.just(b""), st.binary(max_size=8), st.just(FRAME)))
    return data, draw(max_sizes(data))


@SETTINGS
@given(raw_blocks())
def test_raw_header_blocks_agree_with_h11(case: tuple[bytes, int]) -> None:
    data, max_size = case
    event("fast path" if check(data, max_size) else "None")


# -- examples ---------------------------------------------------------------------------------

UPGRADE_HEAD = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com:8000\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: */*\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Origin: http://example.com:8000\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Upgrade: websocket\r\n"
    b"\r\n"
)
# A masked text frame "Hello" (RFC 6455 §5.7), sent right behind the head.
FRAME = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
UPGRADE = UPGRADE_HEAD + FRAME
UPGRADE_FIELDS = [
    (b"host", b"example.com:8000"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"accept", b"*/*"),
    (b"accept-language", b"en-US,en;q=0.5"),
    (b"sec-websocket-version", b"13"),
    (b"origin", b"http://example.com:8000"),
    (b"sec-websocket-extensions", b"permessage-deflate"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"connection", b"keep-alive, Upgrade"),
    (b"upgrade", b"websocket"),
]


def test_browser_upgrade_request() -> None:
    head = check(UPGRADE_HEAD)
    assert head == RequestHead(b"GET", b"/chat?room=1", b"1.1", UPGRADE_FIELDS, len(UPGRADE_HEAD))
    # h11 pauses after it: the client proposed a protocol switch.
    conn = h11_connection(UPGRADE_HEAD, BIG)
    assert [type(conn.next_event()) for _ in range(2)] == [h11.Request, h11.EndOfMessage]
    assert conn.next_event() is h11.PAUSED


def test_frame_bytes_after_the_head_are_left_alone() -> None:
    head = check(UPGRADE)
    assert head is not None
    assert head.size == len(UPGRADE_HEAD)
    assert UPGRADE[head.size :] == FRAME
    assert head.headers == UPGRADE_FIELDS
    # A pipelined request after the head is not looked at either.
    head = check(UPGRADE_HEAD + b"GET / HTTP/1.0\r\n\r\n")
    assert head is not None
    assert head.size == len(UPGRADE_HEAD)


def test_bytearray_input_gives_bytes() -> None:
    head = check(bytearray(UPGRADE))
    assert head is not None
    assert head.headers == UPGRADE_FIELDS


def test_max_size_boundary() -> None:
    size = len(UPGRADE_HEAD)
    assert check(UPGRADE, size) is not None  # the head is exactly max_size bytes
    assert check(UPGRADE, size + 1) is not None
    assert parse_head(UPGRADE, size - 1) is None  # one byte over
    assert parse_head(UPGRADE, 0) is None


def test_incomplete_heads() -> None:
    for cut in range(len(UPGRADE_HEAD)):
        assert parse_head(UPGRADE_HEAD[:cut], BIG) is None, cut


ACCEPTED = {
    "minimal": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", [(b"host", b"a")]),
    "empty host": (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", [(b"host", b"")]),
    "empty values": (
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A:\r\nX-B: \t \r\n\r\n",
        [(b"host", b"a"), (b"x-a", b""), (b"x-b", b"")],
    ),
    "OWS around values": (
        b"GET / HTTP/1.1\r\nHost:\t a \t\r\nX:  b  c\t \r\n\r\n",
        [(b"host", b"a"), (b"x", b"b  c")],
    ),
    "tabs inside a value": (
        b"GET / HTTP/1.1\r\nHost: a\r\nX: b\t\tc\r\n\r\n",
        [(b"host", b"a"), (b"x", b"b\t\tc")],
    ),
    "obs-text in a value": (
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x80\xffz\r\n\r\n",
        [(b"host", b"a"), (b"x", b"\x80\xffz")],
    ),
    "names lower-cased, values not": (
        b"GET / HTTP/1.1\r\nHOST: A\r\nUpGrade: WebSocket\r\n\r\n",
        [(b"host", b"A"), (b"upgrade", b"WebSocket")],
    ),
    "colon in a value": (
        b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
        [(b"host", b"[::1]:80")],
    ),
    "odd token method, odd target": (
        b"M-SEARCH! *\x7e%00 HTTP/1.1\r\nHost: a\r\n\r\n",
        [(b"host", b"a")],
    ),
    "CONNECT": (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", [(b"host", b"a:443")]),
    "name like Content-Length": (
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Lengths: 5\r\n\r\n",
        [(b"host", b"a"), (b"content-lengths", b"5")],
    ),
    "Connection: close": (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        [(b"host", b"a"), (b"connection", b"close")],
    ),
}


@pytest.mark.parametrize("data, headers", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(data: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    head = check(data + FRAME)
    assert head is not None
    assert head.headers == headers
    assert head.size == len(data)


BODIES = {
    "Content-Length: 0": (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0),
    "Content-Length: 5": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 5),
    "lower case, OWS": (b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length:\t 5 \r\n\r\n", 5),
    "leading zeros": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", 7),
    "15 digits": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999\r\n\r\n",
        999999999999999,
    ),
}


@pytest.mark.parametrize("data, length", BODIES.values(), ids=BODIES.keys())
@pytest.mark.parametrize("behind", [b"", b"hello", b"hello, and the next request"])
def test_a_content_length_body_is_left_behind_the_head(
    data: bytes, length: int, behind: bytes
) -> None:
    head = check(data + behind)
    assert head is not None
    assert head.content_length == length and head.size == len(data)


H = b"Host: a\r\n"
REFUSED = {
    # incomplete, or not a head at all
    "empty": b"",
    "no blank line": b"GET / HTTP/1.1\r\nHost: a\r\n",
    "half the blank line": b"GET / HTTP/1.1\r\nHost: a\r\n\r",
    "blank line first": b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "TLS hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    # request line
    "HTTP/1.0": b"GET / HTTP/1.0\r\n" + H + b"\r\n",
    "HTTP/2.0": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "HTTP/1.10": b"GET / HTTP/1.10\r\n" + H + b"\r\n",
    "lower-case version": b"GET / http/1.1\r\n" + H + b"\r\n",
    "no version": b"GET /\r\n" + H + b"\r\n",
    "two spaces": b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
    "tab separator": b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n",
    "space after version": b"GET / HTTP/1.1 \r\n" + H + b"\r\n",
    "leading space": b" GET / HTTP/1.1\r\n" + H + b"\r\n",
    "method not a token": b"G(T / HTTP/1.1\r\n" + H + b"\r\n",
    "method with obs-text": b"G\xc3\xa9T / HTTP/1.1\r\n" + H + b"\r\n",
    "empty target": b"GET  HTTP/1.1\r\n" + H + b"\r\n",
    "DEL in target": b"GET /\x7f HTTP/1.1\r\n" + H + b"\r\n",
    "obs-text in target": b"GET /\xe2\x82\xac HTTP/1.1\r\n" + H + b"\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
    # line ends
    "bare LF everywhere": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare LF after request line": b"GET / HTTP/1.1\nHost: a\r\n\r\n",
    "bare LF after a header": b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
    "bare LF in blank line": b"GET / HTTP/1.1\r\nHost: a\r\n\n\r\n\r\n",
    "bare CR in a value": b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    "bare CR ending a line": b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    # header lines
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
    "obs-fold with tab": b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "no colon": b"GET / HTTP/1.1\r\n" + H + b"X b\r\n\r\n",
    "empty name": b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n",
    "name not a token": b"GET / HTTP/1.1\r\n" + H + b"X/Y: b\r\n\r\n",
    "name with obs-text": b"GET / HTTP/1.1\r\n" + H + b"X\xe9: b\r\n\r\n",
    "NUL in a value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n",
    "control bytes in a value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x01\x7f\x1fb\r\n\r\n",
    "VT in a value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x0bb\r\n\r\n",
    "FF in a value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x0cb\r\n\r\n",
    "VT after a value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x0b\r\n\r\n",
    # Host
    "no Host": b"GET / HTTP/1.1\r\nX: b\r\n\r\n",
    "no headers": b"GET / HTTP/1.1\r\n\r\n",
    "two Hosts": b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
    "Host not first, twice": b"GET / HTTP/1.1\r\nX: b\r\nHOST: a\r\nX: c\r\nHost: b\r\n\r\n",
    # a body framing the fast path leaves to h11, or a header h11 checks further
    "Content-Length bad": b"GET / HTTP/1.1\r\n" + H + b"Content-Length: x\r\n\r\n",
    "Content-Length signed": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
    "Content-Length list": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello",
    "Content-Length inner space": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\n",
    "Content-Length 16 digits": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000000000000000\r\n\r\n"
    ),
    "Content-Length twice, equal": (
        b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"
    ),
    "Content-Length twice": (
        b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n"
    ),
    "Transfer-Encoding chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding gzip": b"GET / HTTP/1.1\r\n" + H + b"TRANSFER-ENCODING: gzip\r\n\r\n",
}


@pytest.mark.parametrize("data", REFUSED.values(), ids=REFUSED.keys())
def test_refused(data: bytes) -> None:
    assert parse_head(data, BIG) is None
    assert parse_head(data + FRAME, BIG) is None


@pytest.mark.parametrize("where", ["method", "target", "name", "value", "value end", "ows"])
def test_every_byte_in_every_place(where: str) -> None:
    """Each of the 256 bytes at each place: a head parse_head returns must satisfy h11."""
    templates = {
        "method": b"G%sT / HTTP/1.1\r\nHost: a\r\n\r\n",
        "target": b"GET /%s HTTP/1.1\r\nHost: a\r\n\r\n",
        "name": b"GET / HTTP/1.1\r\nHost: a\r\nX%sY: b\r\n\r\n",
        "value": b"GET / HTTP/1.1\r\nHost: a\r\nX: b%sc\r\n\r\n",
        "value end": b"GET / HTTP/1.1\r\nHost: a\r\nX: b%s\r\n\r\n",
        "ows": b"GET / HTTP/1.1\r\nHost: a\r\nX:%sb\r\n\r\n",
    }
    accepted = set()
    for byte in range(256):
        data = templates[where] % bytes([byte])
        if check(data) is not None:
            accepted.add(byte)
    # What h11 accepts there and the fast path takes too (bare CR and LF go to h11).
    tchar = set(TCHAR.encode())
    field = set(FIELD_VCHAR.encode("latin-1"))
    expected = {
        "method": tchar,
        "target": set(range(0x21, 0x7F)),
        "name": tchar | {ord(":")},  # "X:Y: b" is a header X, value "Y: b"
        "value": field | {0x20, 0x09},
        "value end": field | {0x20, 0x09},
        "ows": field | {0x20, 0x09},
    }[where]
    assert accepted == expected


def test_does_not_import_asyncio() -> None:
    code = "import sys, asgiws.fasthead; sys.exit('asyncio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
