"""The headers the server adds to every response: ``--header``, ``--server-header`` and
``--date-header``.

:func:`parse_header` checks one ``NAME:VALUE`` item of ``--header`` (RFC 9110 §5.1: the name is
a token; §5.5: the value has no CR, LF, NUL or other control character but HTAB). Names are kept
lower-case, as ASGI carries them. :func:`static_headers` is the part of the block that never
changes (``--header`` items, then ``server: asgiws``), computed once per server; the I/O layer
puts ``date`` in front of it once a second when ``--date-header`` is on
(:class:`asgiws.protocol.ServerHeaders` holds the result, and an app's own header of the same
name replaces the server's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._abnf import TOKEN_BYTES
from .types import Headers

SERVER = (b"server", b"asgiws")

_TOKEN = re.compile(TOKEN_BYTES)
# RFC 9110 §5.5: field-value = *field-content, of VCHAR, obs-text, SP and HTAB.
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")

# Headers the server computes for each response (framing, the connection, the handshake, the
# clock): a fixed value for every response would break them.
_RESERVED = {
    b"content-length": "the server frames each response itself",
    b"transfer-encoding": "the server frames each response itself",
    b"connection": "the server decides whether a connection stays open",
    b"keep-alive": "the server decides whether a connection stays open",
    b"upgrade": "the server answers WebSocket upgrades itself",
    b"te": "it is a request header",
    b"trailer": "the server sends no trailers",
    b"sec-websocket-accept": "the server computes it for each handshake",
    b"sec-websocket-protocol": "the app chooses it in websocket.accept",
    b"sec-websocket-extensions": "the server negotiates it for each handshake",
    b"date": "the server's clock sets it; --no-date-header leaves it out",
}


class HeaderError(ValueError):
    """An item of ``--header`` that cannot be sent; the message says why."""


def parse_header(item: str) -> tuple[bytes, bytes]:
    """``"X-Frame-Options: DENY"`` -> ``(b"x-frame-options", b"DENY")``."""
    name_text, colon, value_text = item.partition(":")
    if not colon:
        raise HeaderError(f"{item!r} has no ':' (write NAME:VALUE, for example 'X-Team: web')")
    try:
        name = name_text.strip().encode("ascii")
    except UnicodeEncodeError:
        raise HeaderError(f"header name {name_text.strip()!r} is not a token") from None
    if not _TOKEN.fullmatch(name):
        raise HeaderError(f"header name {name_text.strip()!r} is not a token (RFC 9110 §5.1)")
    name = name.lower()
    reason = _RESERVED.get(name)
    if reason is not None:
        raise HeaderError(f"header {name.decode()!r} cannot be set with --header: {reason}")
    try:
        value = value_text.strip(" \t").encode("latin-1")
    except UnicodeEncodeError:
        raise HeaderError(
            f"header value {value_text.strip()!r} has characters outside latin-1"
        ) from None
    if not _VALUE.fullmatch(value):
        raise HeaderError(
            f"header value {value_text.strip()!r} has a control character (RFC 9110 §5.5)"
        )
    return name, value


def static_headers(items: Iterable[str], *, server_header: bool) -> Headers:
    """The ``--header`` items, then ``server: asgiws`` when ``server_header`` is on and no item
    names ``server``."""
    headers = [parse_header(item) for item in items]
    if server_header and all(name != b"server" for name, _ in headers):
        headers.append(SERVER)
    return headers
