"""The load generator: one scenario against one server, as a separate process.

Run as `python -m benchmarks.loadgen '<json request>'`; prints one JSON result line. The
stream and handshake scenarios run the C client `wsload.c` (built on first use, see
wsload.py), whose CPU cost per message is the kernel's loopback work and little else; where
gcc is missing, or the request says "client": "python", they run on picows's Cython client
(stream) and a raw-bytes asyncio client (handshakes) instead, as the idle scenario always
does. The server's CPU time is read from /proc here, at the edges of the measured window,
and the client's own CPU time over the same window, so a run where the client was the
bottleneck is flagged rather than reported as the server's speed. Every echo is checked
(type, length and content); a wrong one fails the run. The result names the client used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from benchmarks import httpload, procstat, wsload
from benchmarks.scenarios import Scenario

CONNECT_TIMEOUT = 10.0  # seconds for one connect + upgrade
DRAIN_TIMEOUT = 10.0  # seconds for in-flight echoes to come back after the window
CLOSE_TIMEOUT = 2.0  # seconds for the server to end TCP after the close handshake
IDLE_OPEN_CONCURRENCY = 64  # connects in flight while opening idle connections
IDLE_SETTLE = 1.0  # seconds between the last idle connection and the RSS reading
PAYLOADS_SMALL = 256  # distinct payloads per connection (a power of two)
PAYLOADS_LARGE = 4
CLIENT_BOUND = 0.90  # client process CPU share of its core over the window
CORE_SATURATED = 0.95  # whole client core busy share over the window
MAX_FRAME = 64 * 1024 * 1024
SUBSCRIBED = b"subscribed"  # apps.SUBSCRIBED: what a fanout subscriber is told first
PICOWS = "picows"  # client names, as results record them
PYTHON_RAW = "asyncio-raw"


# Makes a held connection's client from the window and its payloads (heldload.HeldClient).
HeldFactory = Callable[["Window", list[bytes]], "StreamClient"]


class WrongEcho(Exception):
    """The server sent back something other than what was sent."""


def payloads_for(scenario: Scenario, connection: int) -> list[bytes]:
    """Distinct payloads of the scenario's size, different per connection and per index."""
    count = PAYLOADS_LARGE if scenario.size > 4096 else PAYLOADS_SMALL
    rng = random.Random(connection)
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    result = []
    for index in range(count):
        head = f"{connection:05d}:{index:04d}:".encode()
        if scenario.text:
            body = bytes(rng.choices(alphabet, k=max(0, scenario.size - len(head))))
        else:
            body = rng.randbytes(max(0, scenario.size - len(head)))
        result.append((head + body)[: scenario.size])
    return result


@dataclass
class Window:
    """What happens inside the measured window; shared by every connection of a run."""

    sending: bool = True
    measuring: bool = False
    count: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    error: str | None = None
    wrong_echo: bool = False

    def fail(self, message: str, *, wrong_echo: bool = False) -> None:
        if self.error is None:
            self.error = message
        self.wrong_echo = self.wrong_echo or wrong_echo
        self.sending = False


class StreamClient(WSListener):
    """Keeps `in_flight` messages outstanding and checks each echo in order."""

    def __init__(self, window: Window, payloads: list[bytes], text: bool, in_flight: int) -> None:
        self.window = window
        self.payloads = payloads
        self.mask = len(payloads) - 1
        self.msg_type = WSMsgType.TEXT if text else WSMsgType.BINARY
        self.in_flight = in_flight
        self.next_index = 0
        self.expected: deque[tuple[int, int]] = deque()
        self.parts: list[bytes] = []
        self.transport: WSTransport | None = None
        self.drained = asyncio.get_running_loop().create_future()
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def start(self) -> None:
        now = time.perf_counter_ns()
        for _ in range(self.in_flight):
            self.send_next(now)

    def send_next(self, now: int) -> None:
        index = self.next_index
        self.next_index = (index + 1) & self.mask
        self.expected.append((index, now))
        self.transport.send(self.msg_type, self.payloads[index])  # type: ignore[union-attr]

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == self.msg_type and frame.fin and not self.parts:
            payload = frame.get_payload_as_bytes()
        elif msg_type == WSMsgType.CLOSE:
            self.closed = True
            if not self.drained.done():
                self.window.fail(f"server closed the connection: code {frame.get_close_code()}")
                self.drained.set_result(None)
            return
        elif msg_type in (WSMsgType.PING, WSMsgType.PONG):
            return
        elif msg_type == WSMsgType.CONTINUATION or (msg_type == self.msg_type and not frame.fin):
            if msg_type != WSMsgType.CONTINUATION and self.parts:
                self.window.fail("a new message started inside a fragmented one", wrong_echo=True)
                return
            self.parts.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return
            payload = b"".join(self.parts)
            self.parts = []
        else:
            self.window.fail(
                f"echo came back as {msg_type!r}, sent {self.msg_type!r}", wrong_echo=True
            )
            return
        self.check(payload)

    def check(self, payload: bytes) -> None:
        window = self.window
        if not self.expected:
            window.fail("an echo arrived that was never sent", wrong_echo=True)
            return
        index, sent = self.expected.popleft()
        expected = self.payloads[index]
        if payload != expected:
            window.fail(
                f"wrong echo: {len(payload)} bytes {payload[:24]!r}..., "
                f"sent {len(expected)} bytes {expected[:24]!r}...",
                wrong_echo=True,
            )
            return
        now = time.perf_counter_ns()
        if window.measuring:
            window.count += 1
            window.latencies_ns.append(now - sent)
        if window.sending:
            self.send_next(now)
        elif not self.expected and not self.drained.done():
            self.drained.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.drained.done():
            self.window.fail("server dropped the connection")
            self.drained.set_result(None)


HANDSHAKE_KEYS = 256  # distinct Sec-WebSocket-Key values cycled through
HANDSHAKE_PAYLOAD = b"handshake-echo-0123456789abcdefg"  # 32 bytes, text
MASK = b"\x37\xfa\x21\x3d"


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (FIN set, masked), RFC 6455 §5.2; payloads here are under 126 bytes."""
    masked = bytes(byte ^ MASK[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + masked


def handshake_requests(host: str, port: int) -> list[tuple[bytes, bytes]]:
    """(upgrade request, expected Sec-WebSocket-Accept) pairs, each with its own key."""
    pairs = []
    for index in range(HANDSHAKE_KEYS):
        key = base64.b64encode(index.to_bytes(16, "big"))
        # RFC 6455 §4.2.2: accept = base64(SHA-1(key + GUID))
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        request = (
            b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (host.encode(), port, key)
        )
        pairs.append((request, accept))
    return pairs


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ECHO_FRAME = _masked_frame(0x1, HANDSHAKE_PAYLOAD)
CLOSE_FRAME = _masked_frame(0x8, (1000).to_bytes(2, "big"))
EXPECTED_ECHO = bytes([0x81, len(HANDSHAKE_PAYLOAD)]) + HANDSHAKE_PAYLOAD


class OneShotProtocol(asyncio.Protocol):
    """Connect, upgrade, one echo, close handshake, wait for the server to end TCP.

    Written against the raw bytes rather than picows's client: a handshake through
    `ws_connect` costs the client more CPU than it costs the servers, which would make this
    scenario measure the client. Each step is still checked: status 101, the right
    Sec-WebSocket-Accept, the echo byte for byte, and a close frame back.
    """

    def __init__(self, request: bytes, accept: bytes) -> None:
        self.request = request
        self.accept = accept
        self.buffer = b""
        self.stage = 0  # 0 upgrade sent, 1 echo sent, 2 close sent, 3 close received
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()
        self.error: str | None = None
        self.wrong_echo = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def fail(self, message: str, wrong_echo: bool = False) -> None:
        if self.error is None:
            self.error = message
            self.wrong_echo = wrong_echo
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if self.stage == 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            head = buffer[:end]
            if not head.startswith(b"HTTP/1.1 101 ") or self.accept not in head:
                self.fail(f"bad upgrade response: {head[:200]!r}")
                return
            buffer = buffer[end + 4 :]
            self.stage = 1
            self.transport.write(ECHO_FRAME)  # type: ignore[union-attr]
        if self.stage == 1:
            if len(buffer) < len(EXPECTED_ECHO):
                self.buffer = buffer
                return
            if buffer[: len(EXPECTED_ECHO)] != EXPECTED_ECHO:
                self.fail(f"wrong echo: {buffer[:40]!r}", wrong_echo=True)
                return
            buffer = buffer[len(EXPECTED_ECHO) :]
            self.stage = 2
            self.transport.write(CLOSE_FRAME)  # type: ignore[union-attr]
        if self.stage == 2:
            if len(buffer) < 2:
                self.buffer = buffer
                return
            if buffer[0] != 0x88:
                self.fail(f"expected a close frame, got {buffer[:20]!r}")
                return
            self.stage = 3
        self.buffer = b""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stage != 3 and self.error is None:
            self.error = f"connection lost at step {self.stage}: {exc!r}"
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class Readings:
    """Counters read at one edge of the measured window."""

    wall: float
    server_cpu: float
    client_cpu: float
    client_sys: float
    cores: procstat.CoreTimes

    @classmethod
    def take(cls, server_pid: int, client: wsload.Marker | None = None) -> Readings:
        """Now; the client is this process, or the C client as of its `client` marker."""
        if client is None:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            wall, sys_cpu = time.perf_counter(), usage.ru_stime
            cpu = usage.ru_utime + usage.ru_stime
        else:
            wall, cpu, sys_cpu = client.t, client.utime + client.stime, client.stime
        return cls(
            wall=wall,
            server_cpu=procstat.tree_cpu_seconds(server_pid),
            client_cpu=cpu,
            client_sys=sys_cpu,
            cores=procstat.core_times(),
        )


def percentiles_ms(samples_ns: list[int]) -> dict[str, float | None]:
    if not samples_ns:
        return {"p50": None, "p99": None, "p99.9": None}
    ordered = sorted(samples_ns)
    last = len(ordered) - 1

    def pick(q: float) -> float:
        return round(ordered[min(last, int(q * len(ordered)))] / 1e6, 4)

    return {"p50": pick(0.50), "p99": pick(0.99), "p99.9": pick(0.999)}


def window_result(
    start: Readings, end: Readings, count: int, request: dict[str, Any]
) -> dict[str, Any]:
    wall = end.wall - start.wall
    server_cpu = end.server_cpu - start.server_cpu
    client_cpu = end.client_cpu - start.client_cpu
    client_sys = end.client_sys - start.client_sys
    client_share = client_cpu / wall if wall > 0 else 0.0
    client_core = procstat.core_busy_fraction(start.cores, end.cores, request["client_core"])
    server_core = procstat.core_busy_fraction(start.cores, end.cores, request["server_core"])
    return {
        "window_s": round(wall, 3),
        "ops": count,
        "ops_per_s": round(count / wall, 1) if wall > 0 else None,
        "server_cpu_s": round(server_cpu, 3),
        "ops_per_server_cpu_s": round(count / server_cpu, 1) if server_cpu > 0 else None,
        "server_cpu_share": round(server_cpu / wall, 3) if wall > 0 else None,
        "client_cpu_s": round(client_cpu, 3),
        "client_sys_share": round(client_sys / client_cpu, 3) if client_cpu > 0 else None,
        "client_cpu_share": round(client_share, 3),
        "client_cpu_per_op_us": round(client_cpu / count * 1e6, 2) if count else None,
        "server_cpu_per_op_us": round(server_cpu / count * 1e6, 2) if count else None,
        "client_core_busy": round(client_core, 3),
        "server_core_busy": round(server_core, 3),
        # The client itself near a full core: the figures measure the client, not the server.
        "client_bound": client_share >= CLIENT_BOUND,
        # Its core full though the client was not: other load on the machine starved it.
        "client_core_saturated": client_core >= CORE_SATURATED and client_share < CLIENT_BOUND,
    }


async def connect(url: str, factory: Any, auto_pong: bool = True) -> tuple[WSTransport, Any]:
    return await asyncio.wait_for(
        ws_connect(factory, url, max_frame_size=MAX_FRAME, enable_auto_pong=auto_pong),
        CONNECT_TIMEOUT,
    )


async def close_all(transports: list[WSTransport]) -> None:
    """Close handshake on every connection, bounded in time; then drop what is left."""
    for transport in transports:
        if not transport.is_disconnected:
            transport.send_close(WSCloseCode.OK)
    waits = [asyncio.ensure_future(t.wait_disconnected()) for t in transports]
    if waits:
        await asyncio.wait(waits, timeout=CLOSE_TIMEOUT + len(transports) / 2000)
    for transport, wait in zip(transports, waits, strict=True):
        if not wait.done():
            wait.cancel()
            transport.disconnect(graceful=False)
        elif not wait.cancelled():
            wait.exception()  # a dropped connection at close time is not a failure


async def run_stream(scenario: Scenario, request: dict[str, Any]) -> dict[str, Any]:
    window = Window()
    request["_window"] = window
    clients: list[StreamClient] = []
    transports: list[WSTransport] = []
    try:
        for index in range(scenario.connections):
            payloads = payloads_for(scenario, index)
            transport, client = await connect(
                request["url"],
                lambda p=payloads: StreamClient(window, p, scenario.text, scenario.in_flight),
            )
            if client is None:
                raise ConnectionError(f"upgrade to {request['url']} failed")
            transports.append(transport)
            clients.append(client)
        for client in clients:
            client.start()
        await asyncio.sleep(scenario.warmup)
        window.measuring = True
        start = Readings.take(request["server_pid"])
        await asyncio.sleep(scenario.duration)
        end = Readings.take(request["server_pid"])
        window.measuring = False
        window.sending = False
        count, latencies = window.count, window.latencies_ns
        for client in clients:
            if not client.expected and not client.drained.done():
                client.drained.set_result(None)
        _done, pending = await asyncio.wait([c.drained for c in clients], timeout=DRAIN_TIMEOUT)
        if pending:
            window.fail(f"{len(pending)} connections did not return their echoes in time")
    finally:
        await close_all(transports)
    result = window_result(start, end, count, request)
    result["latency_ms"] = percentiles_ms(latencies)
    return result


async def run_handshakes(scenario: Scenario, request: dict[str, Any]) -> dict[str, Any]:
    window = Window()
    request["_window"] = window
    latencies: list[int] = []

    loop = asyncio.get_running_loop()
    host, port = request["host"], request["port"]
    requests = handshake_requests(host, port)

    async def worker(number: int) -> None:
        index = number
        while window.sending:
            began = time.perf_counter_ns()
            upgrade, accept = requests[index % HANDSHAKE_KEYS]
            index += scenario.connections
            protocol = OneShotProtocol(upgrade, accept)

            def factory(p: OneShotProtocol = protocol) -> OneShotProtocol:
                return p

            try:
                transport, _ = await asyncio.wait_for(
                    loop.create_connection(factory, host, port), CONNECT_TIMEOUT
                )
            except Exception as exc:
                if window.sending:
                    window.fail(f"connect failed: {type(exc).__name__}: {exc}")
                return
            try:
                await asyncio.wait_for(asyncio.shield(protocol.done), CONNECT_TIMEOUT)
            except TimeoutError:
                transport.abort()
                if window.sending:
                    window.fail(
                        f"handshake not finished in {CONNECT_TIMEOUT} s at step {protocol.stage}"
                    )
                return
            if protocol.error is not None:
                window.fail(protocol.error, wrong_echo=protocol.wrong_echo)
                return
            if window.measuring:
                window.count += 1
                latencies.append(time.perf_counter_ns() - began)

    workers = [asyncio.ensure_future(worker(n)) for n in range(scenario.connections)]
    try:
        await asyncio.sleep(scenario.warmup)
        window.measuring = True
        start = Readings.take(request["server_pid"])
        await asyncio.sleep(scenario.duration)
        end = Readings.take(request["server_pid"])
        window.measuring = False
        count = window.count
        window.sending = False
        _, pending = await asyncio.wait(workers, timeout=CONNECT_TIMEOUT + CLOSE_TIMEOUT)
        if pending and window.error is None:
            window.fail(f"{len(pending)} handshake workers did not finish in time")
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    result = window_result(start, end, count, request)
    result["latency_ms"] = percentiles_ms(latencies)
    return result


async def open_idle(
    url: str, count: int, window: Window, held: HeldFactory | None = None
) -> tuple[list[WSTransport], list[StreamClient]]:
    """`count` connections, IDLE_OPEN_CONCURRENCY at a time, each with one echo returned.

    After the echo every app is back in receive(): from then on the connection is idle (it
    answers the server's pings, nothing else). With `held`, each connection's client is
    `held(window, payloads)` and picows leaves the pings to it to answer. A failed connect
    fails the window.
    """
    probe = Scenario("probe", "stream", connections=1, size=32, text=True)
    payload = payloads_for(probe, 0)[:1]
    transports: list[WSTransport] = []
    clients: list[StreamClient] = []
    gate = asyncio.Semaphore(IDLE_OPEN_CONCURRENCY)

    async def open_one() -> None:
        async with gate:
            if held is None:
                transport, client = await connect(
                    url, lambda: StreamClient(window, payload, True, 1)
                )
            else:
                transport, client = await connect(
                    url, lambda: held(window, payload), auto_pong=False
                )
            if client is None:
                raise ConnectionError(f"upgrade to {url} failed")
            transports.append(transport)
            clients.append(client)
            client.start()

    results = await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        window.fail(f"{len(failures)} of {count} connections failed: {failures[0]!r}")
    # Every connection sent one message; wait for each echo, so every app is in receive().
    _done, _pending = await asyncio.wait([c.drained for c in clients], timeout=DRAIN_TIMEOUT)
    for client in clients:
        if not client.expected and not client.drained.done():
            client.drained.set_result(None)
    return transports, clients


async def rss_baseline(url: str, pid: int, window: Window) -> int:
    """The server's RSS after 20 warm-up connections were opened and closed.

    The warm-up pays for imports, caches and first-connection allocations, so they are not
    charged to each held connection.
    """
    transports, _ = await open_idle(url, 20, window)
    await asyncio.sleep(0.2)
    await close_all(transports)
    await asyncio.sleep(0.5)
    return procstat.tree_rss_bytes(pid)


async def run_idle(scenario: Scenario, request: dict[str, Any]) -> dict[str, Any]:
    window = Window(sending=False)  # one echo per connection, no more
    request["_window"] = window
    url, pid = request["url"], request["server_pid"]
    rss_before = await rss_baseline(url, pid, window)
    began = time.perf_counter()
    transports, _clients = await open_idle(url, scenario.connections, window)
    opened_s = time.perf_counter() - began
    await asyncio.sleep(IDLE_SETTLE)
    cpu_before = procstat.tree_cpu_seconds(pid)
    await asyncio.sleep(scenario.duration)
    cpu_held = procstat.tree_cpu_seconds(pid) - cpu_before
    rss_held = procstat.tree_rss_bytes(pid)
    held = sum(1 for t in transports if not t.is_disconnected)
    if held < scenario.connections and window.error is None:
        window.fail(f"only {held} of {scenario.connections} connections are still open")
    await close_all(transports)
    per_conn = (rss_held - rss_before) / held if held else None
    return {
        "ops": held,
        "rss_before_bytes": rss_before,
        "rss_held_bytes": rss_held,
        "bytes_per_conn": round(per_conn, 1) if per_conn is not None else None,
        "open_s": round(opened_s, 3),
        "held_cpu_s": round(cpu_held, 3),
        "client_bound": False,
        "client_core_saturated": False,
    }


class Subscriber(WSListener):
    """One fanout subscriber: waits for SUBSCRIBED, then checks each message's sequence."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.ready = asyncio.get_running_loop().create_future()
        self.next_seq = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.PING, WSMsgType.PONG):
            return
        if frame.msg_type == WSMsgType.CLOSE:
            if self.fanout.window.sending:
                self.fanout.window.fail(f"server closed a subscriber: {frame.get_close_code()}")
            return
        if frame.msg_type != WSMsgType.TEXT or not frame.fin:
            self.fanout.window.fail(f"fanout: got {frame.msg_type!r}", wrong_echo=True)
            return
        payload = frame.get_payload_as_bytes()
        if not self.ready.done():
            if payload != SUBSCRIBED:
                self.fanout.window.fail(f"fanout: expected {SUBSCRIBED!r}, got {payload[:40]!r}")
            self.ready.set_result(None)
            return
        expected = self.fanout.payload(self.next_seq)
        if payload != expected:
            self.fanout.window.fail(
                f"fanout: subscriber got {payload[:40]!r}, expected {expected[:40]!r}",
                wrong_echo=True,
            )
            return
        self.next_seq += 1
        self.fanout.delivered(self.next_seq - 1)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.fanout.window.sending:
            self.fanout.window.fail("server dropped a subscriber")
        if not self.ready.done():
            self.ready.set_result(None)


class Fanout:
    """Publishes while fewer than `in_flight` messages are still short of a subscriber."""

    def __init__(self, window: Window, subscribers: int, size: int, in_flight: int) -> None:
        self.window = window
        self.subscribers = subscribers
        self.size = size
        self.in_flight = in_flight
        self.sent_ns: dict[int, int] = {}
        self.missing: dict[int, int] = {}  # seq -> subscribers that have not got it yet
        self.next_seq = 0
        self.publisher: WSTransport | None = None
        self.idle = asyncio.get_running_loop().create_future()  # nothing left in flight

    def payload(self, seq: int) -> bytes:
        head = f"{seq:010d}:".encode()
        return (head + b"x" * self.size)[: max(self.size, len(head))]

    def publish(self) -> None:
        while self.window.sending and len(self.missing) < self.in_flight:
            seq = self.next_seq
            self.next_seq += 1
            self.missing[seq] = self.subscribers
            self.sent_ns[seq] = time.perf_counter_ns()
            self.publisher.send(WSMsgType.TEXT, self.payload(seq))  # type: ignore[union-attr]

    def delivered(self, seq: int) -> None:
        window = self.window
        left = self.missing.get(seq)
        if left is None:
            window.fail(f"fanout: message {seq} delivered more often than published")
            return
        if window.measuring:
            window.count += 1
        if left > 1:
            self.missing[seq] = left - 1
            return
        del self.missing[seq]
        sent = self.sent_ns.pop(seq)
        if window.measuring:
            window.latencies_ns.append(time.perf_counter_ns() - sent)
        self.publish()
        if not self.missing and not window.sending and not self.idle.done():
            self.idle.set_result(None)


class Publisher(WSListener):
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE and not self.fanout.window.sending:
            return
        if frame.msg_type not in (WSMsgType.PING, WSMsgType.PONG):
            self.fanout.window.fail(f"fanout: the publisher got {frame.msg_type!r}")


async def run_fanout(scenario: Scenario, request: dict[str, Any]) -> dict[str, Any]:
    """1 publisher, N subscribers; ops are deliveries, latency is publish -> last subscriber."""
    window = Window()
    request["_window"] = window
    fanout = Fanout(window, scenario.connections, scenario.size, scenario.in_flight)
    base = request["url"].rstrip("/")
    transports: list[WSTransport] = []
    subscribers: list[Subscriber] = []
    gate = asyncio.Semaphore(IDLE_OPEN_CONCURRENCY)

    async def subscribe() -> None:
        async with gate:
            transport, listener = await connect(f"{base}/fanout/sub", lambda: Subscriber(fanout))
            transports.append(transport)
            subscribers.append(listener)
            await asyncio.wait_for(listener.ready, CONNECT_TIMEOUT)

    try:
        await asyncio.gather(*(subscribe() for _ in range(scenario.connections)))
        if window.error is not None:
            raise ConnectionError(window.error)
        publisher, _ = await connect(f"{base}/fanout/pub", lambda: Publisher(fanout))
        transports.append(publisher)
        fanout.publisher = publisher
        fanout.publish()
        await asyncio.sleep(scenario.warmup)
        window.measuring = True
        start = Readings.take(request["server_pid"])
        await asyncio.sleep(scenario.duration)
        end = Readings.take(request["server_pid"])
        window.measuring = False
        count, latencies = window.count, window.latencies_ns
        window.sending = False
        if not fanout.missing and not fanout.idle.done():
            fanout.idle.set_result(None)
        try:
            await asyncio.wait_for(fanout.idle, DRAIN_TIMEOUT)
        except TimeoutError:
            window.fail(f"{len(fanout.missing)} published messages not delivered in time")
    finally:
        window.sending = False
        await close_all(transports)
    result = window_result(start, end, count, request)
    result["latency_ms"] = percentiles_ms(latencies)
    result["subscribers"] = scenario.connections
    return result


def run_wsload(binary: Path, scenario: Scenario, request: dict[str, Any]) -> dict[str, Any]:
    """One stream or handshakes scenario on the C client; the same result dict as run()."""
    pid = request["server_pid"]
    edges: dict[str, Readings] = {}
    outcome = wsload.run(
        wsload.command(binary, scenario, request["port"]),
        timeout=wsload.time_bound(scenario),
        on_start=lambda marker: edges.__setitem__("start", Readings.take(pid, marker)),
        on_end=lambda marker: edges.__setitem__("end", Readings.take(pid, marker)),
    )
    result: dict[str, Any] = {"ok": bool(outcome.get("ok")), "client": wsload.NAME,
                              "client_build": binary.name}  # fmt: skip
    if "start" in edges and "end" in edges:
        result.update(window_result(edges["start"], edges["end"], outcome.get("ops", 0), request))
        result["latency_ms"] = outcome.get("latency_ms") or percentiles_ms([])
    for key in ("payload", "deflate"):  # compressed-*: what the server's 101 agreed
        if key in outcome:
            result[key] = outcome[key]
    if not result["ok"]:
        result["error"] = outcome.get("error") or "wsload failed"
        result["wrong_echo"] = bool(outcome.get("wrong_echo"))
    return result


def _child_readings(server_pid: int) -> Readings:
    """Now; the client is what this process's reaped children (wrk) used."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Readings(
        wall=time.perf_counter(),
        server_cpu=procstat.tree_cpu_seconds(server_pid),
        client_cpu=usage.ru_utime + usage.ru_stime,
        client_sys=usage.ru_stime,
        cores=procstat.core_times(),
    )


def _wrk(argv: list[str], seconds: float) -> httpload.WrkResult:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + httpload.WRK_TIMEOUT + 30
    )
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise httpload.WrkOutputError(f"wrk exited with status {done.returncode}: {tail}")
    return httpload.parse(done.stdout)


def run_http(scenario: Scenario, request: dict[str, Any]) -> dict[str, Any]:
    """An http scenario on wrk: a checked first request, warm-up, then the measured run.

    The window is the measured wrk process's lifetime: the server's CPU is read before it
    starts and after it exits, the client's from this process's reaped-children usage.
    """
    result: dict[str, Any] = {"ok": False, "client": httpload.NAME}
    wrk = httpload.available()
    if wrk is None:
        result["error"] = "wrk is not on PATH (the http scenarios need it: Debian package wrk)"
        return result
    host, port, pid = request["host"], request["port"], request["server_pid"]
    expected = httpload.expected_body(scenario.app or "raw")
    problem = httpload.probe(host, port, scenario.method, scenario.size, expected)
    if problem is not None:
        result.update(error=problem, wrong_echo=True)
        return result
    url = f"http://{host}:{port}/"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
            script = Path(tmp) / "request.lua"
            script.write_text(httpload.lua_script(scenario.method, scenario.size))
            if scenario.warmup > 0:
                warm = _wrk(
                    httpload.command(wrk, url, scenario.connections, scenario.warmup, script),
                    scenario.warmup,
                )
                if warm.errors:
                    result["error"] = "during warm-up: " + "; ".join(warm.errors)
                    return result
            argv = httpload.command(wrk, url, scenario.connections, scenario.duration, script)
            start = _child_readings(pid)
            measured = _wrk(argv, scenario.duration)
            end = _child_readings(pid)
    except (httpload.WrkOutputError, subprocess.TimeoutExpired, OSError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    result.update(window_result(start, end, measured.requests, request))
    result.update(httpload.result_fields(measured))
    result["ops_per_s"] = measured.requests_per_s  # wrk's own rate, over its own window
    if measured.errors:
        result["error"] = "; ".join(measured.errors)
        result["wrong_echo"] = measured.non_2xx > 0
    elif measured.requests == 0:
        result["error"] = "wrk completed no request"
    else:
        result["ok"] = True
    return result


def choose_client(scenario: Scenario, request: dict[str, Any]) -> Path | None:
    """The wsload program for this run, or None for the Python clients.

    request["client"]: "auto" (default: wsload when gcc can build it), "wsload" (required:
    an error without gcc), or "python". The idle scenario always runs in Python; the
    compressed ones only on wsload.
    """
    wanted = request.get("client", "auto")
    if scenario.deflate and wanted == "python":  # picows's client has no permessage-deflate
        raise wsload.BuildFailed(f"{scenario.name} runs on wsload only, not --client python")
    if wanted == "python" or scenario.kind in ("idle", "fanout"):
        return None
    binary = wsload.build()
    if binary is None and (wanted == "wsload" or scenario.deflate):
        raise wsload.BuildFailed(f"{scenario.name} needs the wsload client, but there is no gcc")
    return binary


async def run(request: dict[str, Any]) -> dict[str, Any]:
    scenario = Scenario.from_json(request["scenario"])
    runners = {"stream": run_stream, "handshakes": run_handshakes, "idle": run_idle,
               "fanout": run_fanout}  # fmt: skip
    runner = runners[scenario.kind]
    request["_window"] = None
    client = PYTHON_RAW if scenario.kind == "handshakes" else PICOWS
    result: dict[str, Any] = {"ok": False, "client": client}
    try:
        result.update(await runner(scenario, request))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    window: Window | None = request["_window"]
    if window is not None and window.error is not None:
        result["error"] = window.error
        result["wrong_echo"] = window.wrong_echo
    else:
        result["ok"] = True
    return result


def raise_open_file_limit() -> None:
    """The soft limit on open files up to the hard one: one descriptor per connection."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    request = json.loads(sys.argv[1])
    raise_open_file_limit()
    scenario = Scenario.from_json(request["scenario"])
    if scenario.kind == "http":
        sys.stdout.write(json.dumps(run_http(scenario, request)) + "\n")
        return
    try:
        binary = choose_client(scenario, request)
    except wsload.BuildFailed as exc:
        result: dict[str, Any] = {"ok": False, "client": wsload.NAME, "error": str(exc)}
    else:
        if binary is not None:
            result = run_wsload(binary, scenario, request)
        else:
            import uvloop

            result = uvloop.run(run(request))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
