"""Micro-benchmark of the WebSocket data path: CPU time to receive and answer one message.

    python benchmarks/micro_codec.py [--rounds 5] [--number 20000]

For each codec: parse one 32-byte masked text frame from a client and encode the echo, as a
server does per message. Compared: asgiws.frames.FrameCodec, wsproto's server Connection, the
sans-IO core of websockets (websockets.server.ServerProtocol), and a direct parser (header
slice, unmask, decode: a floor for pure Python). Then 1 MiB masked binary messages, received
whole and in 64 KiB reads, next to the bare unmasking routine, and with permessage-deflate.
``--memory`` measures instead what one compressed connection costs (RSS, since zlib allocates
in C where tracemalloc does not look) with asgiws's zlib settings and with zlib's defaults.

The figure is CPU time (time.process_time) per round trip, best of --rounds, in microseconds.
"""

from __future__ import annotations

import argparse
import base64
import os
import time
from collections.abc import Callable

from asgiws import frames
from asgiws.deflate import negotiate, zlib_library
from asgiws.frames import BufferPool, FrameCodec, Message

MASK = b"\x37\xfa\x21\x3d"


def masked_frame(first: int, payload: bytes, mask: bytes = MASK) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 0x10000:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + mask + frames.apply_mask_python(payload, mask)


def cpu_us(function: Callable[[], object], number: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(number):
            function()
        best = min(best, time.process_time() - start)
    return best / number * 1e6


# -- one small text message ----------------------------------------------------------------------


def asgiws_echo(frame: bytes) -> Callable[[], object]:
    codec = FrameCodec()

    def run() -> object:
        for event in codec.receive_data(frame):
            if type(event) is Message:
                return codec.encode_message(event.data)
        raise AssertionError("no message")

    return run


def asgiws_echo_batch(frame: bytes, count: int = 10) -> Callable[[], object]:
    """``count`` frames arrive in one read, as under load: per-message figure."""
    codec = FrameCodec()
    batch = frame * count

    def run() -> object:
        return [codec.encode_message(event.data) for event in codec.receive_data(batch)]  # type: ignore[union-attr]

    return run


def wsproto_echo(frame: bytes) -> Callable[[], object]:
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    connection = Connection(ConnectionType.SERVER)

    def run() -> object:
        connection.receive_data(frame)
        for event in connection.events():
            if isinstance(event, TextMessage):
                return connection.send(TextMessage(data=event.data))
        raise AssertionError("no message")

    return run


def websockets_echo(frame: bytes) -> Callable[[], object]:
    from websockets.frames import Opcode
    from websockets.server import ServerProtocol

    protocol = ServerProtocol(max_size=16 * 1024 * 1024)
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.receive_data(
        (
            "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    (request,) = protocol.events_received()
    protocol.send_response(protocol.accept(request))  # type: ignore[arg-type]
    protocol.data_to_send()

    def run() -> object:
        protocol.receive_data(frame)
        for event in protocol.events_received():
            if event.opcode is Opcode.TEXT:  # type: ignore[union-attr]
                protocol.send_text(event.data)  # type: ignore[union-attr]
                return protocol.data_to_send()
        raise AssertionError("no message")

    return run


def direct_echo(frame: bytes) -> Callable[[], object]:
    apply_mask = frames._apply_mask

    def run() -> object:
        text = apply_mask(frame[6:], frame[2:6]).decode()
        payload = text.encode()
        return bytes((0x81, len(payload))) + payload

    return run


# -- 1 MiB binary --------------------------------------------------------------------------------


def big_whole(frame: bytes) -> Callable[[], object]:
    def run() -> object:
        return FrameCodec().receive_data(frame)

    return run


def big_chunked(frame: bytes, chunk: int = 64 * 1024) -> Callable[[], object]:
    pieces = [frame[i : i + chunk] for i in range(0, len(frame), chunk)]
    # A fresh codec per message, as for a new connection each time, sharing one buffer pool
    # as a server's connections may (a codec without one keeps its own).
    pool = BufferPool(count=4, largest=4 * 1024 * 1024)

    def run() -> object:
        codec = FrameCodec(pool=pool)
        for piece in pieces:
            events = codec.receive_data(piece)
        return events

    return run


def bare_unmask(payload: bytes) -> Callable[[], object]:
    apply_mask = frames._apply_mask

    def run() -> object:
        return apply_mask(payload, MASK)

    return run


def bare_unmask_chunked(payload: bytes, chunk: int = 64 * 1024) -> Callable[[], object]:
    apply_mask = frames._apply_mask
    pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]

    def run() -> object:
        return b"".join([apply_mask(piece, MASK) for piece in pieces])

    return run


def deflate_echo(message: str) -> Callable[[], object]:
    negotiated = negotiate(["permessage-deflate"], window_bits=12, mem_level=5)
    assert negotiated is not None
    _, deflate = negotiated
    codec = FrameCodec(deflate=deflate)
    # The client's stream: one compressor whose context is kept, as a browser does.
    import zlib

    client = zlib.compressobj(wbits=-15)
    payload = message.encode()

    def run() -> object:
        compressed = client.compress(payload) + client.flush(zlib.Z_SYNC_FLUSH)
        frame = masked_frame(0xC1, compressed[:-4])
        for event in codec.receive_data(frame):
            if type(event) is Message:
                return codec.encode_message(event.data)
        raise AssertionError("no message")

    return run


# -- memory of compressed connections ------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def deflate_memory(
    window_bits: int, mem_level: int, *, size: int, library: str = "zlib", count: int = 2000
) -> float:
    """RSS growth per connection's compression state, in KiB, over ``count`` of them.

    After one ``size``-byte text message each way (both zlib streams exist, context kept; a
    64 KiB message fills the windows, as a long-lived connection does); with ``size`` 0, just
    negotiated. RSS, because zlib allocates in C.
    """
    import gc
    import zlib

    text = os.urandom(max(size // 2, 1)).hex()[:size]  # compresses about 2:1, like real text
    client = zlib.compressobj(wbits=-15)
    wire = client.compress(text.encode()) + client.flush(zlib.Z_SYNC_FLUSH)
    frame = masked_frame(0xC1, wire[:-4])
    gc.collect()
    before = rss_bytes()
    keep = []
    for _ in range(count):
        negotiated = negotiate(
            ["permessage-deflate; client_max_window_bits"],
            window_bits=window_bits,
            mem_level=mem_level,
            library=zlib_library(library),
        )
        assert negotiated is not None
        codec = FrameCodec(deflate=negotiated[1])
        if size:
            assert codec.receive_data(frame) == [Message(text)]
            codec.encode_message(text)
        keep.append(codec)
    gc.collect()
    return (rss_bytes() - before) / count / 1024


def memory_report() -> None:
    print("\nmemory per compressed connection (RSS growth over 2,000, KiB each)")
    print("after one message each way of:")
    print(f"{'library, compressor settings':<46}{'none':>8}{'32 B':>8}{'64 KiB':>8}")
    for library in ("zlib", "zlib-ng"):
        for label, bits, level in (
            ("asgiws defaults (12 bits, level 5)", 12, 5),
            ("zlib defaults (15 bits, level 8)", 15, 8),
        ):
            figures = [
                deflate_memory(bits, level, size=size, library=library) for size in (0, 32, 65536)
            ]
            print(f"{library + ', ' + label:<46}" + "".join(f"{kib:>8.1f}" for kib in figures))
    print("(the client's window stays at 15 bits: the inflater's 32 KiB window is in both rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument(
        "--memory", action="store_true", help="only measure compressed connections' memory"
    )
    args = parser.parse_args()
    if args.memory:
        memory_report()
        return
    rounds, number = args.rounds, args.number

    compiled = frames._apply_mask is not frames.apply_mask_python
    print(f"unmasking: {'websockets.speedups (compiled)' if compiled else 'pure Python'}")
    text = "x" * 32
    frame = masked_frame(0x81, text.encode())
    rows = [
        ("asgiws FrameCodec", cpu_us(asgiws_echo(frame), number, rounds)),
        ("wsproto Connection", cpu_us(wsproto_echo(frame), number // 4, rounds)),
        ("websockets ServerProtocol", cpu_us(websockets_echo(frame), number, rounds)),
        ("direct parser (floor)", cpu_us(direct_echo(frame), number, rounds)),
        ("asgiws, 10 frames per read", cpu_us(asgiws_echo_batch(frame), number // 10, rounds) / 10),
    ]
    ours = rows[0][1]
    print("\nreceive + echo one 32-byte masked text message (CPU us per message)")
    print(f"{'codec':<28}{'us':>8}{'vs asgiws':>12}")
    for name, us in rows:
        print(f"{name:<28}{us:>8.2f}{us / ours:>11.2f}x")

    big = os.urandom(1 << 20)
    big_frame = masked_frame(0x82, big)
    n_big = max(20, number // 200)
    bare = cpu_us(bare_unmask(big), n_big, rounds)
    rows = [
        ("unmask only (the floor)", bare),
        ("FrameCodec, one read", cpu_us(big_whole(big_frame), n_big, rounds)),
        ("unmask 64 KiB pieces + join", cpu_us(bare_unmask_chunked(big), n_big, rounds)),
        ("FrameCodec, 64 KiB reads", cpu_us(big_chunked(big_frame), n_big, rounds)),
    ]
    print("\nreceive one 1 MiB masked binary message (CPU us per message)")
    print(f"{'path':<30}{'us':>8}{'vs unmask':>12}")
    for name, us in rows:
        print(f"{name:<30}{us:>8.1f}{us / bare:>11.2f}x")

    print("\npermessage-deflate, receive + echo (CPU us per message, context takeover)")
    for size in (32, 1024):
        message = ("hello world " * (size // 12 + 1))[:size]
        us = cpu_us(deflate_echo(message), number // 4, rounds)
        print(f"{f'{size}-byte text':<28}{us:>8.2f}")


if __name__ == "__main__":
    main()
