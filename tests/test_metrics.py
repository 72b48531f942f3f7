"""--metrics-port: a real server on 127.0.0.1 gets known traffic (HTTP requests, WebSocket
sessions ended with known close codes, refused handshakes of each status, a decompression bomb),
then a real HTTP client scrapes /metrics and prometheus_client's own parser reads it: every
counter is checked exactly, bytes on the wire included (counted by the client's side)."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import socket
import struct
import zlib

import pytest
from apps import TIMEOUT, parse_response, read_head
from conftest import Running, StartServer
from metrics_app import FLOOD_SIZE, app
from prometheus_client.parser import text_string_to_metric_families
from test_deflate import zip_bomb
from wire import OP_BINARY, OP_CLOSE, OP_TEXT, client_frame, close_frame, http_request, ws_request
from ws_helpers import wait_until

from asgiws.asyncio import metered as metered_module
from asgiws.asyncio.connection import ConnectionProtocol
from asgiws.asyncio.server import Server as CoreServer
from asgiws.config import Config
from asgiws.deflate import negotiate
from asgiws.frames import FrameCodec
from asgiws.metrics import DURATION_BUCKETS, Metrics, missing_extra
from asgiws.supervisor_probes import SupervisorProbes
from asgiws.types import Receive, Scope, Send

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

DEFLATE = [("Sec-WebSocket-Extensions", "permessage-deflate")]


async def get(port: int, path: str) -> tuple[int, bytes]:
    """One GET on a fresh connection to the probe port: status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(http_request("GET", path))
        response = await parse_response(await asyncio.wait_for(reader.read(), TIMEOUT))
    finally:
        writer.close()
    return response.status, response.body


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels; the text must parse."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def scrape(port: int) -> Samples:
    status, body = await get(port, "/metrics")
    assert status == 200
    return parse(body.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def frame_spans(data: bytes | bytearray) -> list[tuple[int, int, int]]:
    """(opcode, payload start, payload end) of each whole server frame in ``data`` (servers
    never mask), found by their headers alone: no payload is copied."""
    spans = []
    pos = 0
    while len(data) - pos >= 2:
        length, start = data[pos + 1] & 0x7F, pos + 2
        if length == 126:
            ((length,), start) = struct.unpack_from("!H", data, pos + 2), pos + 4
        elif length == 127:
            ((length,), start) = struct.unpack_from("!Q", data, pos + 2), pos + 10
        if len(data) < start + length:
            break
        spans.append((data[pos] & 0x0F, start, start + length))
        pos = start + length
    return spans


def frames_in(data: bytes | bytearray) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each whole server frame in ``data``."""
    return [(opcode, bytes(data[start:end])) for opcode, start, end in frame_spans(data)]


class Session:
    """A raw WebSocket client session whose bytes after the 101 are counted both ways."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.sent = 0
        self.received = bytearray()
        self.closing = False  # our Close is sent

    async def open(
        self,
        path: str = "/ws",
        extra: list[tuple[str, str]] | None = None,
        receive_buffer: int | None = None,
    ) -> None:
        """``receive_buffer``: the client socket's SO_RCVBUF, set before it connects (which
        also stops the kernel from growing it), for a client that must fill up quickly."""
        sock = None
        if receive_buffer is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(
                sock, (self.running.host, self.running.port)
            )
            self.reader, self.writer = await asyncio.open_connection(sock=sock)
        else:
            self.reader, self.writer = await asyncio.open_connection(
                self.running.host, self.running.port
            )
        self.writer.write(ws_request(path, extra=extra))
        head = await read_head(self.reader)
        assert head.status == 101, head

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        self.sent += len(frame)

    async def read_frames(self, count: int) -> None:
        """Read until ``count`` whole frames have come in all."""
        while len(frame_spans(self.received)) < count:
            chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            assert chunk, "the server closed early"
            self.received += chunk

    async def finish(self, *, answer: bool = True) -> list[tuple[int, bytes]]:
        """Read to the end, answering the server's Close if it comes first (``answer``: after a
        protocol failure the server closes TCP at once, and would not read it); the frames."""
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not chunk:
                break
            self.received += chunk
            closed = any(op == OP_CLOSE for op, _, _ in frame_spans(self.received))
            if answer and closed and not self.closing:
                self.close(1000)
        self.writer.close()
        return frames_in(self.received)

    def close(self, code: int) -> None:
        self.send(close_frame(code))
        self.closing = True

    def abort(self) -> None:
        self.writer.transport.abort()


async def metered(serve: StartServer, **options: object) -> tuple[Running, int]:
    """A server with --metrics-port 0, and the port its probes listen on."""
    running = await serve(app, metrics_port=0, ws_ping_interval=0, **options)
    probes = running.core.probes
    assert probes is not None
    return running, probes.port


async def refused(running: Running, request: bytes) -> int:
    response = await parse_response(await running.raw(request))
    return response.status


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing_extra() is None
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert missing_extra() == (
        "--metrics-port needs prometheus_client: pip install 'asgiws[metrics]'"
    )


async def test_every_counter_after_known_traffic(serve: StartServer) -> None:
    running, port = await metered(serve, ws_max_size=64 * 1024)

    before = await scrape(port)
    assert value(before, "asgiws_connections_open", type="http", worker="1") == 0
    for status in (400, 403, 405, 426, 431, 503):
        assert value(before, "asgiws_handshake_rejections_total", status=str(status)) == 0

    # -- HTTP: 5 x 200, 1 x 404, 1 x 500 (the app raised) -------------------------------------
    close = [("Host", "test"), ("Connection", "close")]
    for path, status in [("/", 200)] * 5 + [("/missing", 404), ("/boom", 500)]:
        assert await refused(running, http_request("GET", path, close)) == status

    # -- refused handshakes, one of each status the core or the app gives ---------------------
    assert await refused(running, ws_request(key=b"not-base64")) == 400
    assert await refused(running, ws_request("/deny")) == 403
    assert await refused(running, ws_request(method="POST")) == 405
    assert await refused(running, ws_request(ws_version="8")) == 426
    many = [(f"X-{i}", "1") for i in range(120)]  # --max-header-count is 100
    assert await refused(running, ws_request(extra=many)) == 431

    # -- WebSocket sessions ---------------------------------------------------------------------
    sessions = []
    payload_in = payload_out = 0
    for _ in range(2):  # the client closes with 1000 after three echoes
        session = Session(running)
        await session.open()
        for text in ("hello", "wörld", "!"):
            session.send(client_frame(OP_TEXT, text))
            payload_in += len(text.encode())
        session.send(client_frame(OP_BINARY, b"\x00\x01"))
        payload_in += 2
        session.close(1000)
        frames = await session.finish()
        assert [op for op, _ in frames] == [OP_TEXT] * 3 + [OP_BINARY, OP_CLOSE]
        payload_out += sum(len(p) for op, p in frames if op != OP_CLOSE)
        sessions.append(session)

    session = Session(running)  # the app closes with 4000
    await session.open()
    session.send(client_frame(OP_TEXT, "close4000"))
    payload_in += 9
    frames = await session.finish()
    assert frames[-1][0] == OP_CLOSE and frames[-1][1][:2] == struct.pack("!H", 4000)
    sessions.append(session)

    session = Session(running)  # the app raises: 1011
    await session.open()
    session.send(client_frame(OP_TEXT, "boom"))
    payload_in += 4
    frames = await session.finish()
    assert frames[-1][1][:2] == struct.pack("!H", 1011)
    sessions.append(session)

    session = Session(running)  # a decompression bomb: 1009
    await session.open(extra=DEFLATE)
    session.send(client_frame(OP_BINARY, zip_bomb(1 << 20), rsv=0x40))
    frames = await session.finish(answer=False)
    assert frames[-1][1][:2] == struct.pack("!H", 1009)
    sessions.append(session)

    session = Session(running)  # the TCP connection is lost after one echo: 1006
    await session.open()
    session.send(client_frame(OP_TEXT, "last"))
    payload_in += 4
    await session.read_frames(1)
    payload_out += 4
    session.abort()
    sessions.append(session)

    core = running.core
    await wait_until(lambda: not core.connections and not core.tasks)
    samples = await scrape(port)

    assert value(samples, "asgiws_http_requests_total", status_class="2xx") == 5
    assert value(samples, "asgiws_http_requests_total", status_class="4xx") == 1
    assert value(samples, "asgiws_http_requests_total", status_class="5xx") == 1
    assert value(samples, "asgiws_http_request_duration_seconds_count") == 7
    assert value(samples, "asgiws_http_request_duration_seconds_bucket", le="+Inf") == 7
    assert len([k for k in samples if k[0].endswith("_bucket")]) == len(DURATION_BUCKETS) + 1
    for status in (400, 403, 405, 426, 431):
        assert value(samples, "asgiws_handshake_rejections_total", status=str(status)) == 1
    assert value(samples, "asgiws_handshake_rejections_total", status="503") == 0
    expected_sessions = {"1000": 2, "4000": 1, "1011": 1, "1009": 1, "1006": 1}
    found_sessions = {
        dict(labels)["close_code"]: v
        for (name, labels), v in samples.items()
        if name == "asgiws_websocket_sessions_total"
    }
    assert found_sessions == expected_sessions
    assert value(samples, "asgiws_app_exceptions_total", type="http") == 1
    assert value(samples, "asgiws_app_exceptions_total", type="websocket") == 1
    assert value(samples, "asgiws_app_exceptions_total", type="lifespan") == 0
    assert value(samples, "asgiws_websocket_messages_total", direction="in") == 2 * 4 + 3
    assert value(samples, "asgiws_websocket_messages_total", direction="out") == 2 * 4 + 1
    assert value(samples, "asgiws_websocket_bytes_total", direction="in", compressed="no") == (
        payload_in
    )
    assert value(samples, "asgiws_websocket_bytes_total", direction="out", compressed="no") == (
        payload_out
    )
    wire_in = value(samples, "asgiws_websocket_bytes_total", direction="in", compressed="yes")
    wire_out = value(samples, "asgiws_websocket_bytes_total", direction="out", compressed="yes")
    assert wire_in == sum(s.sent for s in sessions)
    assert wire_out == sum(len(s.received) for s in sessions)
    for kind in ("http", "websocket"):
        assert value(samples, "asgiws_connections_open", type=kind, worker="1") == 0
    assert value(samples, "asgiws_reading_paused_total") == 0
    assert value(samples, "asgiws_send_blocked_seconds_total") == 0
    assert value(samples, "asgiws_worker_restarts_total") == 0
    assert value(samples, "asgiws_event_loop_lag_seconds", worker="1") >= 0


async def test_open_connections_and_reading_paused(serve: StartServer) -> None:
    running, port = await metered(serve, max_queue=2)
    session = Session(running)
    await session.open()
    _, idle_writer = await asyncio.open_connection(running.host, running.port)
    try:
        await wait_until(lambda: len(running.core.connections) == 2)
        samples = await scrape(port)
        assert value(samples, "asgiws_connections_open", type="websocket", worker="1") == 1
        # The idle HTTP connection, and the scrape's own connection is not on this port.
        assert value(samples, "asgiws_connections_open", type="http", worker="1") == 1
        # Many messages in one write: the inbox (--max-queue 2) fills and reading pauses.
        session.send(b"".join(client_frame(OP_TEXT, str(i)) for i in range(50)))
        await session.read_frames(50)
        samples = await scrape(port)
        assert value(samples, "asgiws_reading_paused_total") >= 1
        assert value(samples, "asgiws_websocket_messages_total", direction="in") == 50
    finally:
        idle_writer.close()
        session.close(1000)
        await session.finish()


async def test_limit_refusal_counts_503(serve: StartServer) -> None:
    running, port = await metered(serve, limit_concurrency=1)
    session = Session(running)
    await session.open()
    assert await refused(running, ws_request()) == 503
    session.close(1000)
    await session.finish()
    samples = await scrape(port)
    assert value(samples, "asgiws_handshake_rejections_total", status="503") == 1
    assert value(samples, "asgiws_websocket_sessions_total", close_code="1000") == 1


async def test_probe_paths(serve: StartServer) -> None:
    running, port = await metered(serve)
    assert await get(port, "/live") == (200, b"live\n")
    assert await get(port, "/ready") == (200, b"ready\n")
    status, body = await get(port, "/nothing")
    assert status == 404 and b"/metrics" in body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(http_request("POST", "/metrics"))
    response = await parse_response(await asyncio.wait_for(reader.read(), TIMEOUT))
    writer.close()
    assert response.status == 405
    # The application's port serves the app, never the metrics.
    close = [("Host", "test"), ("Connection", "close")]
    assert await refused(running, http_request("GET", "/metrics", close)) == 404


async def test_send_blocked_by_a_client_that_does_not_read(serve: StartServer) -> None:
    running, port = await metered(serve)
    session = Session(running)
    # 16 MiB to a client that reads nothing into a 64 KiB receive buffer: more than the kernel
    # holds on the server's side too (its send buffer grows to tcp_wmem's largest, 4 MiB by
    # default), so send() must wait for room whatever the machine's settings.
    await session.open(receive_buffer=64 * 1024)
    session.send(client_frame(OP_TEXT, "flood 256"))
    core = running.core
    await wait_until(lambda: any(c._drain is not None for c in core.connections))
    await session.read_frames(256)
    samples = await scrape(port)
    assert value(samples, "asgiws_send_blocked_seconds_total") > 0
    assert value(samples, "asgiws_websocket_messages_total", direction="out") == 256
    assert value(samples, "asgiws_websocket_bytes_total", direction="out", compressed="no") == (
        256 * FLOOD_SIZE
    )
    session.close(1000)
    await session.finish()


async def test_lifespan_exceptions_are_counted() -> None:
    async def failing_shutdown(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("shutdown fails, as asked")

    config = Config(port=0, metrics_port=0, lifespan="on", access_log=False)
    core = CoreServer(failing_shutdown, config)
    running = asyncio.ensure_future(core.run(signals=False))
    await asyncio.wait_for(core.started.wait(), TIMEOUT)
    assert core.metrics_snapshot()["app_exceptions"]["lifespan"] == 0
    core.stop()
    assert await asyncio.wait_for(running, TIMEOUT) == 1  # the lifespan shutdown failed
    assert core.metrics_snapshot()["app_exceptions"]["lifespan"] == 1


async def test_the_supervisor_adds_up_its_workers(serve: StartServer) -> None:
    running, port = await metered(serve)
    close = [("Host", "test"), ("Connection", "close")]
    for _ in range(3):
        assert await refused(running, http_request("GET", "/", close)) == 200
    with socket.socket() as unused:  # a worker that answers nothing: left out of the scrape
        unused.bind(("127.0.0.1", 0))
        gone = unused.getsockname()[1]
    # Two "workers" that are the same server: every count doubles.
    probes = SupervisorProbes(
        "127.0.0.1",
        0,
        workers=lambda: [("1", port), ("2", port), ("3", gone)],
        ready=lambda: True,
        restarts=lambda: 2,
    )
    await probes.start()
    try:
        samples = await scrape(probes.server.port)
        assert await get(probes.server.port, "/ready") == (200, b"ready\n")
    finally:
        probes.close()
    assert value(samples, "asgiws_http_requests_total", status_class="2xx") == 6
    assert value(samples, "asgiws_http_request_duration_seconds_count") == 6
    assert value(samples, "asgiws_worker_restarts_total") == 2
    workers = {dict(labels)["worker"] for name, labels in samples if name.endswith("lag_seconds")}
    assert workers == {"1", "2"}


async def test_large_frames_read_in_place_are_counted(serve: StartServer) -> None:
    running, port = await metered(serve)
    session = Session(running)
    await session.open()
    payloads = [bytes([i]) * (1 << 20) for i in range(3)]  # read in place (LargeFrameReader)
    for payload in payloads:
        session.send(client_frame(OP_BINARY, payload))
    await session.read_frames(3)
    session.close(1000)
    frames = await session.finish()
    assert [p for _, p in frames[:3]] == payloads
    await wait_until(lambda: not running.core.connections)
    samples = await scrape(port)
    assert value(samples, "asgiws_websocket_bytes_total", direction="in", compressed="yes") == (
        session.sent
    )
    assert value(samples, "asgiws_websocket_bytes_total", direction="in", compressed="no") == (
        3 << 20
    )
    assert value(samples, "asgiws_websocket_bytes_total", direction="out", compressed="yes") == (
        len(session.received)
    )


async def test_without_the_extra_the_server_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    core = CoreServer(app, Config(port=0, metrics_port=0, lifespan="off", access_log=False))
    assert await asyncio.wait_for(core.run(signals=False), TIMEOUT) == 1
    assert core.startup_error == (
        "--metrics-port needs prometheus_client: pip install 'asgiws[metrics]'"
    )


def test_the_copied_methods_are_the_plain_ones() -> None:
    """asgiws.asyncio.metered counts inside copies of a few plain methods (its docstring says
    why): when one of the plain ones changes, its copy there must follow, then COPIED."""
    owners = {"ConnectionProtocol": ConnectionProtocol, "FrameCodec": FrameCodec}
    for name, digest in metered_module.COPIED.items():
        owner, method = name.split(".")
        source = inspect.getsource(getattr(owners[owner], method))
        found = hashlib.sha256(source.encode()).hexdigest()[:16]
        assert found == digest, f"{name} changed: update its copy in asgiws/asyncio/metered.py"


def test_whole_compressed_messages_taken_by_receive_one_are_counted() -> None:
    """A compressed message in one frame in one read is inflated by receive_one (the metered
    copy counts it there: the app's payload, the frame's wire bytes); one that fails there is
    counted by receive_declined, which reports it."""
    metrics = Metrics()
    negotiated = negotiate(["permessage-deflate"], window_bits=12, mem_level=5)
    assert negotiated is not None
    codec = FrameCodec(deflate=negotiated[1])
    codec.__class__ = metered_module.codec_class(metrics)
    client = zlib.compressobj(wbits=-15)
    frames = []
    for text in ("héllo", "x" * 5000):
        body = client.compress(text.encode()) + client.flush(zlib.Z_SYNC_FLUSH)
        frames.append(client_frame(OP_TEXT, body[:-4], rsv=0x40))
    assert codec.receive_one(frames[0]) == "héllo"
    assert codec.receive_one(frames[1]) == "x" * 5000
    assert (metrics.messages_in, metrics.payload_in) == (2, 6 + 5000)
    assert metrics.wire_in == len(frames[0]) + len(frames[1])
    corrupt = client_frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=0x40)
    assert codec.receive_one(corrupt) is None
    (failure,) = codec.receive_declined(corrupt)
    assert getattr(failure, "code", None) == 1007
    assert (metrics.messages_in, metrics.payload_in) == (2, 5006)
    assert metrics.wire_in == len(frames[0]) + len(frames[1]) + len(corrupt)


def test_small_messages_are_folded_in_at_each_lag_sample_and_snapshot() -> None:
    metrics = Metrics()
    metrics.small_in += [5, 0, 125]
    metrics.small_out.append(7)
    metrics.loop_lag = 0.5  # the probe listener's timer: the small messages are folded in
    assert (metrics.small_in, metrics.small_out, metrics.loop_lag) == ([], [], 0.5)
    assert (metrics.messages_in, metrics.payload_in, metrics.wire_in) == (3, 130, 130 + 18)
    assert (metrics.messages_out, metrics.payload_out, metrics.wire_out) == (1, 7, 9)
    metrics.small_in.append(1)
    snapshot = metrics.snapshot()  # folds too
    assert snapshot["messages"] == {"in": 4, "out": 1}
    assert snapshot["bytes"] == {"in": {"yes": 155, "no": 131}, "out": {"yes": 9, "no": 7}}


@pytest.mark.parametrize("min_size", [0, 1024])
async def test_a_scrape_while_sessions_are_open_is_exact(serve: StartServer, min_size: int) -> None:
    """Messages of every size and way in and out (small frames, the parsing loop, a large
    frame read in place, compressed answers: all of them, or those from --ws-deflate-min-size
    on), counted exactly at a scrape while the sessions are still open, and again once they
    are closed."""
    running, port = await metered(serve, ws_deflate_min_size=min_size)
    plain, compressed = Session(running), Session(running)
    await plain.open()
    await compressed.open(extra=DEFLATE)
    texts = ["a", "é" * 60, "x" * 125, "y" * 126, "z" * 70_000]
    payloads = [b"", b"\x00" * 125, b"\x01" * 65_536, bytes(range(256)) * 4096]
    payload = 0
    for session in (plain, compressed):
        for i, text in enumerate(texts):  # one at a time: a small one is one frame per read
            session.send(client_frame(OP_TEXT, text))
            await session.read_frames(i + 1)
        session.send(client_frame(OP_TEXT, "one") + client_frame(OP_TEXT, "two"))  # one read
        for data in payloads:
            session.send(client_frame(OP_BINARY, data))
        await session.read_frames(len(texts) + 2 + len(payloads))
        payload += sum(len(t.encode()) for t in texts) + 6 + sum(map(len, payloads))
    # The compressed session's answers from min_size on are compressed: the app's payload,
    # other wire bytes.
    sizes = [len(t.encode()) for t in texts] + [3, 3] + list(map(len, payloads))
    answers = frames_in(compressed.received)
    assert len(answers) == len(sizes)
    inflater = zlib.decompressobj(-15)  # one stream: the server keeps its window (RFC 7692)
    for (op, data), size in zip(answers, sizes, strict=True):
        assert op in (OP_TEXT, OP_BINARY)
        if size >= min_size:
            data = inflater.decompress(data + b"\x00\x00\xff\xff")
        assert len(data) == size
    assert sum(sizes) == payload // 2

    def figures(samples: Samples) -> dict[str, float]:
        name = "asgiws_websocket_bytes_total"
        return {
            "in": value(samples, "asgiws_websocket_messages_total", direction="in"),
            "out": value(samples, "asgiws_websocket_messages_total", direction="out"),
            "payload in": value(samples, name, direction="in", compressed="no"),
            "payload out": value(samples, name, direction="out", compressed="no"),
            "wire in": value(samples, name, direction="in", compressed="yes"),
            "wire out": value(samples, name, direction="out", compressed="yes"),
        }

    messages = 2 * (len(texts) + 2 + len(payloads))
    expected = {
        "in": messages, "out": messages, "payload in": payload, "payload out": payload,
        "wire in": plain.sent + compressed.sent,
        "wire out": len(plain.received) + len(compressed.received),
    }  # fmt: skip
    assert figures(await scrape(port)) == expected
    for session in (plain, compressed):
        session.close(1000)
        await session.finish()
    await wait_until(lambda: not running.core.connections)
    closed = {
        **expected,
        "wire in": plain.sent + compressed.sent,  # the Closes
        "wire out": len(plain.received) + len(compressed.received),
    }
    assert figures(await scrape(port)) == closed
