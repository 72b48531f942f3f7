"""The known ambiguous request heads, each with the answer it must get (issue 12's corpus).

A second parser in front of h11 is where request smuggling comes from, so each case is sent
over a real socket with a last request behind it (``GET /last`` with ``Connection: close``), and
the whole answer is read: which requests were served, with which body, and what was refused
with which status. A refused request closes the connection, so nothing behind it is ever read
as a request. Each case is also fed to the sans-IO core whole and split inside its head (the
split head goes to h11, the whole one to the fast path where it qualifies): both must answer
the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from asgiws.config import Config
from asgiws.http import HTTPConnection

LAST = b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
H = b"Host: a\r\n"
LAST_SERVED = "200 GET /last b''"
BAD_LENGTH = "400 malformed request: bad Content-Length"
ONLY_CHUNKED = "501 malformed request: Only Transfer-Encoding: chunked is supported"

# name: (bytes, the answers in order). "200 METHOD PATH BODY" is a request the app served.
CORPUS: dict[str, tuple[bytes, list[str]]] = {
    "Content-Length and Transfer-Encoding": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        ["400 a request may not have both Content-Length and Transfer-Encoding"],
    ),
    "two equal Content-Lengths": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        ["200 POST / b'abc'", LAST_SERVED],  # RFC 9110 §8.6: one value, repeated
    ),
    "two different Content-Lengths": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ["400 malformed request: conflicting Content-Length headers"],
    ),
    "Content-Length list of equal values": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
        ["200 POST / b'abc'", LAST_SERVED],
    ),
    "Content-Length with a plus sign": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc",
        [BAD_LENGTH],
    ),
    "Content-Length negative": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -3\r\n\r\nabc",
        [BAD_LENGTH],
    ),
    "Content-Length with a space inside": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\nabc",
        [BAD_LENGTH],
    ),
    "Content-Length in hex": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc",
        [BAD_LENGTH],
    ),
    "Content-Length of 23 digits": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\nabc",
        [BAD_LENGTH],
    ),
    "Content-Length with OWS around it": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length:  3 \r\n\r\nabc",
        ["200 POST / b'abc'", LAST_SERVED],  # OWS is not part of the value (RFC 9110 §5.5)
    ),
    "Content-Length with leading zeros": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 003\r\n\r\nabc",
        ["200 POST / b'abc'", LAST_SERVED],  # 1*DIGIT: 003 is 3
    ),
    "Transfer-Encoding: chunked, identity": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        [ONLY_CHUNKED],
    ),
    "Transfer-Encoding: identity, chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity, chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        [ONLY_CHUNKED],
    ),
    "Transfer-Encoding: gzip, chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        [ONLY_CHUNKED],
    ),
    "Transfer-Encoding twice": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ["501 malformed request: multiple Transfer-Encoding headers"],
    ),
    "Transfer-Encoding: Chunked (any case)": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ["200 POST / b'abc'", LAST_SERVED],  # transfer codings are case-insensitive
    ),
    "white space before the colon": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ["400 malformed request: illegal header line: b'Transfer-Encoding : chunked'"],
    ),
    "obs-fold": (
        b"GET / HTTP/1.1\r\n" + H + b"X: 1\r\n 2\r\n\r\n",
        ["400 malformed request: obs-fold (a header line continued on the next line)"],
    ),
    "obs-fold of Transfer-Encoding": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ["400 malformed request: obs-fold (a header line continued on the next line)"],
    ),
    "bare LF line ends": (
        b"GET / HTTP/1.1\nHost: a\n\n",
        ["400 malformed request: a line ends in a bare LF or CR, not CRLF"],
    ),
    "NUL inside a value": (
        b"GET / HTTP/1.1\r\n" + H + b"X: 1\x002\r\n\r\n",
        ["400 malformed request: control byte 0x00 in the request head"],
    ),
    "CR inside a value": (
        b"GET / HTTP/1.1\r\n" + H + b"X: 1\r2\r\n\r\n",
        ["400 malformed request: a line ends in a bare LF or CR, not CRLF"],
    ),
    "absolute-form target": (
        b"GET http://a/abs?q=1 HTTP/1.1\r\n" + H + b"\r\n",
        ["200 GET /abs b''", LAST_SERVED],  # RFC 9112 §3.2.2: the path of the absolute URI
    ),
    "two spaces in the request line": (
        b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
        ["400 malformed request: illegal request line: b'GET  / HTTP/1.1'"],
    ),
    "HTTP/1.0 with Connection: keep-alive": (
        b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ["200 GET /old b''"],  # no HTTP/1.0 keep-alive: closed after it, /last never read
    ),
    "a request right behind a body": (
        b"POST /p HTTP/1.1\r\n"
        + H
        + b"Content-Length: 3\r\n\r\nabcGET /second HTTP/1.1\r\n"
        + H
        + b"\r\n",
        ["200 POST /p b'abc'", "200 GET /second b''", LAST_SERVED],
    ),
    "Connection: close with a request behind": (
        b"GET /first HTTP/1.1\r\n"
        + H
        + b"Connection: close\r\n\r\nGET /behind HTTP/1.1\r\n"
        + H
        + b"\r\n",
        ["200 GET /first b''"],
    ),
    "an oversized chunk size": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        ["400 malformed request: illegal chunk header: b'fffffffffffffffffffff\\r\\n'"],
    ),
    "a chunk extension": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n0\r\n\r\n",
        ["200 POST / b'abc'", LAST_SERVED],  # RFC 9112 §7.1.1: ignored
    ),
    "chunk lines ending in bare LF": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
        ["400 malformed request: illegal chunk header: "],  # the reason quotes the bytes
    ),
    "no Host": (
        b"GET / HTTP/1.1\r\n\r\n",
        ["400 malformed request: Missing mandatory Host: header"],
    ),
    "two Hosts": (
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ["400 malformed request: Found multiple Host: headers"],
    ),
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with its method, path and the body it read."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = f"{scope['method']} {scope['path']} {body!r}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(text))],
        }
    )
    await send({"type": "http.response.body", "body": text})


def answers(data: bytes) -> list[str]:
    """Each response in ``data``: its status and its body."""
    out = []
    rest = data
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, data
        status = head.split(b" ", 2)[1].decode()
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body, rest = rest[:length], rest[length:]
        out.append(f"{status} {body.decode('latin-1').strip()}")
    return out


def check(got: list[str], expected: list[str]) -> None:
    assert len(got) == len(expected), got
    for answer, wanted in zip(got, expected, strict=True):
        assert answer == wanted or (wanted.endswith(": ") and answer.startswith(wanted)), got


@pytest.mark.parametrize(("data", "expected"), CORPUS.values(), ids=CORPUS.keys())
async def test_over_a_socket(serve: Any, data: bytes, expected: list[str]) -> None:
    running = await serve(app)
    check(answers(await running.raw(data + LAST, timeout=10)), expected)


def core_answer(*chunks: bytes) -> bytes:
    """The bytes the sans-IO core answers, running ``app``'s logic synchronously."""
    conn = HTTPConnection(Config(), client=("127.0.0.1", 5), server=("127.0.0.1", 8))
    out = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while (scope := conn.next_scope()) is not None:
            body = b""
            while True:
                message = conn.next_message()
                assert message is not None
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            if message["type"] == "http.request":
                text = f"{scope['method']} {scope['path']} {body!r}".encode()
                headers = [(b"content-length", b"%d" % len(text))]
                conn.send({"type": "http.response.start", "status": 200, "headers": headers})
                conn.send({"type": "http.response.body", "body": text})
            out.extend(conn.data_to_send())
            conn.app_finished(None)
        out.extend(conn.data_to_send())
    return b"".join(out)


@pytest.mark.parametrize(("data", "expected"), CORPUS.values(), ids=CORPUS.keys())
def test_fast_path_and_h11_answer_alike(data: bytes, expected: list[str]) -> None:
    whole = core_answer(data + LAST)
    check(answers(whole), expected)
    cut = data.find(b" ") + 1  # inside the request line: h11 reads this head
    assert core_answer(data[:cut], data[cut:] + LAST) == whole
