"""The opening handshake checks of RFC 6455 §4, in asgiws.handshake."""

from __future__ import annotations

import pytest
from wire import RFC_ACCEPT, RFC_KEY

from asgiws.handshake import (
    HandshakeError,
    accept_value,
    asks_upgrade,
    handshake_fields,
    is_upgrade_request,
    parse_subprotocols,
    validate_upgrade,
)

GOOD = [
    (b"host", b"example.com"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", RFC_KEY),
    (b"sec-websocket-version", b"13"),
]


def with_headers(**changes: bytes | None) -> list[tuple[bytes, bytes]]:
    names = {k.replace("_", "-").encode(): v for k, v in changes.items()}
    out = [(k, names.get(k, v)) for k, v in GOOD if names.get(k, v) is not None]
    return out  # type: ignore[return-value]


def test_rfc_6455_accept_vector() -> None:
    # RFC 6455 §1.3: the sample nonce gives this accept value.
    assert accept_value(RFC_KEY) == RFC_ACCEPT


def test_valid_request_returns_key() -> None:
    assert validate_upgrade(b"GET", b"1.1", GOOD) == RFC_KEY


@pytest.mark.parametrize(
    ("upgrade", "connection", "expected"),
    [
        (b"websocket", b"Upgrade", True),
        (b"WebSocket", b"keep-alive, Upgrade", True),
        (b"h2c, websocket", b"upgrade", True),
        (b"websocket", b"keep-alive", False),
        (b"h2c", b"Upgrade", False),
    ],
)
def test_upgrade_detection(upgrade: bytes, connection: bytes, expected: bool) -> None:
    headers = [(b"upgrade", upgrade), (b"connection", connection)]
    assert is_upgrade_request(headers) is expected
    assert asks_upgrade(handshake_fields(headers)) is expected  # the fast path's form of it


def test_no_upgrade_header_is_no_upgrade() -> None:
    for headers in ([], [(b"connection", b"Upgrade")], [(b"host", b"a"), (b"x-upgrade", b"1")]):
        assert not asks_upgrade(handshake_fields(headers))
        assert not is_upgrade_request(headers)


def test_tokens_span_repeated_headers() -> None:
    headers = [(b"upgrade", b"websocket"), (b"connection", b"keep-alive")]
    assert not is_upgrade_request(headers)
    assert is_upgrade_request([*headers, (b"connection", b" Upgrade ,")])


def test_post_is_405_with_allow() -> None:
    with pytest.raises(HandshakeError) as info:
        validate_upgrade(b"POST", b"1.1", GOOD)
    assert info.value.status == 405
    assert info.value.headers == [(b"allow", b"GET")]
    assert "POST" in info.value.reason


def test_http_10_is_400() -> None:
    with pytest.raises(HandshakeError) as info:
        validate_upgrade(b"GET", b"1.0", GOOD)
    assert (info.value.status, info.value.reason) == (
        400,
        "WebSocket upgrade requires HTTP/1.1, not HTTP/1.0",
    )


def test_missing_host_is_400() -> None:
    with pytest.raises(HandshakeError) as info:
        validate_upgrade(b"GET", b"1.1", with_headers(host=None))
    assert (info.value.status, info.value.reason) == (400, "missing Host header")


@pytest.mark.parametrize(
    "key",
    [
        b"abc",  # not base64 of 16 bytes
        b"dGhlIHNhbXBsZSBub25jZQ",  # padding missing
        b"dGhlIHNhbXBsZSBub25jZSE=",  # 17 bytes
        b"dGhlIHNhbXBsZSBub25j",  # 15 bytes
        b"!!!!!!!!!!!!!!!!!!!!!!==",  # not base64 at all
    ],
)
def test_bad_key_is_400_naming_header_and_value(key: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        validate_upgrade(b"GET", b"1.1", with_headers(sec_websocket_key=key))
    assert info.value.status == 400
    assert info.value.reason == f"invalid Sec-WebSocket-Key header: {key.decode()!r}"


def test_missing_and_repeated_key() -> None:
    with pytest.raises(HandshakeError, match="missing Sec-WebSocket-Key header"):
        validate_upgrade(b"GET", b"1.1", with_headers(sec_websocket_key=None))
    with pytest.raises(HandshakeError, match="more than one Sec-WebSocket-Key"):
        validate_upgrade(b"GET", b"1.1", [*GOOD, (b"sec-websocket-key", RFC_KEY)])


@pytest.mark.parametrize("version", [b"8", b"12", b"14", b"13, 8", None])
def test_unsupported_version_is_426_with_headers(version: bytes | None) -> None:
    with pytest.raises(HandshakeError) as info:
        validate_upgrade(b"GET", b"1.1", with_headers(sec_websocket_version=version))
    assert info.value.status == 426
    # RFC 6455 §4.2.2: the 426 names the versions the server speaks.
    assert info.value.headers == [(b"sec-websocket-version", b"13"), (b"upgrade", b"websocket")]
    assert info.value.reason.startswith("unsupported Sec-WebSocket-Version: ")


def test_subprotocols_from_every_header_trimmed_without_empties() -> None:
    headers = [
        (b"sec-websocket-protocol", b"chat, superchat"),
        (b"other", b"x"),
        (b"sec-websocket-protocol", b" , v2.json ,,Chat"),
    ]
    assert parse_subprotocols(headers) == ["chat", "superchat", "v2.json", "Chat"]
    assert parse_subprotocols([]) == []
