"""instructions.py's bounded clients on 127.0.0.1: WebSocket echoes and handshakes, HTTP requests.

Blocking sockets, one message or request in flight per connection; every read has a timeout
and every response is checked, so a window counts only work that went right. The WebSocket
client masks with a seeded generator, so two runs send the server the same bytes; the HTTP
client's requests are the same bytes in every run.
"""

from __future__ import annotations

import base64
import hashlib
import re
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from random import Random

from benchmarks.servers import HOST

IO_TIMEOUT = 30.0  # seconds for any one socket operation (valgrind is slow, not this slow)
SIZE = 32  # bytes per echoed message, as in the suite's echo and handshake scenarios
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


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


def client_frame(opcode: int, payload: bytes, rng: Random) -> bytes:
    """One masked, final frame as a client sends it."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = rng.randbytes(4)
    return head + key + mask(payload, key)


def parse_frames(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each complete server frame at the front; consumed from buffer."""
    while len(buffer) >= 2:
        first, second = buffer[0], buffer[1]
        if second & 0x80:
            raise Failed("the server sent a masked frame")
        if not first & 0x80:
            raise Failed("the server fragmented a 32-byte message")
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
        yield first & 0x0F, payload


def upgrade_request(port: int, key: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def check_upgrade(head: bytes, key: str) -> None:
    """Status 101, Upgrade, Connection and the right Sec-WebSocket-Accept; no extensions."""
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
    if "sec-websocket-extensions" in fields:
        raise Failed("the server chose an extension the client never offered")


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

    def __init__(self, number: int, port: int, rng: Random, deadline: Deadline) -> None:
        super().__init__(number, port, deadline)
        self.rng = rng
        try:
            key = base64.b64encode(rng.randbytes(16)).decode()
            self.sock.sendall(upgrade_request(port, key))
            while b"\r\n\r\n" not in self.buffer:
                if len(self.buffer) > 16384:
                    raise Failed("upgrade response head longer than 16 KiB")
                self.receive()
            end = self.buffer.index(b"\r\n\r\n")
            check_upgrade(bytes(self.buffer[:end]), key)
            del self.buffer[: end + 4]
        except BaseException:
            self.sock.close()
            raise

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(client_frame(opcode, payload, self.rng))

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Frames already received; pings answered, pongs skipped."""
        for opcode, payload in parse_frames(self.buffer):
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


def echo_phase(connections: list[Connection], counts: list[int], first: int) -> int:
    """Each connection echoes counts[i] messages, one in flight; returns the echoes done."""
    remaining = list(counts)
    counters = [first] * len(connections)
    by_fd = {conn.sock.fileno(): i for i, conn in enumerate(connections)}
    outstanding: dict[int, bytes] = {}
    for i, conn in enumerate(connections):
        if remaining[i]:
            outstanding[i] = payload_for(i, counters[i])
            conn.send(OP_TEXT, outstanding[i])
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
                    outstanding[i] = payload_for(i, counters[i])
                    conn.send(OP_TEXT, outstanding[i])
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


def check_response(response: Response, number: int) -> None:
    """200, the body "ok", and the connection kept alive."""
    if response.status != 200:
        raise Failed(f"connection {number}: status {response.status}, expected 200")
    if response.body != OK_BODY:
        raise Failed(f"connection {number}: body {response.body[:40]!r}, expected {OK_BODY!r}")
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


def http_phase(connections: list[HttpConnection], counts: list[int], request: bytes) -> int:
    """Each connection sends `request` counts[i] times, one in flight, each response checked;
    returns the responses checked."""
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
            check_response(response, i)
            done += 1
            remaining[i] -= 1
            if remaining[i]:
                conn.send(request)
            else:
                waiting.discard(i)
    return done
