"""A strict fast path for parsing an HTTP/1.1 request head, in front of h11.

Why this exists
---------------
Every WebSocket connection starts with one HTTP/1.1 request (the upgrade), and most HTTP
requests are small, well-formed heads too. Running it through
h11 (``h11.Connection()``, ``receive_data``, then ``next_event`` for the ``Request`` and again for
the ``EndOfMessage``) costs some 25-35 µs of CPU. Almost every real handshake is the easy case:
a small, well-formed head that arrives whole in the first read. ``parse_head`` recognises that
case with a few C-level operations (one ``find`` for the blank line, one precompiled regex
``match`` for the request line, one ``findall`` that both validates and splits every header
line, one ``count``); the only Python-level loop is the one that lower-cases the header names,
which also counts the Host lines and reads the Content-Length. It returns the same fields h11
would. The grammar below
mirrors h11's own (``h11/_abnf.py``, ``_readers.py``, ``_headers.py``, ``_events.py``, h11
0.16); ``tests/test_fasthead.py`` checks it against h11 byte for byte, so a change in h11's
grammar shows up there.

The contract
------------
``parse_head`` accepts a *strict subset* of what h11 accepts. It returns a ``RequestHead`` only
when it is certain that ``h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)``, fed
the same bytes, would produce an ``h11.Request`` with the same ``method``, ``target``,
``http_version`` and ``list(request.headers)`` for the bytes up to ``size``, followed by a body
of exactly ``content_length`` bytes (``EndOfMessage`` at once when it is 0). In every other
case it returns ``None``, and the caller hands the same bytes to h11, which then accepts them
or produces its precise error. ``None`` is always a safe
answer; a head that h11 would refuse or parse differently would be a bug.

What is accepted (everything else is ``None``)
----------------------------------------------
* The head ends at the first ``CRLF CRLF`` in ``data``, and that ``CRLF CRLF`` lies entirely
  within the first ``max_size`` bytes. Bytes after it (early WebSocket frames, a pipelined
  request) are allowed and are not looked at.
* Request line: ``method SP request-target SP "HTTP/1.1" CRLF``, with exactly one space at each
  separator; the method is a token and the target is one or more of ``%x21-7E``. These are
  h11's own request-line rules, restricted to HTTP/1.1.
* Lines end in ``CRLF`` only. A bare LF (which h11 accepts as a line end) or a bare CR anywhere
  in the head means ``None``.
* Header lines: ``field-name ":" OWS field-value OWS`` where the name is a token (no white
  space before the colon), OWS is ``*( SP / HTAB )`` and the value is empty or starts and ends
  with a visible byte: VCHAR or obs-text ``%x80-FF`` (no control byte and no DEL: stricter
  than h11's ``[^\\x00\\s]``, and the server refuses those heads with 400 anyway), with runs of
  SP / HTAB allowed inside. No obs-fold: a line that starts with SP or HTAB is not
  a header line, so a continuation line means ``None``.
* Exactly one ``Host`` header (h11 refuses an HTTP/1.1 request with none or with several);
  its value is not checked further, h11 does not check it either.
* No ``Transfer-Encoding`` header at all, even a valid one, and at most one ``Content-Length``,
  whose value is 1 to 15 digits and nothing else (h11 takes lists, repeats and longer numbers
  too: those go to it). Without one the request has no body, and h11's next event after the
  ``Request`` is ``EndOfMessage`` (h11 then pauses for an ``Upgrade`` request or ``CONNECT``,
  or waits for the next request); with one, the body is that many bytes.

The header list is what ``list(h11_request.headers)`` gives: names lower-cased, values with the
surrounding OWS removed, in the order sent.

h11 itself only limits the size of a head that is still incomplete; a complete head longer than
``max_size`` passes through h11, but is ``None`` here, so the fast path never accepts more than
the configured limit.

This module has no I/O and imports nothing from asyncio.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

from ._abnf import TCHAR_BYTES

__all__ = ["RequestHead", "parse_head"]


@dataclasses.dataclass(slots=True)
class RequestHead:
    """A request head, as h11 would have parsed it. See ``parse_head``.

    ``headers`` is a list of ``(lower-cased name, value)`` pairs, exactly
    ``list(h11.Request.headers)``; ``size`` is the length of the head in bytes, final
    ``CRLF CRLF`` included, so ``data[size:]`` is whatever followed it. Compared by value and
    not hashable (mutable), like h11's events.
    """

    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]
    size: int
    content_length: int = 0


# tchar, RFC 9110 §5.6.2; the same set as h11's ``token`` (h11/_abnf.py).
_TCHAR: Final = TCHAR_BYTES
# field-vchar (RFC 9110 §5.5): VCHAR and obs-text. Stricter than h11, whose ``[^\x00\s]``
# also lets control bytes and DEL through: a head with one goes to h11, and the scan of the
# head (asgiws.http11.head_syntax_problem) refuses it with 400.
_VCHAR: Final = rb"\x21-\x7e\x80-\xff"

# method SP request-target SP HTTP/1.1 CRLF, matched at the start of the data. The target is
# h11's ``vchar+``; neither it nor the method can contain CR or LF, so the match ends at the
# first line end of the data, which is inside the head.
_REQUEST_LINE: Final = re.compile(rb"([" + _TCHAR + rb"]+) ([\x21-\x7e]+) HTTP/1\.1\r\n")

# One header line, *including the CRLF that ends the line before it*, and followed (not
# consumed) by its own CRLF. Name and value contain no CR or LF, so a match spans exactly one
# whole line between two consecutive CRLFs (see parse_head for why that makes findall a
# validator). A Transfer-Encoding line (any case) does not match, so such a head is refused
# like any other line that does not match. The value group is h11's
# ``field_content`` with possessive quantifiers: runs of visible bytes separated by runs of
# SP / HTAB, so it starts and ends with a visible byte and the OWS on both sides is left out,
# as h11 leaves it out. Possessive matching never backtracks: the cost is linear in the line.
_HEADER_LINE: Final = re.compile(
    rb"\r\n(?!(?i:transfer-encoding):)"
    rb"([" + _TCHAR + rb"]+):[ \t]*+"
    rb"([" + _VCHAR + rb"]*+(?:[ \t]++[" + _VCHAR + rb"]++)*+)"
    rb"[ \t]*+(?=\r\n)"
)


# The longest Content-Length value the fast path takes (digits only); h11 takes longer ones.
_MAX_LENGTH_DIGITS: Final = 15


def parse_head(data: bytes | bytearray, max_size: int) -> RequestHead | None:
    """Parse a complete, strictly well-formed HTTP/1.1 request head at the start of ``data``.

    Returns a ``RequestHead`` when h11, fed the same bytes, would certainly produce an equal
    ``Request`` with a body of ``content_length`` bytes; returns ``None`` in every other case
    (head incomplete, longer than ``max_size``, not HTTP/1.1, anything h11 treats leniently
    or refuses, a Transfer-Encoding header, a Content-Length that is not plain digits or comes
    twice, no Host or several). The caller then falls back
    to h11 with the same bytes. See the module docstring for the exact accepted grammar.
    """
    # The first CRLF CRLF, lying entirely inside the first max_size bytes: the head fits the
    # limit. (find without bounds, then the bound: on CPython 3.11 find with bounds parses its
    # arguments the slow way. The search stops at the first CRLF CRLF either way.)
    end = data.find(b"\r\n\r\n")
    if end < 0 or end + 4 > max_size:
        return None
    line = _REQUEST_LINE.match(data, 0, end + 2)
    if line is None:
        return None
    # The header block runs from the request line's CRLF to the CRLF that ends the last header
    # line: "CRLF h1 CRLF h2 ... CRLF hn CRLF", with n + 1 LFs for n header lines (or fewer
    # lines and some bare LFs). Each match starts at a CRLF, holds no CR or LF, and ends right
    # before a CRLF; the last LF cannot start one. So there are n matches only if every LF
    # but the last starts one, which means the matches tile the block: every line is a clean
    # header line, split on CRLF exactly as h11 splits it, and there is no bare CR or LF.
    start = line.end() - 2
    stop = end + 2
    pairs: list[tuple[bytes, bytes]] = _HEADER_LINE.findall(data, start, stop)
    # (count over a copy: count with bounds parses its arguments slowly)
    if len(pairs) != data[start:stop].count(b"\n") - 1:
        # A line that is not a clean header line (obs-fold, bare LF or CR, NUL, white space
        # before the colon...) or is a Transfer-Encoding line.
        return None
    # Every line is a clean header line now, so the pairs are all of them: the Host lines and
    # the Content-Length lines are counted among the names (in the loop that lower-cases them,
    # a comparison or two per line: cheaper than a count, a lower and a findall over the block),
    # and a Content-Length value is read as it is, its OWS already left out.
    hosts = 0
    length = -1
    headers = []
    for name, value in pairs:  # (a loop, not a comprehension: on 3.11 that is one call more)
        name = name.lower()
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            # bytes.isdigit: ASCII digits only, and at least one.
            if length >= 0 or len(value) > _MAX_LENGTH_DIGITS or not value.isdigit():
                return None  # not plain digits, or more than one: h11 decides
            length = int(value)
        headers.append((name, value))
    if hosts != 1:
        return None  # h11 refuses an HTTP/1.1 request with no Host, or with several
    method, target = line.groups()
    return RequestHead(method, target, b"1.1", headers, end + 4, length if length >= 0 else 0)
