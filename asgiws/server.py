"""The asyncio half of asgiws: sockets, tasks, timers, signals.

Everything a connection decides is decided by :class:`asgiws.protocol.Connection`; this module
moves bytes between it and the transport, runs the app as one task per request cycle (the
connection's only task), arms the timer the connection asks for, and applies back-pressure both
ways: reading pauses while the app has ``max_queue`` unread messages, and ``send()`` waits while
the transport's write buffer is above its high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import email.utils
import ipaddress
import logging
import os
import platform
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from . import __version__, logs
from .config import Config
from .http import HTTPConnection
from .lifespan import Lifespan, LifespanError
from .protocol import InPlaceReads, SansIOConnection, ServerHeaders
from .states import (
    CLOSED_STATES,
    OPEN,
    TIMER_CLOSE,
    TIMER_HEAD,
    TIMER_KEEP_ALIVE,
    TIMER_NONE,
    TIMER_PING,
    TIMER_PONG,
    ClientDisconnected,
    Timer,
)
from .timers import TimerWheel
from .types import ASGIApp

logger = logging.getLogger("asgiws.error")

# Answers to queued messages are written together, up to this many frames per write.
WRITE_BATCH = 64
# The read buffer of connections with a LargeFrameReader (one per server): as large as the
# smallest frame read in place (frames.DIRECT_MIN), so that a smaller frame comes in one read and
# a larger one has at most this much copied before the rest is read in place.
READ_BUFFER = 64 * 1024
# A buffer this large is written on its own rather than copied into a joined one.
LARGE_WRITE = 64 * 1024


class TLSConfigError(Exception):
    """The certificate or key of --ssl-certfile / --ssl-keyfile could not be loaded."""


class Listener:
    """What every connection accepted on one listening socket shares."""

    __slots__ = ("scheme", "server_address", "unix")

    def __init__(self, sock: socket.socket, tls: bool, uds: str | None) -> None:
        self.unix = sock.family == socket.AF_UNIX
        self.scheme = "https" if tls else "http"
        # The scope's "server": the same for every connection of a Unix socket or of a socket
        # bound to one address; None where each connection must ask (0.0.0.0, ::).
        self.server_address: Any
        if self.unix:
            name = sock.getsockname()
            self.server_address = [str(name or uds or ""), None]
        else:
            host, port = sock.getsockname()[:2]
            unspecified = ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
            self.server_address = None if unspecified else (str(host), int(port))


class LargeFrameReader(asyncio.BufferedProtocol):
    """A connection's protocol from its first large binary frame on: the transport reads into
    the frame's payload buffer (Connection.read_target) while such a frame arrives, and into
    the server's read buffer otherwise. A 1 MiB payload then comes in one or two reads, copied
    once, by the kernel, where uvloop's 256 KiB read buffer took five reads and two more
    copies. Connections that never see a large frame keep the plain protocol: it costs one
    Python call per read, this one two."""

    __slots__ = ("_into", "owner")

    def __init__(self, owner: ConnectionProtocol) -> None:
        self.owner = owner
        self._into = False

    def get_buffer(self, sizehint: int) -> memoryview:
        owner = self.owner
        ws = owner.ws
        target = ws.read_target() if ws is not None else None
        if target is not None:
            self._into = True
            return target
        self._into = False
        return owner.server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        owner = self.owner
        if self._into:
            assert owner.ws is not None
            busy = owner.ws.received_into(nbytes)
        else:
            busy = owner.conn.receive_data(owner.server.read_buffer[:nbytes])
        owner.after_read(busy)

    def eof_received(self) -> bool:
        return self.owner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.owner.pause_writing()

    def resume_writing(self) -> None:
        self.owner.resume_writing()


class ConnectionProtocol(asyncio.Protocol):
    """Feeds one transport into one sans-IO connection and runs the app for it.

    It uses the connection through :class:`asgiws.protocol.SansIOConnection` only: first an
    HTTPConnection, then, once the app accepts a WebSocket, the WebSocketConnection that the
    HTTP side offers as ``upgraded`` (``ws``, which also lets a LargeFrameReader read in place).
    """

    __slots__ = (
        "_batched",
        "_closed",
        "_drain",
        "_flush",
        "_large",
        "_opened",
        "_read_paused",
        "_task",
        "_timer_epoch",
        "_timer_kind",
        "_timer_tick",
        "_waiter",
        "_write_paused",
        "app",
        "config",
        "conn",
        "listener",
        "loop",
        "server",
        "transport",
        "ws",
    )

    def __init__(self, server: Server, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.config = server.config
        self.loop = server.loop
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.conn: SansIOConnection = None  # type: ignore[assignment]  # set in connection_made
        self.ws: InPlaceReads | None = None  # the connection again, once it is a WebSocket
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None  # the app waits in receive()
        self._drain: asyncio.Future[None] | None = None  # the app waits in send()
        self._timer_tick = 0  # the server's TimerWheel tick of our timer; 0: none armed
        self._timer_kind = TIMER_NONE
        self._timer_epoch = -1
        self._read_paused = False
        self._write_paused = False
        self._closed = False
        self._large = False  # a LargeFrameReader reads for us
        self._flush: asyncio.Handle | None = None  # a batched write waiting for the app to yield
        self._batched = 0  # answers waiting for that write

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave like one.
        self.transport = transport  # type: ignore[assignment]
        self._opened = self.loop.time()
        listener = self.listener
        client: Any = None
        server: Any = listener.server_address
        if not listener.unix:
            # One system call each: the local address only where the listener cannot tell it.
            peer = transport.get_extra_info("peername")
            client = (str(peer[0]), int(peer[1])) if peer else None
            if server is None:
                local = transport.get_extra_info("sockname")
                server = (str(local[0]), int(local[1])) if local else None
        self.conn = HTTPConnection(
            self.config,
            client=client,
            server=server,
            scheme=listener.scheme,
            server_headers=self.server.server_headers,
            lifespan_state=self.server.lifespan.state if self.server.lifespan.supported else None,
        )
        if self.server.shutting_down:
            self.conn.shutdown(self.config.ws_shutdown_code)
        self.server.connections.add(self)
        self._step()

    def data_received(self, data: bytes) -> None:
        if self.conn.receive_data(data):
            self._step()
        else:
            self._wake()  # The hot path: messages for the app and nothing else to do.

    def after_read(self, busy: bool) -> None:
        """A LargeFrameReader's read went in: ``busy`` as receive_data() returned it."""
        if busy:
            self._step()
        else:
            self._wake()

    def eof_received(self) -> bool:
        return False  # Close our side too: a client that stops sending is gone.

    def _read_large_frames(self) -> None:
        """Hand the transport a LargeFrameReader for the rest of the connection. Reading
        restarts, so that the transport takes the other kind of protocol (uvloop picks its
        read callbacks when reading starts)."""
        transport = self.transport
        self._large = True
        if transport is None or self._closed:
            return
        transport.set_protocol(LargeFrameReader(self))
        if not self._read_paused:
            transport.pause_reading()
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        refused = self.conn.connection_lost()
        if refused is not None and self.config.access_log:
            logs.log_access(refused, self.loop.time() - self._opened)
        if self._timer_tick:
            self.server.timers.disarm(self, self._timer_tick)
            self._timer_tick = 0
        self._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        self.server.connections.discard(self)
        self.server.check_idle()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- the one place that acts on what the connection decided -----------------------------

    def _step(self) -> None:
        conn = self.conn
        upgraded = conn.upgraded
        if upgraded is not None:
            # The app accepted: the WebSocketConnection (with the 101 first in its output)
            # serves the socket from here on, with timers of its own.
            self.conn = self.ws = conn = upgraded
            self._timer_epoch = -1
        transport = self.transport
        assert transport is not None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._batched = 0
        output = conn.data_to_send()
        if output and not self._closed:
            self._write(output)
        if not self._closed:
            if conn.state in CLOSED_STATES:
                # Written data is flushed before the socket closes.
                transport.close()
                self._closed = True
            else:
                if conn.timer_epoch != self._timer_epoch:
                    self._arm_timer()
                paused = conn.reading_paused
                if paused is not self._read_paused:
                    self._read_paused = paused
                    if paused:
                        transport.pause_reading()
                    else:
                        transport.resume_reading()
                ws = self.ws
                if ws is not None and not self._large and ws.read_target() is not None:
                    self._read_large_frames()  # a large binary frame is arriving
        self._wake()
        if self._task is None:
            scope = conn.next_scope()
            if scope is not None:
                self._task = self.loop.create_task(self._run_app(scope))
                self.server.tasks.add(self._task)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm_timer(self) -> None:
        conn = self.conn
        self._timer_epoch = conn.timer_epoch
        timers = self.server.timers
        if self._timer_tick:
            timers.disarm(self, self._timer_tick)
            self._timer_tick = 0
        kind = conn.timer
        if kind is not TIMER_NONE:
            self._timer_kind = kind
            self._timer_tick = timers.arm(self, self.server.timer_delays[kind])

    def on_tick(self, tick: int) -> None:
        """The server's TimerWheel: our timer is due."""
        if tick != self._timer_tick:
            return
        self._timer_tick = 0
        self._timer_epoch = -1
        self.conn.timeout(self._timer_kind)
        self._step()

    def shutdown(self) -> None:
        if not self._closed:
            self.conn.shutdown(self.config.ws_shutdown_code)
            self._step()

    def abort(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.abort()

    # -- the app's side ------------------------------------------------------------------------

    async def receive(self) -> MutableMapping[str, Any]:
        while True:
            conn = self.conn  # again after each wait: an accept may have swapped it
            message = conn.next_message()
            if conn.state is not OPEN or self._read_paused or conn.timer_epoch != self._timer_epoch:
                self._step()  # an answered Close, a 100 Continue, room in a full inbox ...
            elif message is None and self._flush is not None:
                self._flush_now()  # the app has caught up: write its batched answers now
            if message is not None:
                return message
            waiter = self.loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    async def send(self, message: MutableMapping[str, Any]) -> None:
        conn = self.conn
        waiting = conn.send(message)  # type: ignore[arg-type]
        if conn.state is OPEN and conn.timer_epoch == self._timer_epoch:
            # The hot path: one WebSocket message out.
            if waiting and self._batched < WRITE_BATCH:
                # More messages are queued and the app is answering them one by one without
                # yielding: write the answers together once it yields (one syscall, not many).
                self._batched += 1
                if self._flush is None:
                    self._flush = self.loop.call_soon(self._flush_now)
                return
            self._flush_now()
        else:
            self._step()
        if self._write_paused and not self._closed:
            drain = self.loop.create_future()
            self._drain = drain
            try:
                await drain
            finally:
                self._drain = None

    def _flush_now(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._batched = 0
        output = self.conn.data_to_send()
        if self._closed:
            return
        if len(output) == 1:
            self.transport.write(output[0])  # type: ignore[union-attr]
        else:
            self._write(output)

    def _write(self, output: list[bytes]) -> None:
        if len(output) == 1:
            self.transport.write(output[0])  # type: ignore[union-attr]
            return
        if not output:
            return
        # Several frames: batched answers, or a large payload after its header. Small ones are
        # joined into one buffer; a large payload is passed on as it is, uncopied.
        parts: list[bytes] = []
        small: list[bytes] = []
        for chunk in output:
            if len(chunk) < LARGE_WRITE:
                small.append(chunk)
                continue
            if small:
                parts.append(b"".join(small))  # one bytes item: itself, uncopied
                small = []
            parts.append(chunk)
        if small:
            parts.append(b"".join(small))  # one bytes item: itself, uncopied
        transport = self.transport
        assert transport is not None
        if self.server.vectored and len(parts) > 1:
            # uvloop writes a list with one writev() (header and payload in one segment run).
            transport.writelines(parts)
        else:
            # Not writelines() on asyncio's own transports: on CPython 3.12 and 3.13 it neither
            # applies flow control (pause_writing is never called) nor finishes when an empty
            # buffer is among its arguments.
            for part in parts:
                transport.write(part)

    async def _run_app(self, scope: dict[str, Any]) -> None:
        started = self.loop.time()
        error: BaseException | None = None
        try:
            await self.app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # The client left and the app noticed: nothing went wrong on our side.
        except asyncio.CancelledError as exc:
            error = exc  # Shutdown cancelled it after the graceful timeout.
        except BaseException as exc:
            error = exc
            logger.error("Exception in ASGI application", exc_info=exc)
        record = self.conn.app_finished(error)
        if record.problem is not None:
            logger.error("%s (%s %s)", record.problem, scope.get("type"), scope.get("path"))
        if self.config.access_log:
            logs.log_access(record, self.loop.time() - started)
        if self._task is not None:
            self.server.tasks.discard(self._task)
            self._task = None
        self._step()
        self.server.check_idle()


class Server:
    """Listens, tracks connections and tasks, and shuts down gracefully."""

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.lifespan = Lifespan(app, config.lifespan)
        self.server_headers = ServerHeaders()
        self.connections: set[ConnectionProtocol] = set()
        self._read_buffer: memoryview | None = None
        # uvloop's transports write a list of buffers with one writev() and apply flow control.
        self.vectored = type(self.loop).__module__.split(".")[0] == "uvloop"
        self.tasks: set[asyncio.Task[None]] = set()
        self.shutting_down = False
        self.uds: str | None = config.uds
        self._listeners: list[asyncio.AbstractServer] = []
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._forced = False
        self._date_timer: asyncio.TimerHandle | None = None
        # Every connection's timer, in shared buckets (one loop timer), and each Timer's delay.
        self.timers = TimerWheel(self.loop)
        delays = [0.0] * (max(Timer) + 1)
        delays[TIMER_HEAD] = config.timeout_handshake
        delays[TIMER_KEEP_ALIVE] = config.timeout_keep_alive
        delays[TIMER_PING] = config.ws_ping_interval
        delays[TIMER_PONG] = config.ws_ping_timeout
        delays[TIMER_CLOSE] = config.ws_close_timeout
        self.timer_delays = tuple(delays)
        self._ssl: ssl.SSLContext | None = None
        self.bound: list[str] = []

    @property
    def read_buffer(self) -> memoryview:
        """What LargeFrameReaders read into between large frames, shared: each read is handed
        on before the next one starts."""
        buffer = self._read_buffer
        if buffer is None:
            buffer = self._read_buffer = memoryview(bytearray(READ_BUFFER))
        return buffer

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, sockets: list[socket.socket] | None = None) -> int:
        self._install_signal_handlers()
        try:
            self.ssl_context()
        except TLSConfigError as exc:
            logger.error("%s", exc)
            return 2
        try:
            await self.lifespan.startup()
        except LifespanError as exc:
            logger.error("%s", exc)
            return 3
        try:
            await self.start(sockets)
        except OSError as exc:
            logger.error("could not listen on %s: %s", self.describe_address(), exc.strerror or exc)
            with contextlib.suppress(LifespanError):
                await self.lifespan.shutdown()
            return 1
        for url in self.bound:
            logger.info("asgiws %s running on %s (press CTRL+C to quit)", __version__, url)
        await self._stop.wait()
        await self.shutdown()
        if self._forced:
            logger.warning("forced exit: connections and tasks were cancelled")
            return 1
        try:
            await self.lifespan.shutdown()
        except LifespanError as exc:
            logger.error("%s", exc)
            return 1
        return 0

    def describe_address(self) -> str:
        config = self.config
        if config.fd is not None:
            return f"file descriptor {config.fd}"
        if config.uds:
            return f"unix socket {config.uds}"
        return f"{config.host}:{config.port}"

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        loop = self.loop

        if self._date_timer is None:
            self._tick_date()
        if sockets is None:
            sockets = [self._make_socket()]
        tls = self.ssl_context()
        for sock in sockets:
            shared = Listener(sock, tls is not None, config.uds)

            def factory(shared: Listener = shared) -> ConnectionProtocol:
                return ConnectionProtocol(self, shared)

            if shared.unix:
                listener = await loop.create_unix_server(
                    factory, sock=sock, backlog=config.backlog, ssl=tls
                )
                name = sock.getsockname()
                self.uds = name if isinstance(name, str) else config.uds
                self.bound.append(f"unix:{self.uds}")
            else:
                listener = await loop.create_server(
                    factory, sock=sock, backlog=config.backlog, ssl=tls
                )
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                self.bound.append(f"{'https' if tls else 'http'}://{shown}:{port}")
            self._listeners.append(listener)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of --ssl-certfile, or None; raises TLSConfigError naming the flag."""
        config = self.config
        if config.ssl_certfile is None:
            return None
        if self._ssl is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(
                    config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password
                )
            except (OSError, ssl.SSLError) as exc:
                flag = "--ssl-keyfile" if config.ssl_keyfile else "--ssl-certfile"
                shown = config.ssl_keyfile or config.ssl_certfile
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise TLSConfigError(f"{flag}: cannot load {shown!r}: {reason}") from None
            # The handshake offers HTTP/1.1 only: h2 is not spoken here.
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return self._ssl

    def _make_socket(self) -> socket.socket:
        config = self.config
        if config.fd is not None:
            sock = socket.socket(fileno=config.fd)
            sock.setblocking(False)
            return sock
        if config.uds:
            path = config.uds
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)  # A stale socket from an earlier run.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(config.backlog)
            sock.setblocking(False)
            return sock
        infos = socket.getaddrinfo(
            config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _type, proto, _name, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(config.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGINT and SIGTERM do)."""
        self._stop.set()

    async def shutdown(self) -> None:
        self.shutting_down = True
        for listener in self._listeners:
            listener.close()
        for proto in list(self.connections):
            proto.shutdown()
        self.check_idle()
        if not self._idle.is_set() and not self._forced:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.config.timeout_graceful_shutdown)
        if self.tasks or self.connections:
            logger.warning(
                "cancelling %d task(s) and %d connection(s) still open after the graceful "
                "shutdown timeout",
                len(self.tasks),
                len(self.connections),
            )
        self._cancel_all()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5.0)
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 1.0)
        if self._date_timer is not None:
            self._date_timer.cancel()
        self.timers.close()
        if self.uds and self.config.fd is None:
            with contextlib.suppress(OSError):
                os.unlink(self.uds)

    def _cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for proto in list(self.connections):
            proto.abort()

    def check_idle(self) -> None:
        if self.shutting_down and not self.connections and not self.tasks:
            self._idle.set()

    # -- signals and the Date header ------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self.loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        if self._stop.is_set():
            # A second signal: stop waiting for the graceful end.
            self._forced = True
            self._idle.set()
            self._cancel_all()
            return
        logger.info("received %s, shutting down", signal.Signals(sig).name)
        self._stop.set()

    def _tick_date(self) -> None:
        # RFC 9110 §6.6.1: an origin server with a clock sends Date; one value a second.
        self.server_headers.headers = [
            (b"date", email.utils.formatdate(usegmt=True).encode("ascii")),
            (b"server", b"asgiws"),
        ]
        self._date_timer = self.loop.call_later(1.0, self._tick_date)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


# glibc's mallopt() parameters, and the largest M_MMAP_THRESHOLD it takes on 64-bit systems.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def tune_malloc(keep: int, largest_block: int) -> bool:
    """--malloc-keep: ask glibc to keep ``keep`` bytes of freed heap for reuse, and to take
    blocks up to ``largest_block`` from the heap. True when applied; False where there is no
    glibc (macOS, musl) or ``keep`` is 0."""
    if keep <= 0 or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a glibc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    threshold = min(max(largest_block, 128 * 1024), _MMAP_THRESHOLD_MAX)
    # A fixed M_MMAP_THRESHOLD turns off glibc's own adjustment of both thresholds.
    mapped = bool(mallopt(_M_MMAP_THRESHOLD, threshold) == 1)
    trimmed = bool(mallopt(_M_TRIM_THRESHOLD, min(keep, 2**31 - 1)) == 1)
    return mapped and trimmed


def serve(app: ASGIApp, config: Config, sockets: list[socket.socket] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; return the process exit status."""
    if tune_malloc(config.malloc_keep, config.ws_max_size):
        logger.debug("malloc: keeping up to %d bytes of freed heap for reuse", config.malloc_keep)
    try:
        factory = _loop_factory(config.loop)
    except ImportError:
        logger.error("--loop uvloop: uvloop is not installed (pip install 'asgiws[fast]')")
        return 1

    async def main() -> int:
        server = Server(app, config)
        return await server.run(sockets)

    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            return runner.run(main())
        except KeyboardInterrupt:  # pragma: no cover - only without signal handlers
            return 1
