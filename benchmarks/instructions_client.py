"""instructions.py's bounded clients on 127.0.0.1: WebSocket echoes and handshakes, HTTP requests.

Blocking sockets, one message or request in flight per connection; every read has a timeout
and every response is checked, so a window counts only work that went right. The WebSocket
client masks with a seeded generator, so two runs send the server the same bytes; the HTTP
client's requests are the same bytes in every run.

Two more WebSocket shapes: `DeflateConnection` offers permessage-deflate as browsers do and
compresses what it sends with one raw-deflate stream per connection (context takeover);
`fanout_phase` publishes on one connection of the raw app's /fanout/pub and reads every copy
from the /fanout/sub connections, one published message in flight.
"""

from __future__ import annotations

import base64
import hashlib
import re
import select
import selectors
import socket
import string
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from random import Random
from typing import Any

from benchmarks.servers import HOST

IO_TIMEOUT = 30.0  # seconds for any one socket operation (valgrind is slow, not this slow)
SIZE = 32  # bytes per echoed message, as in the suite's echo and handshake scenarios
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
RSV1 = 0x40  # a frame's first byte: set on the first frame of a compressed message
# permessage-deflate as Chrome and Firefox offer it: the server may choose the window the
# client's compressor uses (RFC 7692 §7.1.2.2); both sides keep their context.
BROWSER_DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # what a sync flush ends with; not sent (RFC 7692 §7.2.1)


class Failed(Exception):
    """A measurement could not be made: the server, the client or callgrind failed."""


# ---- WebSocket: frames, upgrade, echo --------------------------------------------------------


def mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, rng: Random, *, rsv1: bool = False) -> bytes:
    """One masked, final frame as a client sends it; `rsv1` marks a compressed message."""
    n = len(payload)
    first = 0x80 | (RSV1 if rsv1 else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = rng.randbytes(4)
    return head + key + mask(payload, key)


def parse_frames(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each complete server frame at the front; consumed from buffer.
    No extension was negotiated: a frame with RSV1 set fails."""
    for opcode, compressed, payload in parse_frames_rsv1(buffer):
        if compressed:
            raise Failed("the server set RSV1 without permessage-deflate")
        yield opcode, payload


def parse_frames_rsv1(buffer: bytearray) -> Iterator[tuple[int, bool, bytes]]:
    """(opcode, RSV1, payload) of each complete server frame at the front; consumed from
    buffer. RSV2 or RSV3 set fails (no extension defines them here)."""
    while len(buffer) >= 2:
        first, second = buffer[0], buffer[1]
        if second & 0x80:
            raise Failed("the server sent a masked frame")
        if not first & 0x80:
            raise Failed("the server fragmented a message")
        if first & 0x30:
            raise Failed(f"the server set RSV2 or RSV3 (first byte {first:#04x})")
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return
            (length,), offset = struct.unpack_from("!H", buffer, 2), 4
        elif length == 127:
            if len(buffer) < 10:
                return
            (length,), offset = struct.unpack_from("!Q", buffer, 2), 10
        if len(buffer) < offset + length:
            return
        payload = bytes(buffer[offset : offset + length])
        del buffer[: offset + length]
        yield first & 0x0F, bool(first & RSV1), payload


def upgrade_request(port: int, key: str, path: str = "/", extensions: str | None = None) -> bytes:
    """The upgrade request; `extensions` is the Sec-WebSocket-Extensions offer, if any."""
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{offer}\r\n"
    ).encode()


def check_upgrade(head: bytes, key: str, *, offered: bool = False) -> str | None:
    """Status 101, Upgrade, Connection and the right Sec-WebSocket-Accept; returns the
    Sec-WebSocket-Extensions answer. Without an offer there must be none."""
    lines = head.decode("latin-1").split("\r\n")
    if not re.fullmatch(r"HTTP/1\.1 101( .*)?", lines[0]):
        raise Failed(f"upgrade refused: {lines[0]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if fields.get("sec-websocket-accept") != expected:
        raise Failed(f"wrong Sec-WebSocket-Accept {fields.get('sec-websocket-accept')!r}")
    if fields.get("upgrade", "").lower() != "websocket":
        raise Failed("upgrade response lacks Upgrade: websocket")
    if "upgrade" not in fields.get("connection", "").lower():
        raise Failed("upgrade response lacks Connection: Upgrade")
    if "sec-websocket-extensions" in fields and not offered:
        raise Failed("the server chose an extension the client never offered")
    return fields.get("sec-websocket-extensions")


@dataclass(frozen=True)
class DeflateParams:
    """What the server's permessage-deflate answer lets the client do (RFC 7692 §7.1)."""

    client_window_bits: int = 15  # the client's compressor window
    client_no_context_takeover: bool = False  # a fresh compressor for each message


def deflate_answer(value: str | None) -> DeflateParams:
    """The client's side of the server's Sec-WebSocket-Extensions answer to the browser
    offer; fails unless it is exactly one permessage-deflate with parameters it may send."""
    if value is None:
        raise Failed("the 101 has no Sec-WebSocket-Extensions: permessage-deflate not chosen")
    name, *params = (part.strip() for part in value.split(";"))
    if name.lower() != "permessage-deflate" or "," in value:
        raise Failed(f"the server answered {value!r}, not one permessage-deflate")
    bits, no_takeover, seen = 15, False, set()
    for param in params:
        key, sep, raw = (part.strip() for part in param.partition("="))
        key = key.lower()
        if key in seen:
            raise Failed(f"permessage-deflate parameter {key!r} twice in {value!r}")
        seen.add(key)
        raw = raw.strip('"')
        if key == "client_max_window_bits":
            if not (sep and raw.isdigit() and 8 <= int(raw) <= 15):
                raise Failed(f"client_max_window_bits {raw!r} in {value!r}")
            bits = max(int(raw), 9)  # zlib's raw deflate has no 8-bit window; 9 fits it
        elif key == "server_max_window_bits":
            if not (sep and raw.isdigit() and 8 <= int(raw) <= 15):
                raise Failed(f"server_max_window_bits {raw!r} in {value!r}")
        elif key == "client_no_context_takeover" and not sep:
            no_takeover = True
        elif key == "server_no_context_takeover" and not sep:
            pass  # the server's choice; a kept inflater reads such messages as well
        else:
            raise Failed(f"unexpected permessage-deflate parameter {param!r} in {value!r}")
    return DeflateParams(bits, no_takeover)


def payload_for(connection: int, counter: int) -> bytes:
    """32 ASCII bytes, different per connection and message, same in every run."""
    stamp = f"{counter:08x}{connection:08x}".encode()
    return stamp + b"0123456789abcdef"[: SIZE - len(stamp)]


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self, cap: float = IO_TIMEOUT) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise Failed("the run's --timeout passed")
        return min(remaining, cap)


class Stream:
    """A connected blocking socket (TCP_NODELAY) and what it has received; reads time out."""

    def __init__(self, number: int, port: int, deadline: Deadline) -> None:
        self.number = number
        self.deadline = deadline
        self.buffer = bytearray()
        self.sock = socket.create_connection((HOST, port), timeout=deadline.left())
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            self.sock.close()
            raise

    def receive(self) -> None:
        self.sock.settimeout(self.deadline.left())
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise Failed(f"connection {self.number}: no data from the server in time") from None
        if not chunk:
            pending = f" ({len(self.buffer)} bytes of a reply pending)" if self.buffer else ""
            raise Failed(f"connection {self.number}: the server closed the connection{pending}")
        self.buffer += chunk


class Connection(Stream):
    """One client WebSocket over a blocking socket; every read has a timeout."""

    offer: str | None = None  # the Sec-WebSocket-Extensions offer

    def __init__(
        self, number: int, port: int, rng: Random, deadline: Deadline, path: str = "/"
    ) -> None:
        super().__init__(number, port, deadline)
        self.rng = rng
        try:
            key = base64.b64encode(rng.randbytes(16)).decode()
            self.sock.sendall(upgrade_request(port, key, path, self.offer))
            while b"\r\n\r\n" not in self.buffer:
                if len(self.buffer) > 16384:
                    raise Failed("upgrade response head longer than 16 KiB")
                self.receive()
            end = self.buffer.index(b"\r\n\r\n")
            answer = check_upgrade(bytes(self.buffer[:end]), key, offered=self.offer is not None)
            del self.buffer[: end + 4]
            self.negotiated(answer)
        except BaseException:
            self.sock.close()
            raise

    def negotiated(self, answer: str | None) -> None:
        """The server's Sec-WebSocket-Extensions answer (none: nothing was offered)."""

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(client_frame(opcode, payload, self.rng))

    def send_text(self, payload: bytes) -> None:
        self.send(OP_TEXT, payload)

    def parsed(self) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of each complete frame received, consumed from the buffer."""
        return parse_frames(self.buffer)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Frames already received; pings answered, pongs skipped."""
        for opcode, payload in self.parsed():
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode != OP_PONG:
                yield opcode, payload

    def next_frame(self) -> tuple[int, bytes]:
        while True:
            for frame in self.frames():
                return frame
            self.receive()

    def expect_echo(self, payload: bytes) -> None:
        opcode, data = self.next_frame()
        if opcode != OP_TEXT or data != payload:
            raise Failed(f"connection {self.number}: wrong echo {opcode:#x} {data[:40]!r}")

    def close(self) -> None:
        """Close 1000, the server's Close, then wait for the server to end TCP."""
        try:
            self.send(OP_CLOSE, struct.pack("!H", 1000))
            opcode, data = self.next_frame()
            if opcode != OP_CLOSE or data[:2] != struct.pack("!H", 1000):
                raise Failed(f"connection {self.number}: expected Close 1000, got {data[:2]!r}")
            if not self.buffer:
                self.sock.settimeout(self.deadline.left())
                try:
                    if not self.sock.recv(65536):
                        return
                except TimeoutError:
                    raise Failed(f"connection {self.number}: TCP still open") from None
            raise Failed(f"connection {self.number}: data after the server's Close")
        finally:
            self.sock.close()


class DeflateConnection(Connection):
    """A client WebSocket that offers permessage-deflate as browsers do and must get it.

    Each text message it sends is compressed by one raw-deflate stream kept for the
    connection (context takeover, unless the server's answer says client_no_context_takeover;
    the window the answer allows), sync-flushed, its trailing 00 00 ff ff left out, in one
    frame with RSV1 set. What comes back with RSV1 set is inflated by one kept inflater; what
    comes back with RSV1 clear is taken as it is (asgiws sends short messages uncompressed).
    """

    offer = BROWSER_DEFLATE_OFFER
    MAX_MESSAGE = 1 << 20  # bytes: a longer inflated message fails

    def negotiated(self, answer: str | None) -> None:
        self.params = deflate_answer(answer)
        self.compressor = self._compressor()
        self.inflater = zlib.decompressobj(-15)  # reads any window up to 15 bits
        self.compressed_received = 0  # messages the server sent compressed (RSV1 set)
        self.plain_received = 0  # and uncompressed

    def _compressor(self) -> Any:
        bits = self.params.client_window_bits
        return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits)

    def send_text(self, payload: bytes) -> None:
        data = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        if not data.endswith(DEFLATE_TAIL):
            raise Failed("zlib's sync flush did not end with 00 00 ff ff")
        if self.params.client_no_context_takeover:
            self.compressor = self._compressor()
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(client_frame(OP_TEXT, data[: -len(DEFLATE_TAIL)], self.rng, rsv1=True))

    def parsed(self) -> Iterator[tuple[int, bytes]]:
        for opcode, compressed, payload in parse_frames_rsv1(self.buffer):
            if opcode >= OP_CLOSE:
                if compressed:
                    raise Failed(f"connection {self.number}: RSV1 on a control frame")
            elif compressed:
                payload = self.inflate(payload)
                self.compressed_received += 1
            else:
                self.plain_received += 1
            yield opcode, payload

    def inflate(self, payload: bytes) -> bytes:
        if self.inflater.eof:  # the server ended its stream (a final block): a fresh one
            self.inflater = zlib.decompressobj(-15)
        try:
            data = self.inflater.decompress(payload + DEFLATE_TAIL, self.MAX_MESSAGE)
        except zlib.error as exc:
            raise Failed(f"connection {self.number}: cannot inflate a message: {exc}") from None
        if self.inflater.unconsumed_tail:
            raise Failed(f"connection {self.number}: a message inflates past 1 MiB")
        return data


LETTERS = string.ascii_lowercase


def json_payload(seq: int, rng: Random) -> bytes:
    """32 bytes shaped like a small JSON message, `{"seq": 12, "text": "..."}`: the text is
    as many letters from `rng` as fill it."""
    head = f'{{"seq": {seq}, "text": "'
    room = SIZE - len(head) - 2
    if room < 1:
        raise ValueError(f"sequence number {seq} leaves no room in {SIZE} bytes")
    return (head + "".join(rng.choices(LETTERS, k=room)) + '"}').encode()


class JsonPayloads:
    """`payloads(connection, counter)`: json_payload(counter, the connection's generator).
    Each connection draws from its own generator seeded from `seed`, in its own message
    order, so its bytes are the same in every run however the connections interleave."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rngs: dict[int, Random] = {}

    def __call__(self, connection: int, counter: int) -> bytes:
        rng = self.rngs.get(connection)
        if rng is None:
            rng = self.rngs[connection] = Random(f"{self.seed}:{connection}")
        return json_payload(counter, rng)


# ---- wsload's --json messages (the suite's compressed-4k scenario) ---------------------------

_MASK64 = (1 << 64) - 1
WSLOAD_JSON_SEED = 0x6A736F6E2D736565  # wsload.c's JSON_SEED
WSLOAD_JSON_MIN = 32  # wsload.c's JSON_MIN: its smallest --json message
_ITEMS_MIN = 256  # JSON_ITEMS_MIN: from this size on, an array of items
_POOL = 256  # wsload's pool of bodies for a message of up to PREMASK_MIN (4,096) bytes
STAMP_AT = 8  # STAMP_AT_JSON: each message's 16-character stamp is the value of "seq"
# fmt: off
_WORDS = (
    "alpha", "river", "stone", "market", "signal", "window", "orange", "delta", "quiet",
    "rapid", "cloud", "ember", "forest", "harbor", "island", "jungle", "kettle", "lemon",
    "meadow", "north", "ocean", "pepper", "quartz", "rocket", "silver", "tunnel", "umber",
    "velvet", "winter", "yellow", "zephyr", "bridge", "candle", "dragon", "engine", "falcon",
    "garden", "hammer", "indigo", "jasper", "kernel", "ladder", "mirror", "nickel", "olive",
    "planet", "ribbon", "saddle", "timber", "update", "vector", "wagon", "anchor", "binary",
    "cobalt", "domain", "eagle", "fabric", "glacier", "hollow", "ivory", "jigsaw", "kiwi",
    "lantern",
)
# fmt: on
_KINDS = ("message", "update", "presence", "typing", "ack", "edit")


class _SplitMix64:
    """wsload's generator (splitmix64), from the same seed."""

    def __init__(self, state: int) -> None:
        self.state = state

    def __call__(self) -> int:
        self.state = z = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)


def _words(rng: _SplitMix64, k: int) -> str:
    out = ""
    while len(out) < k:
        out += _WORDS[rng() % len(_WORDS)][: k - len(out)]
        if len(out) < k:
            out += " "
    return out


def _json_item(rng: _SplitMix64, index: int, braces: bool) -> str:
    item_id = rng() % 1_000_000
    ts = 1_764_720_000_000 + index * 1379 + rng() % 1000
    text = _words(rng, 12 + rng() % 60)
    # wsload.c's snprintf arguments, drawn in the order gcc evaluates them on x86-64 Linux:
    # last first.
    read = "true" if rng() & 1 else "false"
    hundredths, units = rng() % 100, rng() % 100
    tag2, tag1 = _WORDS[rng() % len(_WORDS)], _WORDS[rng() % len(_WORDS)]
    kind = _KINDS[rng() % len(_KINDS)]
    number = rng() % 1000
    user = _WORDS[rng() % len(_WORDS)]
    return (
        f'{"{" if braces else ""}"id":{item_id},"ts":{ts},"user":"{user}_{number}",'
        f'"kind":"{kind}","text":"{text}","tags":["{tag1}","{tag2}"],'
        f'"score":{units}.{hundredths:02d},"read":{read}{"}" if braces else ""}'
    )


def wsload_json_bodies(size: int) -> list[bytes]:
    """The bodies `wsload --json --size SIZE` sends (its `--print-json`): JSON objects of
    exactly `size` bytes, "seq" still its placeholder; from 256 bytes on, an array of items.
    Only sizes up to 4,096 bytes (wsload's pool of 256; above, it pre-masks 4 bodies)."""
    if not WSLOAD_JSON_MIN <= size <= 4096:
        raise ValueError(f"wsload's --json messages here are 32 to 4,096 bytes, not {size}")
    rng = _SplitMix64(WSLOAD_JSON_SEED)
    bodies = []
    for index in range(_POOL):
        body = '{"seq":"' + "0" * 16 + '"'
        items = size >= _ITEMS_MIN
        if items:
            body += ',"items":['
        count = 0
        while True:
            item = _json_item(rng, index, items)
            # room left for "," item, then "]" and the shortest filler ("}" alone)
            if len(body) + len(item) + 1 + (1 if items else 0) + 1 > size:
                break
            if count or not items:
                body += ","
            body += item
            count += 1
        if items:
            body += "]"
        rest = size - len(body)  # the closing brace included
        if rest >= 9:
            body += ',"n":"' + _words(rng, rest - 8) + '"'
        elif rest >= 7:
            body += ',"n":' + "".join(str(1 + rng() % 9) for _ in range(rest - 6))
        else:
            body += " " * (size - 1 - len(body))
        body += "}"
        if len(body) != size:
            raise AssertionError(f"built {len(body)} bytes for {size}")
        bodies.append(body.encode())
    return bodies


class WsloadJsonPayloads:
    """`payloads(connection, counter)`: the message wsload's --json stream sends as that
    connection's `counter`-th: pooled body (counter + 7 * connection) % 256, its "seq" the
    stamp (the counter, then the connection, each 8 hex digits). The same in every run."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.bodies = wsload_json_bodies(size)

    def __call__(self, connection: int, counter: int) -> bytes:
        body = self.bodies[(counter + 7 * connection) % len(self.bodies)]
        stamp = f"{counter & 0xFFFFFFFF:08x}{connection & 0xFFFFFFFF:08x}".encode()
        return body[:STAMP_AT] + stamp + body[STAMP_AT + len(stamp) :]


Payloads = Callable[[int, int], bytes]  # (connection, counter) -> the message


def echo_phase(
    connections: list[Connection], counts: list[int], first: int, payloads: Payloads | None = None
) -> int:
    """Each connection echoes counts[i] messages, one in flight; returns the echoes done.
    Messages are `payloads(i, counter)` (default payload_for), counters from `first`."""
    payload_of = payload_for if payloads is None else payloads
    remaining = list(counts)
    counters = [first] * len(connections)
    by_fd = {conn.sock.fileno(): i for i, conn in enumerate(connections)}
    outstanding: dict[int, bytes] = {}
    for i, conn in enumerate(connections):
        if remaining[i]:
            outstanding[i] = payload_of(i, counters[i])
            conn.send_text(outstanding[i])
    done = 0
    deadline = connections[0].deadline
    while outstanding:
        waiting = [connections[i].sock for i in outstanding]
        ready, _, _ = select.select(waiting, [], [], deadline.left())
        if not ready:
            raise Failed(f"no echo from the server in {IO_TIMEOUT:.0f} s")
        for sock in ready:
            i = by_fd[sock.fileno()]
            conn = connections[i]
            conn.receive()
            for opcode, data in conn.frames():
                expected = outstanding.pop(i, None)
                if opcode != OP_TEXT or data != expected:
                    raise Failed(f"connection {i}: wrong echo {opcode:#x} {data[:40]!r}")
                done += 1
                remaining[i] -= 1
                counters[i] += 1
                if remaining[i]:
                    outstanding[i] = payload_of(i, counters[i])
                    conn.send_text(outstanding[i])
    return done


def handshake_loop(number: int, port: int, rng: Random, deadline: Deadline) -> None:
    conn = Connection(number, port, rng, deadline)
    payload = payload_for(number, 0)
    try:
        conn.send(OP_TEXT, payload)
        conn.expect_echo(payload)
    except BaseException:
        conn.sock.close()
        raise
    conn.close()


# ---- WebSocket: fanout (the raw app's /fanout/sub and /fanout/pub) ---------------------------

FANOUT_SUB = "/fanout/sub"
FANOUT_PUB = "/fanout/pub"
SUBSCRIBED = b"subscribed"  # apps.SUBSCRIBED: what a subscriber is told once registered
FANOUT_FILL = b"-published-to-every-subscriber"


def fanout_payload(seq: int) -> bytes:
    """32 ASCII bytes carrying the sequence number, the same in every run."""
    head = f"{seq:010d}".encode()
    return head + FANOUT_FILL[: SIZE - len(head)]


def subscribe(number: int, port: int, rng: Random, deadline: Deadline) -> Connection:
    """A /fanout/sub connection that has been told SUBSCRIBED."""
    conn = Connection(number, port, rng, deadline, FANOUT_SUB)
    try:
        opcode, data = conn.next_frame()
        if opcode != OP_TEXT or data != SUBSCRIBED:
            raise Failed(f"subscriber {number}: expected {SUBSCRIBED!r}, got {data[:40]!r}")
    except BaseException:
        conn.sock.close()
        raise
    return conn


def fanout_phase(
    publisher: Connection, subscribers: list[Connection], first: int, count: int
) -> int:
    """Publish `count` messages (sequence numbers from `first`), one in flight: each is sent,
    then every subscriber's copy is read and checked before the next is sent. Returns the
    deliveries checked (a message to one subscriber). The publisher must get nothing back."""
    deadline = publisher.deadline
    delivered = 0
    with selectors.DefaultSelector() as selector:
        for conn in (*subscribers, publisher):
            selector.register(conn.sock, selectors.EVENT_READ, conn)
        for seq in range(first, first + count):
            payload = fanout_payload(seq)
            publisher.send_text(payload)
            waiting = set(subscribers)
            while waiting:
                events = selector.select(deadline.left())
                if not events:
                    raise Failed(
                        f"message {seq}: {len(waiting)} of {len(subscribers)} subscribers "
                        f"got nothing in {IO_TIMEOUT:.0f} s"
                    )
                for key, _ in events:
                    conn = key.data
                    conn.receive()
                    for opcode, data in conn.frames():
                        if conn is publisher:
                            raise Failed(f"the publisher got {opcode:#x} {data[:40]!r}")
                        if conn not in waiting:
                            raise Failed(f"subscriber {conn.number}: two copies of message {seq}")
                        if opcode != OP_TEXT or data != payload:
                            raise Failed(
                                f"subscriber {conn.number}: got {opcode:#x} {data[:40]!r}, "
                                f"expected {payload!r}"
                            )
                        waiting.discard(conn)
                        delivered += 1
    return delivered


def spread(total: int, parts: int) -> list[int]:
    """total split into `parts` whole counts that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# ---- HTTP: keep-alive requests ---------------------------------------------------------------

BODY_SIZE = 1024  # bytes in each POST body
OK_BODY = b"ok"  # what apps.py's raw app answers to GET / and to a POST / it read in full
MAX_HEAD = 16384  # bytes: a longer response head is refused


def http_request(port: int, method: str = "GET", size: int = 0, path: str = "/") -> bytes:
    """One keep-alive HTTP/1.1 request; a POST carries `size` bytes, the same in every run."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    if method == "GET":
        return f"{head}\r\n".encode()
    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    fields = f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    return (head + fields).encode() + body


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def parse_response(buffer: bytearray) -> Response | None:
    """The complete response at the front of buffer, consumed; None while it is incomplete.

    Its body is exactly Content-Length bytes (no chunked encoding: the app sets the length).
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise Failed(f"response head longer than {MAX_HEAD} bytes")
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = re.fullmatch(r"HTTP/1\.1 (\d{3})(?: .*)?", lines[0])
    if status is None:
        raise Failed(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key = name.strip().lower()
        if not sep or not key:
            raise Failed(f"not a header line: {line[:80]!r}")
        if key == "content-length" and key in headers:
            raise Failed("two Content-Length headers")
        headers[key] = value.strip()
    if "transfer-encoding" in headers:
        raise Failed(f"Transfer-Encoding {headers['transfer-encoding']!r} instead of a length")
    length = headers.get("content-length", "")
    if not length.isdigit():
        raise Failed(f"no valid Content-Length: {length!r}")
    total = end + 4 + int(length)
    if len(buffer) < total:
        return None
    body = bytes(buffer[end + 4 : total])
    del buffer[:total]
    return Response(int(status.group(1)), headers, body)


def check_response(response: Response, number: int, expected: bytes = OK_BODY) -> None:
    """200, the body `expected` ("ok" by default), and the connection kept alive."""
    if response.status != 200:
        raise Failed(f"connection {number}: status {response.status}, expected 200")
    if response.body != expected:
        raise Failed(f"connection {number}: body {response.body[:40]!r}, expected {expected!r}")
    if "close" in response.headers.get("connection", "").lower():
        raise Failed(f"connection {number}: the server closes a keep-alive connection")


class HttpConnection(Stream):
    """One keep-alive HTTP/1.1 connection, one request in flight."""

    def send(self, request: bytes) -> None:
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(request)

    def close(self) -> None:
        """End our side, then wait for the server to end TCP: nothing may come before."""
        try:
            if self.buffer:
                raise Failed(f"connection {self.number}: {len(self.buffer)} unread bytes")
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(self.deadline.left())
            try:
                extra = self.sock.recv(65536)
            except TimeoutError:
                raise Failed(f"connection {self.number}: TCP still open") from None
            if extra:
                raise Failed(f"connection {self.number}: data after the last response")
        finally:
            self.sock.close()


def http_phase(
    connections: list[HttpConnection], counts: list[int], request: bytes, expected: bytes = OK_BODY
) -> int:
    """Each connection sends `request` counts[i] times, one in flight, each response checked
    (its body must be `expected`); returns the responses checked."""
    remaining = list(counts)
    by_fd = {conn.sock.fileno(): i for i, conn in enumerate(connections)}
    waiting: set[int] = set()
    for i, conn in enumerate(connections):
        if remaining[i]:
            conn.send(request)
            waiting.add(i)
    done = 0
    deadline = connections[0].deadline if connections else Deadline(IO_TIMEOUT)
    while waiting:
        ready, _, _ = select.select([connections[i].sock for i in waiting], [], [], deadline.left())
        if not ready:
            raise Failed(f"no response from the server in {IO_TIMEOUT:.0f} s")
        for sock in ready:
            i = by_fd[sock.fileno()]
            conn = connections[i]
            conn.receive()
            response = parse_response(conn.buffer)
            if response is None:
                continue
            if conn.buffer:  # one request in flight: more than Content-Length came back
                raise Failed(f"connection {i}: {len(conn.buffer)} bytes after a response")
            check_response(response, i, expected)
            done += 1
            remaining[i] -= 1
            if remaining[i]:
                conn.send(request)
            else:
                waiting.discard(i)
    return done
