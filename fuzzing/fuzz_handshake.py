"""Fuzz target: the opening handshake's validator (asgiws.handshake, asgiws.request, and the
permessage-deflate negotiation it calls).

The input is read as a request head, leniently, so that the fuzzer reaches the checks rather
than a parser: the first line is ``METHOD TARGET VERSION``, each next line ``name: value``
(a line without a colon is a name with an empty value). Then:

- ``validate_upgrade`` returns a key of 24 base64 characters that decode to 16 bytes, or raises
  HandshakeError with 400, 405 or 426 and a reason; ``upgrade_request`` agrees with it;
- ``open_request`` returns a scope (``websocket`` exactly when the request is a valid upgrade)
  or raises Refusal with a status and reason, nothing else;
- the subprotocols are trimmed tokens with no comma; negotiation answers with a value that
  parses as one permessage-deflate element, or declines;
- ``accept_headers`` for an offered subprotocol, one not offered, and app headers: a header
  list, or AcceptError / RuntimeError; the 101 carries the accept value of the key.

    python fuzzing/fuzz_handshake.py fuzzing/corpus/handshake -max_total_time=3600
"""

from __future__ import annotations

import binascii
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import instrumented, main

with instrumented(__name__):
    import h11

    from asgiws.config import Config
    from asgiws.deflate import parse_extensions
    from asgiws.handshake import (
        AcceptError,
        HandshakeError,
        accept_headers,
        accept_value,
        handshake_fields,
        is_upgrade_request,
        parse_subprotocols,
        switching_protocols,
        upgrade_request,
        validate_upgrade,
    )
    from asgiws.protocol import ServerHeaders
    from asgiws.request import Peer, Refusal, open_request

CONFIGS = (
    Config(),
    Config(ws_per_message_deflate=False, ws_allowed_origins=("https://*.example.com",)),
    Config(proxy_headers=True, forwarded_allow_ips="*", ws_deflate_window_bits=9),
)
HANDSHAKE_STATUSES = (400, 405, 426)
REFUSAL_STATUSES = (400, 403, 405, 426, 431)


def parse(data: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    lines = data.split(b"\r\n")
    request = lines[0].split(b" ")
    method = request[0]
    target = request[1] if len(request) > 1 else b"/"
    version = request[2][5:] if len(request) > 2 and request[2][:5] == b"HTTP/" else b"1.1"
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return method, target, version, headers


def check_validator(method: bytes, version: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    fields = handshake_fields(headers)
    assert is_upgrade_request(fields) == is_upgrade_request(headers)
    try:
        key = validate_upgrade(method, version, fields)
    except HandshakeError as exc:
        assert exc.status in HANDSHAKE_STATUSES and exc.reason, (exc.status, exc.reason)
        try:
            upgrade_request(method, version, fields)
        except HandshakeError as again:
            assert (again.status, again.reason) == (exc.status, exc.reason)
        else:
            raise AssertionError("upgrade_request accepted what validate_upgrade refused")
        return
    assert len(key) == 24 and len(binascii.a2b_base64(key)) == 16, key
    assert len(accept_value(key)) == 28
    upgraded_key, subprotocols, extension_offers, _ = upgrade_request(method, version, fields)
    assert upgraded_key == key
    for protocol in subprotocols:
        # Trimmed of HTTP's white space (bytes.strip: str.strip also takes \x1c-\x1f).
        raw = protocol.encode("latin-1")
        assert raw and raw == raw.strip() and b"," not in raw, protocol
    assert subprotocols == parse_subprotocols(headers)
    for config in CONFIGS:
        check_accept(key, subprotocols, extension_offers, config)


def check_accept(key: bytes, offered: list[str], offers: list[str], config: Config) -> None:
    messages: list[dict[str, object]] = [
        {"type": "websocket.accept"},
        {"type": "websocket.accept", "subprotocol": offered[0] if offered else "chat"},
        {"type": "websocket.accept", "headers": [(b"x-app", b"1")]},
    ]
    for message in messages:
        try:
            headers, deflate = accept_headers(message, offered, offers, config)
        except AcceptError:
            assert message.get("subprotocol") not in offered
            continue
        names = [name for name, _ in headers]
        if deflate is not None:
            (value,) = (v for n, v in headers if n == b"sec-websocket-extensions")
            parsed = parse_extensions(value.decode("latin-1"))
            assert len(parsed) == 1 and parsed[0] is not None, value
            assert parsed[0][0] == "permessage-deflate"
        else:
            assert b"sec-websocket-extensions" not in names
        response = switching_protocols(key, headers, ServerHeaders())
        assert response.startswith(b"HTTP/1.1 101 ") and response.endswith(b"\r\n\r\n")
        assert b"\r\nsec-websocket-accept: " + accept_value(key) + b"\r\n" in response


def h11_head(data: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """The head as h11 parses it (what open_request is given by the core), or None."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data if data.endswith(b"\r\n\r\n") else data + b"\r\n\r\n")
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    return event.method, event.target, event.http_version, list(event.headers)


def check_request(data: bytes) -> None:
    head = h11_head(data)
    if head is None:
        return
    method, target, version, headers = head
    for config in CONFIGS:
        try:
            peer = Peer(config, ("127.0.0.1", 50000), ("127.0.0.1", 8000), False, None, None, None)
            scope, upgrade = open_request(method, target, version, headers, None, False, peer)
        except Refusal as refusal:
            assert refusal.status in REFUSAL_STATUSES and refusal.reason, refusal.status
            continue
        assert (scope["type"] == "websocket") is (upgrade is not None)
        assert isinstance(scope["path"], str)


def test_one_input(data: bytes) -> None:
    method, _, version, headers = parse(data)
    check_validator(method, version, headers)
    check_request(data)


if __name__ == "__main__":
    main(test_one_input, "handshake")
