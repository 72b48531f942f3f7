"""Write the seed corpus of each fuzz target (fuzzing/corpus/<target>/), small files made from
the same builders as the tests' wire bytes. Run it again after changing a seed; the files are
committed, and a crash the fuzzer finds is committed next to them under its own name.

    python fuzzing/make_corpus.py
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
MASK = bytes.fromhex("37fa213d")  # RFC 6455 §5.7


def upgrade(*extra: bytes, target: bytes = b"/chat", version: bytes = b"1.1") -> bytes:
    lines = [
        b"GET " + target + b" HTTP/" + version,
        b"Host: example.com",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + KEY,
        b"Sec-WebSocket-Version: 13",
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return header + MASK + masked


def deflated(data: bytes) -> bytes:
    deflater = zlib.compressobj(wbits=-15)
    return (deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]


DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
HELLO = frame(0x1, b"Hello")

REQUEST_HEAD = {
    "upgrade": upgrade(),
    "upgrade_frames_behind": upgrade() + HELLO + frame(0x8, b"\x03\xe8"),
    "upgrade_deflate_subprotocol": upgrade(DEFLATE, b"Sec-WebSocket-Protocol: chat, superchat"),
    "upgrade_lowercase_ows": upgrade(b"x-a:  \t v \t").replace(
        b"Upgrade: websocket", b"upgrade:WebSocket"
    ),
    "upgrade_bad_version": upgrade().replace(b"Version: 13", b"Version: 8"),
    "upgrade_http10": upgrade(version=b"1.0"),
    "upgrade_body": upgrade(b"Content-Length: 2") + b"ab",
    "upgrade_two_hosts": upgrade(b"Host: other"),
    "upgrade_obs_fold": upgrade(b"X-A: 1", b" folded"),
    "upgrade_bare_lf": upgrade().replace(b"\r\nHost", b"\nHost"),
    "get": b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
    "post_chunked": b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    "pipelined": b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n" + upgrade(),
    "garbage": b"GARBAGE\r\n\r\n",
}

# fuzz_frames: a setting byte (bit 0 deflate, bit 1 no context takeover, bits 2-3 window,
# bits 4-5 max_size), a cut byte (0: one read; odd: also the encoding round trip), the stream.
PLAIN, DEFLATED, SMALL = 0x30, 0x31, 0x10  # max_size 1 MiB; 1 MiB compressed; 125 bytes
FRAMES = {
    "text": bytes((PLAIN, 0)) + HELLO,
    "text_byte_reads": bytes((PLAIN, 1)) + HELLO + frame(0x2, b"\x00\x01"),
    "fragmented_ping_between": bytes((PLAIN, 3))
    + frame(0x1, b"Hel", fin=False)
    + frame(0x9, b"ping")
    + frame(0x0, b"lo"),
    "close_with_reason": bytes((PLAIN, 0)) + frame(0x8, b"\x03\xe8bye"),
    "close_invalid_code": bytes((PLAIN, 0)) + frame(0x8, b"\x03\xed"),
    "bad_utf8": bytes((PLAIN, 2)) + frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80"),
    "unmasked": bytes((PLAIN, 0)) + b"\x81\x05Hello",
    "reserved_opcode": bytes((PLAIN, 0)) + frame(0x3, b""),
    "oversize": bytes((SMALL, 7)) + frame(0x2, b"x" * 200),
    "length_64bit": bytes((PLAIN, 5))
    + frame(0x2, b"y" * 300).replace(b"\xfe\x01\x2c", b"\xff" + struct.pack("!Q", 300), 1),
    # A 70,000-byte binary frame's start: collected in one buffer, read in place.
    "large_binary_start": bytes((PLAIN, 200)) + frame(0x2, bytes(range(256)) * 274)[:600],
    "deflate": bytes((DEFLATED, 0)) + frame(0x1, deflated(b"Hello, Hello, Hello"), rsv1=True),
    "deflate_fragmented": bytes((DEFLATED | 0x2, 9))
    + frame(0x2, deflated(b"abc" * 50)[:5], fin=False, rsv1=True)
    + frame(0x0, deflated(b"abc" * 50)[5:]),
    "deflate_bomb": bytes((DEFLATED | 0x10, 0))
    + frame(0x2, deflated(b"\x00" * 100_000), rsv1=True),
    "deflate_bad_data": bytes((DEFLATED, 0)) + frame(0x1, b"\xff\xff\xff\xff", rsv1=True),
    "rsv1_without_deflate": bytes((PLAIN, 0)) + frame(0x1, deflated(b"x"), rsv1=True),
}

HANDSHAKE = {
    "upgrade": upgrade(),
    "deflate_offers": upgrade(
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, "
        b"permessage-deflate; client_max_window_bits=9; server_no_context_takeover",
        b"Sec-WebSocket-Extensions: x-foo",
    ),
    "deflate_quoted": upgrade(
        b'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits="12"'
    ),
    "subprotocols": upgrade(
        b"Sec-WebSocket-Protocol: chat,, superchat ", b"Sec-WebSocket-Protocol: x"
    ),
    "origin": upgrade(b"Origin: https://app.example.com"),
    "forwarded": upgrade(
        b"X-Forwarded-For: 203.0.113.7", b"Forwarded: for=198.51.100.1;proto=https"
    ),
    "bad_key": upgrade().replace(KEY, b"dGhlIHNhbXBsZSBub25jZQ="),
    "two_keys": upgrade(b"Sec-WebSocket-Key: " + KEY),
    "post": upgrade().replace(b"GET ", b"POST "),
    "no_version": upgrade().replace(b"Sec-WebSocket-Version: 13\r\n", b""),
    "connection_list": upgrade().replace(
        b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"
    ),
}


def write(name: str, seeds: dict[str, bytes]) -> None:
    folder = CORPUS / name
    folder.mkdir(parents=True, exist_ok=True)
    for label, data in seeds.items():
        (folder / f"seed-{label}").write_bytes(data)


if __name__ == "__main__":
    write("request_head", REQUEST_HEAD)
    write("frames", FRAMES)
    write("handshake", HANDSHAKE)
    print(f"wrote {sum(len(s) for s in (REQUEST_HEAD, FRAMES, HANDSHAKE))} seed files")
