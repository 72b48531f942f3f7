"""The opening handshake of RFC 6455 §4, validated by asgiws itself.

wsproto alone accepts a key that is not base64 and requests over HTTP/1.0, and answers an
unsupported version without the headers RFC 6455 asks for, so every check is made here, in the
order of RFC 6455 §4.2.1, and each failure carries the response it needs.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .asgi import check_field_lines
from .deflate import negotiate as negotiate_deflate
from .deflate import zlib_library

if TYPE_CHECKING:
    from .config import Config
    from .deflate import PerMessageDeflate
    from .protocol import ServerHeaders

Headers = Sequence[tuple[bytes, bytes]]

# RFC 6455 §1.3: the GUID concatenated with the key before hashing.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSION = b"13"


class HandshakeError(Exception):
    """A rejected handshake, holding the HTTP response that says why."""

    def __init__(
        self, status: int, reason: str, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)


# The request headers read before the app runs (the handshake's, Origin, the framing headers, the
# proxy headers of asgiws.proxy.PROXY_FIELDS); every other header is passed over in one scan.
HANDSHAKE_FIELDS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"origin",
        b"content-length",
        b"transfer-encoding",
        b"expect",  # a request with it is left to h11, which sends the 100 Continue
        b"host",
        b"upgrade",
        b"connection",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    }
)

# The values of the handshake's headers, by lower-case name, in the order they came.
Fields = dict[bytes, list[bytes]]


def handshake_fields(headers: Headers) -> Fields:
    """The values of the headers in :data:`HANDSHAKE_FIELDS`, collected in one pass."""
    fields: Fields = {}
    for name, value in headers:
        if name in HANDSHAKE_FIELDS:
            # (``in``, not get(): no method call for a name seen once, nearly every one)
            if name in fields:
                fields[name].append(value)
            else:
                fields[name] = [value]
    return fields


def _fields(headers: Headers | Fields) -> Fields:
    return headers if type(headers) is dict else handshake_fields(headers)  # type: ignore[arg-type]


def _has_token(values: list[bytes] | None, token: bytes) -> bool:
    """True when ``token`` (lower case) is among the comma-separated tokens of ``values``."""
    if values is None:
        return False
    if len(values) == 1 and values[0].lower() == token:
        return True  # "Upgrade: websocket", "Connection: Upgrade": no list to split
    return token in _tokens(values)


def _tokens(values: list[bytes] | None) -> list[bytes]:
    tokens = []
    for value in values or ():
        for token in value.split(b","):
            token = token.strip()
            if token:
                tokens.append(token.lower())
    return tokens


def is_upgrade_request(headers: Headers | Fields) -> bool:
    """True when the request asks to switch to WebSocket (RFC 6455 §4.1, items 5 and 6)."""
    return asks_upgrade(_fields(headers))


def asks_upgrade(fields: Fields) -> bool:
    """:func:`is_upgrade_request` for the fields :func:`handshake_fields` collected; a request
    without an Upgrade header (nearly every plain one) is told in one lookup."""
    upgrade = fields.get(b"upgrade")
    if upgrade is None:
        return False
    connection = fields.get(b"connection")
    if (
        connection is not None
        and len(upgrade) == 1
        and len(connection) == 1
        and upgrade[0].lower() == b"websocket"
        and connection[0].lower() == b"upgrade"
    ):
        return True  # "Upgrade: websocket", "Connection: Upgrade": _has_token's first answer
    return _has_token(upgrade, b"websocket") and _has_token(connection, b"upgrade")


def validate_upgrade(method: bytes, http_version: bytes, headers: Headers | Fields) -> bytes:
    """Check an upgrade request; return its ``Sec-WebSocket-Key`` or raise HandshakeError."""
    # (_fields, inline: a call less per handshake)
    fields = headers if type(headers) is dict else handshake_fields(headers)  # type: ignore[arg-type]
    # RFC 6455 §4.1: "The method of the request MUST be GET".
    if method != b"GET":
        raise HandshakeError(
            405,
            f"WebSocket upgrade requires GET, not {method.decode('latin-1')}",
            [(b"allow", b"GET")],
        )
    # RFC 6455 §4.1: "the HTTP version MUST be at least 1.1".
    if http_version < b"1.1":
        raise HandshakeError(
            400, f"WebSocket upgrade requires HTTP/1.1, not HTTP/{http_version.decode('latin-1')}"
        )
    # RFC 6455 §4.1, item 4: the request MUST contain a Host header field.
    if b"host" not in fields:
        raise HandshakeError(400, "missing Host header")
    # RFC 6455 §4.1, item 7: the key is a nonce of 16 bytes, base64-encoded.
    keys = fields.get(b"sec-websocket-key")
    if not keys:
        raise HandshakeError(400, "missing Sec-WebSocket-Key header")
    if len(keys) > 1:
        raise HandshakeError(400, "more than one Sec-WebSocket-Key header")
    key = keys[0].strip()
    # 16 bytes are 24 base64 characters, the last two "=" padding; strict_mode refuses any
    # other character, misplaced padding and leftover bits.
    try:
        raw = binascii.a2b_base64(key, strict_mode=True) if len(key) == 24 else b""
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(400, f"invalid Sec-WebSocket-Key header: {key.decode('latin-1')!r}")
    # RFC 6455 §4.2.2: on an unsupported version, answer 426 with the versions we speak.
    versions = fields.get(b"sec-websocket-version") or []
    if len(versions) != 1 or versions[0].strip() != SUPPORTED_VERSION:
        shown = ", ".join(v.decode("latin-1") for v in versions) or "(missing)"
        raise HandshakeError(
            426,
            f"unsupported Sec-WebSocket-Version: {shown}",
            [(b"sec-websocket-version", SUPPORTED_VERSION), (b"upgrade", b"websocket")],
        )
    return key


def accept_value(key: bytes) -> bytes:
    """RFC 6455 §4.2.2, item 5.4: base64 of the SHA-1 of the key and the GUID."""
    return binascii.b2a_base64(hashlib.sha1(key + WS_GUID).digest(), newline=False)


def parse_subprotocols(headers: Headers | Fields) -> list[str]:
    """Subprotocols offered in every Sec-WebSocket-Protocol header, in order, trimmed, no empties.

    Tokens keep their case: RFC 6455 §11.3.4 says subprotocol names are case-sensitive.
    """
    offered = []
    # (_fields, inline: a call less per handshake)
    fields = headers if type(headers) is dict else handshake_fields(headers)  # type: ignore[arg-type]
    for value in fields.get(b"sec-websocket-protocol") or ():
        for token in value.split(b","):
            token = token.strip()
            if token:
                offered.append(token.decode("latin-1"))
    return offered


# The 101's fixed part, up to the Sec-WebSocket-Accept value.
_SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"upgrade: websocket\r\n"
    b"connection: Upgrade\r\n"
    b"sec-websocket-accept: "
)


def switching_protocols(key: bytes, headers: Headers, server: ServerHeaders) -> bytes:
    """The 101 response to a validated handshake (RFC 6455 §4.2.2, item 5): ``headers`` are
    the negotiated ones and the app's own, then come the server's (``date``, ``server``) that
    ``headers`` do not set.

    Written here rather than through h11: it is the one response of a WebSocket connection,
    and h11's checks would cost more than the rest of the handshake. The app's headers were
    checked by ``asgi.check_field_lines``."""
    # (accept_value, inline: a call less per handshake)
    accept = binascii.b2a_base64(hashlib.sha1(key + WS_GUID).digest(), newline=False)
    if not headers:
        # Nearly every accept: no subprotocol, extension or header of the app's.
        return b"%s%s\r\n%s\r\n" % (_SWITCHING, accept, server.lines)
    lines = [_SWITCHING + accept + b"\r\n"]
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in server.merged(list(headers)))
    lines.append(b"\r\n")
    return b"".join(lines)


class AcceptError(RuntimeError):
    """A ``websocket.accept`` the server cannot honour: the app's mistake, named. The client
    gets a 500; the app gets this from its ``send()``."""


# Headers the server computes for the 101 response; the app may not set them.
_RESERVED_ACCEPT_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-accept", b"sec-websocket-extensions"}
)


def accept_headers(
    message: dict[str, Any], offered: list[str], extension_offers: list[str], config: Config
) -> tuple[list[tuple[bytes, bytes]], PerMessageDeflate | None]:
    """The 101's own headers for the app's ``websocket.accept``: the subprotocol it chose
    among those ``offered`` (RFC 6455 §4.2.2, item 5.5), permessage-deflate when an offer is
    acceptable and compression is on (RFC 7692 §5), then the app's headers. Also the
    compression state. Raises AcceptError (the handshake is then lost) for a subprotocol not
    offered or a header the server computes itself, and RuntimeError for a value of the wrong
    type or a malformed header."""
    subprotocol = message.get("subprotocol")
    if subprotocol is not None:
        if not isinstance(subprotocol, str):
            raise RuntimeError(  # the app may still accept properly: no 500 yet
                f"'subprotocol' in 'websocket.accept' must be a str, not "
                f"{type(subprotocol).__name__}"
            )
        if subprotocol not in offered:
            shown = ", ".join(repr(p) for p in offered) or "none"
            raise AcceptError(
                f"subprotocol {subprotocol!r} in 'websocket.accept' was not offered by the "
                f"client (offered: {shown})"
            )
    app_headers = message.get("headers")
    if app_headers:
        app_headers = check_field_lines(app_headers, "websocket.accept")
        for name, _ in app_headers:
            if name in _RESERVED_ACCEPT_HEADERS:
                raise AcceptError(
                    f"'websocket.accept' headers may not set {name.decode()!r}; "
                    "use the 'subprotocol' key for Sec-WebSocket-Protocol"
                )
    headers: list[tuple[bytes, bytes]] = []
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    deflate = None
    if extension_offers and config.ws_per_message_deflate:
        negotiated = negotiate_deflate(
            extension_offers,
            window_bits=config.ws_deflate_window_bits,
            mem_level=config.ws_deflate_mem_level,
            client_window_bits=config.ws_deflate_client_window_bits,
            level=config.ws_deflate_level,
            min_size=config.ws_deflate_min_size,
            library=zlib_library(config.ws_deflate_zlib),
        )
        if negotiated is not None:
            response_value, deflate = negotiated
            headers.append((b"sec-websocket-extensions", response_value.encode("latin-1")))
    if app_headers:
        headers.extend(app_headers)
    return headers, deflate


# What a valid upgrade request offered, kept until the app accepts or denies it:
# ``(key, subprotocols, extension_offers, body)``. ``key`` is Sec-WebSocket-Key, for the 101's
# accept value; ``subprotocols`` Sec-WebSocket-Protocol, in order; ``extension_offers`` each
# Sec-WebSocket-Extensions value; ``body`` says the head announces a body (Content-Length over
# 0, Transfer-Encoding): refused at the accept whether or not its bytes have come by then, so
# that the answer to a head does not depend on how its bytes were cut into reads. A tuple, not
# a class: on CPython 3.11 a dataclass's __init__ costs some 1,600 instructions more than a
# tuple, once per handshake.
Upgrade = tuple[bytes, list[str], list[str], bool]


def upgrade_request(method: bytes, http_version: bytes, fields: Fields) -> Upgrade:
    """Validate an upgrade request (HandshakeError says why not) and keep its offers."""
    key = validate_upgrade(method, http_version, fields)
    offers = fields.get(b"sec-websocket-extensions")
    lengths = fields.get(b"content-length")
    body = b"transfer-encoding" in fields or (
        lengths is not None and any(v.strip().lstrip(b"0") for v in lengths)
    )
    return (
        key,
        # (Most requests offer no subprotocol: no call for them.)
        parse_subprotocols(fields) if b"sec-websocket-protocol" in fields else [],
        [v.decode("latin-1") for v in offers] if offers else [],
        body,
    )
