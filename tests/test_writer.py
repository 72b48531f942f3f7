"""asgiws.writer against h11, its oracle: the same response to the same request, byte for byte.

A request the fast path took is answered by ResponseWriter, every other one through h11; a
client must not be able to tell which. For generated requests (method, Connection: close or
not) and responses (status, framing headers, Connection tokens, body chunks, too much or too
little body), the writer's bytes must equal h11's, it must fail exactly where h11 fails, and
keep-alive must end exactly where h11 ends it. The number of examples is ``WRITER_EXAMPLES``
(default 400).
"""

from __future__ import annotations

import os

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgiws.asgi import check_headers
from asgiws.writer import ResponseWriter, check_fields

SETTINGS = settings(
    max_examples=int(os.environ.get("WRITER_EXAMPLES", "400")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Headers = list[tuple[bytes, bytes]]


def h11_bytes(
    method: bytes, close: bool, status: int, headers: Headers, chunks: list[bytes]
) -> tuple[bytes | None, bool]:
    """What h11 writes (None: it refused somewhere), and whether it keeps the connection."""
    conn = h11.Connection(h11.SERVER)
    request = [(b"host", b"a")] + ([(b"connection", b"close")] if close else [])
    conn.receive_data(
        method + b" / HTTP/1.1\r\n" + b"".join(b"%s: %s\r\n" % h for h in request) + b"\r\n"
    )
    assert isinstance(conn.next_event(), h11.Request)
    out = []
    try:
        out.append(conn.send(h11.Response(status_code=status, headers=headers)))
        for chunk in chunks:
            out.append(conn.send(h11.Data(data=chunk)))
        out.append(conn.send(h11.EndOfMessage()))
    except h11.LocalProtocolError:
        return None, False
    return b"".join(data or b"" for data in out), conn.our_state is h11.DONE


def writer_bytes(
    method: bytes, close: bool, status: int, headers: Headers, chunks: list[bytes]
) -> tuple[bytes | None, bool]:
    writer = ResponseWriter()
    try:
        checked = check_fields(headers)
        out = [writer.head(status, b"", checked, method=method, close=close)]
        out.extend(writer.data(chunk) for chunk in chunks)
        out.append(writer.end())
    except RuntimeError as exc:
        assert str(exc).startswith("invalid HTTP response: ")
        return None, False
    return b"".join(out), writer.keep_alive and not close


NAMES = [b"content-length", b"transfer-encoding", b"connection", b"host", b"x-a", b"server"]
VALUES = [
    b"0", b"2", b"5", b"2, 2", b"1, 2", b"-1", b"chunked", b"Chunked", b"gzip", b"close",
    b"keep-alive", b"Close, Upgrade", b"upgrade", b"", b" a", b"a b", b"a\x00", b"\x01",
]  # fmt: skip


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bool, int, Headers, list[bytes]]:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST"]))
    close = draw(st.booleans())
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500, 599]))
    headers = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=5))
    chunks = draw(st.lists(st.sampled_from([b"", b"ok", b"hello", b"x" * 300]), max_size=3))
    return method, close, status, headers, chunks


@SETTINGS
@given(responses())
def test_the_writer_writes_what_h11_writes(
    case: tuple[bytes, bool, int, Headers, list[bytes]],
) -> None:
    method, close, status, headers, chunks = case
    if method == b"HEAD":
        chunks = []  # the server sends no body to HEAD (HTTPConnection drops it)
    expected = h11_bytes(method, close, status, headers, chunks)
    got = writer_bytes(method, close, status, headers, chunks)
    # h11 writes the reason it is given; the writer is given b"" here as h11 is.
    assert got == expected, (method, close, status, headers, chunks)


@pytest.mark.parametrize(
    "headers, chunks, expected",
    [
        ([(b"content-length", b"2")], [b"ok"], b"content-length: 2\r\n\r\nok"),
        ([], [b"ok", b"!"], b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1\r\n!\r\n0\r\n\r\n"),
        (
            [(b"content-length", b"2"), (b"transfer-encoding", b"chunked")],
            [b"ok"],
            b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ),
        (
            [(b"connection", b"Upgrade, close")],
            [],
            b"connection: Upgrade, close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ],
)
def test_examples(headers: Headers, chunks: list[bytes], expected: bytes) -> None:
    got, _ = writer_bytes(b"GET", False, 200, headers, chunks)
    assert got == b"HTTP/1.1 200 \r\n" + expected
    assert h11_bytes(b"GET", False, 200, headers, chunks)[0] == got


def test_a_request_that_says_close_gets_a_response_that_says_so() -> None:
    headers = [(b"connection", b"Upgrade, keep-alive"), (b"content-length", b"0")]
    got, keep_alive = writer_bytes(b"GET", True, 200, headers, [])
    assert got == (
        b"HTTP/1.1 200 \r\ncontent-length: 0\r\nConnection: close\r\nConnection: upgrade\r\n\r\n"
    )
    assert not keep_alive and h11_bytes(b"GET", True, 200, headers, []) == (got, False)


def test_a_body_that_does_not_match_its_length_is_the_apps_error() -> None:
    writer = ResponseWriter()
    writer.head(200, b"OK", [(b"content-length", b"2")], method=b"GET", close=False)
    with pytest.raises(RuntimeError, match="Too much data for declared Content-Length"):
        writer.data(b"abc")
    writer = ResponseWriter()
    writer.head(200, b"OK", [(b"content-length", b"2")], method=b"GET", close=False)
    writer.data(b"a")
    with pytest.raises(RuntimeError, match="Too little data for declared Content-Length"):
        writer.end()


@SETTINGS
@given(responses())
def test_a_whole_response_in_one_buffer_is_what_h11_writes(
    case: tuple[bytes, bool, int, Headers, list[bytes]],
) -> None:
    """ResponseWriter.whole(): the head and the whole body at once, to a request that did not
    say close. It writes h11's bytes for the headers the app gave plus the Content-Length that
    responses.complete_head adds when the app gave no framing; or declines (None) and the
    general path writes them. It declines only where it says it does."""
    method, _, status, headers, chunks = case
    body = b"".join(chunks)
    try:
        checked = check_fields(headers)
    except RuntimeError:
        return  # refused at http.response.start: never reaches a writer
    names = [name for name, _ in checked]
    full = list(checked)
    if status not in (204, 304) and b"content-length" not in names:
        if b"transfer-encoding" not in names:
            full.append((b"content-length", b"%d" % len(body)))
    got = ResponseWriter().whole(status, b"", checked, body)
    plain = (
        status not in (204, 304)
        and not {b"transfer-encoding", b"connection", b"host"} & set(names)
        and all(int(value) == len(body) for name, value in checked if name == b"content-length")
    )
    assert (got is not None) is plain, (status, checked, body)
    if got is not None and method != b"HEAD":
        expected, keep_alive = h11_bytes(method, False, status, full, [body])
        assert (got, True) == (expected, keep_alive), (method, status, headers, body)


# -- plain_lines: the one-pass check of the common response's headers --------------------------

_NAMES = [
    b"content-type", b"content-length", b"x-a", b"Content-Type", b"transfer-encoding",
    b"connection", b"host", b"server", b"date", b"dates", b"x y", b"", b"x:y", b"hosts",
]  # fmt: skip
_VALUES = [
    b"text/plain", b"2", b"0012", b"5, 5", b"", b" lead", b"trail ", b"a\x00b", b"a\rb",
    b"a\nb", b"content-length: 5", b"a\tb", b"chunked", b"x" * 30, b"-1", b"\x7f",
]  # fmt: skip


_PLAIN_NAMES = [b"content-type", b"x-a", b"content-length", b"cache-control", b"x-dated"]
_PLAIN_VALUES = [b"text/plain", b"2", b"no-cache", b"a b", b"18", b""]


@st.composite
def header_lists(draw: st.DrawFn) -> list[object]:
    pairs: list[object] = []
    for _ in range(draw(st.integers(0, 5))):
        # Mostly names and values the fast check takes, so that it is taken often.
        wild = draw(st.integers(0, 9)) == 0  # one pair in ten: any bytes at all
        names = st.binary(max_size=8) if wild else st.sampled_from(_PLAIN_NAMES * 6 + _NAMES)
        values = st.binary(max_size=8) if wild else st.sampled_from(_PLAIN_VALUES * 6 + _VALUES)
        name, value = draw(names), draw(values)
        shapes = ["tuple"] * 12 + ["list", "bytearray", "memoryview", "str", "short"]
        shape = draw(st.sampled_from(shapes))
        if shape == "list":
            pairs.append([name, value])
        elif shape == "bytearray":
            pairs.append((name, bytearray(value)))
        elif shape == "memoryview":  # hashable, and equal to the bytes: plain_lines' table
            pairs.append((name, memoryview(value)))
        elif shape == "str":
            pairs.append((name.decode("latin-1"), value))
        elif shape == "short":
            pairs.append((name,))
        else:
            pairs.append((name, value))
    return pairs


@SETTINGS
@given(header_lists())
def test_plain_lines_takes_only_what_the_general_check_passes_unchanged(
    headers: list[object],
) -> None:
    from asgiws.asgi import check_headers
    from asgiws.writer import plain_lines, whole_response

    plain = plain_lines(headers)
    if plain is None:
        return  # the general path decides (and names any mistake)
    block, length = plain
    checked = check_fields(check_headers(headers, "http.response.start"))  # does not raise
    assert checked == [tuple(pair) for pair in headers]  # type: ignore[arg-type]  # all pairs
    assert block == b"".join(b"%s: %s\r\n" % pair for pair in checked)
    lengths = [value for name, value in checked if name == b"content-length"]
    assert length == (lengths[0] if lengths else None)
    reserved = {b"transfer-encoding", b"connection", b"host", b"server", b"date"}
    assert not reserved & {name for name, _ in checked}
    # And the same response is written from the block as from the checked list.
    for body in (b"", b"ok", b"x" * 18):
        general = ResponseWriter().whole(200, b"OK", checked, body)
        assert whole_response(200, b"OK", block, length, body) == general


@pytest.mark.parametrize("status", [200, 201, 204, 299, 404, 418, 451, 500, 599])
def test_plain_response_is_whole_response_with_the_status_reason(status: int) -> None:
    from asgiws.asgi import reason_phrase
    from asgiws.writer import plain_response, whole_response

    lines, more = b"content-type: text/plain\r\n", b"server: asgiws\r\n"
    for length in (None, b"2", b"002", b"3"):
        for body in (b"", b"ok"):
            for _ in range(2):  # the status line made, then taken from the table
                block = lines + more
                expected = whole_response(status, reason_phrase(status), block, length, body)
                assert plain_response(status, lines, more, length, body) == expected


def test_plain_lines_takes_an_equal_list_again_from_its_table() -> None:
    from asgiws import writer

    writer._PLAIN_SEEN.clear()
    first = [(b"content-length", b"18"), (b"content-type", b"application/json")]
    taken = writer.plain_lines(first)
    assert taken == (b"content-length: 18\r\ncontent-type: application/json\r\n", b"18")
    # A new list of new bytes objects, as a framework builds one per response: the same answer,
    # the very tuple the first check made (so no second check ran).
    again = [(bytes(name), bytes(value)) for name, value in first]
    assert writer.plain_lines(again) is taken
    # An equal list with a read-only memoryview value is found too, and the general path would
    # write the same bytes for it.
    viewed = [(b"content-length", memoryview(b"18")), (b"content-type", b"application/json")]
    assert writer.plain_lines(viewed) is taken
    assert check_fields(check_headers(viewed, "http.response.start")) == first
    # Unhashable pairs are checked the usual way and stay out of the table, as does what fails.
    assert writer.plain_lines([[b"content-type", b"text/plain"]]) == (
        b"content-type: text/plain\r\n",
        None,
    )
    assert writer.plain_lines([(b"content-type", bytearray(b"text/plain"))]) is None
    assert writer.plain_lines([(b"server", b"app")]) is None
    assert writer.plain_lines([(b"server", b"app")]) is None
    assert list(writer._PLAIN_SEEN) == [tuple(first)]


def test_plain_lines_table_is_bounded() -> None:
    from asgiws import writer

    writer._PLAIN_SEEN.clear()
    for size in range(writer.PLAIN_SEEN_SIZE * 3):
        headers = [(b"content-length", b"%d" % size)]
        assert writer.plain_lines(headers) == (b"content-length: %d\r\n" % size, b"%d" % size)
        assert len(writer._PLAIN_SEEN) <= writer.PLAIN_SEEN_SIZE
    assert (  # the newest is kept
        (b"content-length", b"%d" % (writer.PLAIN_SEEN_SIZE * 3 - 1)),
    ) in writer._PLAIN_SEEN


def test_plain_lines_takes_the_common_heads() -> None:
    from asgiws.writer import plain_lines

    raw = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    assert plain_lines(raw) == (b"content-type: text/plain\r\ncontent-length: 2\r\n", b"2")
    starlette = [(b"content-length", b"18"), (b"content-type", b"application/json")]
    assert plain_lines(starlette) == (
        b"content-length: 18\r\ncontent-type: application/json\r\n",
        b"18",
    )
    assert plain_lines([]) == (b"", None)
    # A value that reads like a header is not one.
    assert plain_lines([(b"x-note", b"content-length: 5")]) == (
        b"x-note: content-length: 5\r\n",
        None,
    )
    for general in (
        [(b"Content-Type", b"text/plain")],  # lower-cased by the general path
        [(b"content-length", b"2"), (b"content-length", b"2")],  # written once by it
        [(b"server", b"app")],  # the app's own replaces the server's
        [(b"content-length", b"5, 5")],
        ((b"x-a", b"v"),),  # not a list
    ):
        assert plain_lines(general) is None, general
