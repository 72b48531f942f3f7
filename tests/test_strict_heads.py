"""Request heads refused where h11 alone would let them through: both Content-Length and
Transfer-Encoding, obs-fold, bare LF or CR line ends, control bytes. Each gets 400 with its
reason and the connection closes, on the fast path and on h11's, whole or a byte at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from apps import respond
from hypothesis import given, settings
from hypothesis import strategies as st
from wire import RFC_KEY

from asgiws.config import Config
from asgiws.http import HTTPConnection
from asgiws.http11 import head_syntax_problem
from asgiws.states import HTTPState

UPGRADE_LINES = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + RFC_KEY + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)
BARE = b"malformed request: a line ends in a bare LF or CR, not CRLF"
FOLD = b"malformed request: obs-fold (a header line continued on the next line)"
BOTH = b"a request may not have both Content-Length and Transfer-Encoding"


def control(byte: int) -> bytes:
    return b"malformed request: control byte 0x%02x in the request head" % byte


# (name, head, reason): every head would be read by h11 without complaint.
CORPUS: list[tuple[str, bytes, bytes]] = [
    ("bare LF everywhere", b"GET / HTTP/1.1\nHost: a\n\n", BARE),
    ("bare LF after one header", b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", BARE),
    ("bare LF ending the head", b"GET / HTTP/1.1\r\nHost: a\r\n\n", BARE),
    ("bare CR inside a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r2\r\n\r\n", BARE),
    ("obs-fold with SP", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", FOLD),
    ("obs-fold with HTAB", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n", FOLD),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\x002\r\n\r\n", control(0)),
    ("SOH in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\x012\r\n\r\n", control(1)),
    ("ESC in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", control(0x1B)),
    ("DEL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\x7f\r\n\r\n", control(0x7F)),
    (
        "Content-Length and Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        BOTH,
    ),
    (
        "Transfer-Encoding and Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        BOTH,
    ),
]


def upgrade_form(head: bytes) -> bytes:
    """The same defect in a WebSocket upgrade head (which the fast path would otherwise take)."""
    line_end = b"\n" if head.startswith(b"GET / HTTP/1.1\n") else b"\r\n"
    first, rest = head.split(line_end, 1)
    return first + line_end + UPGRADE_LINES.replace(b"\r\n", line_end) + rest


def answer(*chunks: bytes) -> tuple[bytes, HTTPConnection]:
    conn = HTTPConnection(Config(), client=("127.0.0.1", 5), server=("127.0.0.1", 8))
    for chunk in chunks:
        conn.receive_data(chunk)
    return b"".join(conn.data_to_send()), conn


def expect_400(response: bytes, conn: HTTPConnection, reason: bytes) -> None:
    assert conn.next_scope() is None  # no app ever runs
    assert conn.state is HTTPState.CLOSED
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nconnection: close" in head
    assert body == reason + b"\n"


@pytest.mark.parametrize(("name", "head", "reason"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_whole(name: str, head: bytes, reason: bytes) -> None:
    expect_400(*answer(head), reason)
    if head.startswith(b"GET"):
        expect_400(*answer(upgrade_form(head)), reason)


@pytest.mark.parametrize(("name", "head", "reason"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_a_byte_at_a_time(name: str, head: bytes, reason: bytes) -> None:
    expect_400(*answer(*[head[i : i + 1] for i in range(len(head))]), reason)


def test_the_request_behind_a_refused_one_is_never_served() -> None:
    smuggle = (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    response, conn = answer(smuggle)
    expect_400(response, conn, BOTH)
    assert response.count(b"HTTP/1.1") == 1


def test_a_bad_head_pipelined_behind_a_good_request() -> None:
    early, conn = answer(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\nHost: a\n\n")
    assert early == b""  # nothing is answered before the first request's response
    scope = conn.next_scope()
    assert scope is not None and scope["path"] == "/1"
    conn.send({"type": "http.response.start", "status": 204, "headers": []})
    conn.send({"type": "http.response.body", "body": b""})
    conn.app_finished(None)
    second = b"".join(conn.data_to_send())
    assert second.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert second.split(b"\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert second.endswith(BARE + b"\n")
    assert conn.state is HTTPState.CLOSED


def test_what_stays_allowed() -> None:
    for head in (
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n",  # HTAB inside a value
        b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",  # obs-text
        b"GET / HTTP/1.1\r\nHost: a\r\nX:  spaced  \r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ):
        for chunks in ([head], [head[i : i + 1] for i in range(len(head))]):
            _, conn = answer(*chunks)
            assert conn.next_scope() is not None, head


# -- the incremental scan agrees with a scan of the whole head -----------------------------------

HEAD_BYTES = st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b"a", b":", b"\x00", b"\x7f"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(HEAD_BYTES, min_size=1, max_size=40).map(b"".join),
    st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=40),
)
def test_scan_in_pieces_agrees_with_the_whole(body: bytes, cuts: list[int]) -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + body + b"\r\n\r\n"
    end = head.find(b"\r\n\r\n") + 4
    whole = head_syntax_problem(head[:end], 0, complete=True)
    chunks = []
    pos = 0
    for cut in cuts:
        chunks.append(head[pos : pos + cut])
        pos += cut
    chunks.append(head[pos:])
    _, conn = answer(*[c for c in chunks if c])
    _, at_once = answer(head)
    assert (conn.next_scope() is None) == (at_once.next_scope() is None)
    if whole is not None:
        assert at_once.state is HTTPState.CLOSED


# -- with a real socket --------------------------------------------------------------------------


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await respond(send, 200, b"served " + scope["path"].encode())


async def exchange(running: Any, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        (
            "CL and TE, a request behind",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            BOTH,
        ),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", FOLD),
        ("bare LF upgrade", upgrade_form(b"GET / HTTP/1.1\nHost: a\n\n"), BARE),
        ("control byte", b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", control(1)),
    ],
)
async def test_real_socket(serve: Any, name: str, data: bytes, reason: bytes) -> None:
    running = await serve(hello)
    response = await exchange(running, data)
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert response.endswith(b"\r\n\r\n" + reason + b"\n")
    assert b"served" not in response and response.count(b"HTTP/1.1 ") == 1
