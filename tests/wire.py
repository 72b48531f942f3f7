"""Bytes on the wire, written once for every test module: the RFC 6455 example key, request
heads, client frames, and the parsing of a server frame.

Server-side tests (core and socket alike) build what a client sends with these, so that one
builder masks every client frame and one pair of constants is RFC 6455's example.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import struct

# RFC 6455 §1.3: the example key and the accept value the server must compute from it.
RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
# RFC 6455 §5.7: the masking key of the examples.
RFC_MASK = bytes.fromhex("37fa213d")

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


# -- HTTP ----------------------------------------------------------------------------------------


def http_request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "1.1",
) -> bytes:
    lines = [f"{method} {target} HTTP/{version}"]
    all_headers = [("Host", "test")] if headers is None else headers
    lines.extend(f"{k}: {v}" for k, v in all_headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- WebSocket -----------------------------------------------------------------------------------


def ws_request(
    target: str = "/",
    *,
    key: bytes = RFC_KEY,
    method: str = "GET",
    version: str = "1.1",
    host: bool = True,
    connection: str = "Upgrade",
    upgrade: str = "websocket",
    ws_version: str | None = "13",
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    headers = []
    if host:
        headers.append(("Host", "test"))
    headers.append(("Upgrade", upgrade))
    headers.append(("Connection", connection))
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key.decode("latin-1")))
    if ws_version is not None:
        headers.append(("Sec-WebSocket-Version", ws_version))
    headers.extend(extra or [])
    return http_request(method, target, headers, version=version)


def new_key() -> bytes:
    return base64.b64encode(os.urandom(16))


def client_frame(
    opcode: int,
    payload: bytes | str = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = RFC_MASK,
) -> bytes:
    """A client-to-server frame, masked with ``mask`` (RFC 6455 §5.3: clients always mask;
    None sends it unmasked, which a server must refuse); ``rsv``: the RSV bits of the first
    byte (0x40 is RSV1, a compressed message's)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0 if mask is None else 0x80
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, bit | 127, length)
    if mask is None:
        return header + payload
    if mask == b"\x00\x00\x00\x00":
        return header + mask + payload
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason.encode("utf-8")
    return client_frame(OP_CLOSE, payload)


@dataclasses.dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == OP_CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if self.payload else None

    @property
    def close_reason(self) -> str:
        assert self.opcode == OP_CLOSE
        return self.payload[2:].decode("utf-8")


def parse_frame(data: bytes) -> tuple[Frame, bytes]:
    """One server frame off the front of ``data`` (servers never mask), and what follows it."""
    first, second = data[0], data[1]
    assert not second & 0x80, "server frames must not be masked"
    length, pos = second & 0x7F, 2
    if length == 126:
        (length,) = struct.unpack("!H", data[2:4])
        pos = 4
    elif length == 127:
        (length,) = struct.unpack("!Q", data[2:10])
        pos = 10
    return Frame(bool(first & 0x80), first & 0x0F, data[pos : pos + length]), data[pos + length :]
