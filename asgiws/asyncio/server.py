"""The server of one process: listeners, the task group every app task lives in, graceful
shutdown, signals and the Date header.

Every task has a parent: :meth:`Server.run` holds an :class:`asyncio.TaskGroup` for as long as
it serves, and the lifespan task and each request cycle's app task are created in it
(:meth:`Server.spawn`). An app that raises ``KeyboardInterrupt`` or ``SystemExit`` stops the
server (the group propagates it); one that raises anything else gets a 500 or a 1011, and the
server goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import logging
import os
import random
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .._version import __version__
from ..accesslog import access_format
from ..config import Config
from ..headers import static_headers
from ..limits import ConnectionLimits
from ..metrics import Metrics, merge, missing_extra, render
from ..protocol import ServerHeaders
from ..reassembly import POOL_LARGEST, SHARED_POOL_COUNT, BufferPool
from ..states import (
    TIMER_CLOSE,
    TIMER_FIRST_PING,
    TIMER_HEAD,
    TIMER_KEEP_ALIVE,
    TIMER_PING,
    TIMER_PONG,
    Timer,
)
from ..types import ASGIApp
from . import eager
from .connection import ConnectionProtocol
from .lifespan import Lifespan, LifespanError
from .loop_errors import LoopErrors
from .metered import MeteredConnectionProtocol
from .probes import ProbeServer
from .sockets import Listener, TLSConfigError, describe_address, make_socket, ssl_context
from .timers import TimerWheel, Within
from .tlsinfo import TLSInfo

logger = logging.getLogger("asgiws.error")

# The read buffer of connections with a LargeFrameReader (one per server): as large as the
# smallest frame read in place (frames.DIRECT_MIN), so that a smaller frame comes in one read and
# a larger one has at most this much copied before the rest is read in place.
READ_BUFFER = 64 * 1024
# After the graceful timeout, and after cancelling, how long to wait for apps to finish.
CANCEL_WAIT_S = 5.0


class Server:
    """Listens, tracks connections and tasks, and shuts down gracefully."""

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.lifespan = Lifespan(app, config.lifespan)
        # --header items and the server header, computed once; the date goes in front of them.
        self._static_headers = static_headers(config.header, server_header=config.server_header)
        self.server_headers = ServerHeaders(self._static_headers)
        # The access line's format (--access-log-format): None for the built-in line.
        self.access_format = access_format(config.access_log_format)
        # Large-frame payload buffers, reused across this server's connections.
        self.pool = BufferPool(SHARED_POOL_COUNT, POOL_LARGEST)
        self.connections: set[ConnectionProtocol] = set()
        # Connections with broadcast messages waiting for their sender to yield (see
        # connection.write_deferred, scheduled once a tick while this is not empty).
        self.deferred: list[ConnectionProtocol] = []
        self._loop_errors: LoopErrors | None = None  # installed on start()
        self._read_buffer: memoryview | None = None
        # uvloop's transports write a list of buffers with one writev() and apply flow control.
        self.vectored = type(self.loop).__module__.split(".")[0] == "uvloop"
        self._group: asyncio.TaskGroup | None = None  # while run() serves
        self._eager: eager.EagerStart | None = None  # while run() serves, on Python 3.12+
        self.tasks: set[asyncio.Task[None]] = set()  # the app tasks still running
        self.shutting_down = False
        self.uds: str | None = config.uds
        self._unlink_uds = False
        self._listeners: list[asyncio.AbstractServer] = []
        self.started = asyncio.Event()  # listening: run() got as far as serving
        # Log the "running on <url>" line once listening; a worker process leaves it to its
        # supervisor, which logs it once for all workers.
        self.announce = True
        self._stop = asyncio.Event()
        self._drained = asyncio.Event()  # shutting down, and no connection or task is left
        self._closed = asyncio.Event()  # shutdown is complete
        self._forced = False
        self._date_timer: asyncio.TimerHandle | None = None
        # Every connection's timer, in shared buckets (one loop timer), and each Timer's delay.
        self.timers = TimerWheel(self.loop)
        delays: list[float | Within] = [0.0] * (max(Timer) + 1)
        delays[TIMER_HEAD] = config.timeout_handshake
        delays[TIMER_KEEP_ALIVE] = config.timeout_keep_alive
        # A connection's first ping: the wheel spreads them over the interval (timers.Within).
        delays[TIMER_FIRST_PING] = Within(config.ws_ping_interval)
        delays[TIMER_PING] = config.ws_ping_interval
        delays[TIMER_PONG] = config.ws_ping_timeout
        delays[TIMER_CLOSE] = config.ws_close_timeout
        self.timer_delays = tuple(delays)
        self._ssl: ssl.SSLContext | None = None
        # What TLS connections put into scope["extensions"]["tls"]: set with the TLS context.
        self.tls: TLSInfo | None = None
        # --limit-concurrency and --limit-per-client: the connections each connection counts in.
        self.limits: ConnectionLimits | None = None
        if config.limit_concurrency is not None or config.limit_per_client is not None:
            self.limits = ConnectionLimits(config.limit_concurrency, config.limit_per_client)
        self.bound: list[str] = []
        # What start() listens on: (host, port) of each TCP socket, the path of a Unix socket.
        self.addresses: list[tuple[str, int] | str] = []
        # Why run() returned before serving (its log message), for asgiws.Server.
        self.startup_error: str | None = None
        # The close code WebSockets get on shutdown: --ws-shutdown-code, or what stop() was given
        # (1012 for a restart).
        self.shutdown_code = config.ws_shutdown_code
        # HTTP request cycles finished, and after how many to stop (--limit-max-requests plus
        # up to --limit-max-requests-jitter, so that workers started together do not all stop
        # together).
        self.requests = 0
        self.request_limit: int | None = None
        if config.limit_max_requests is not None:
            jitter = random.randint(0, config.limit_max_requests_jitter)
            self.request_limit = config.limit_max_requests + jitter
        # --metrics-port: the figures the connections add to, and the probe listener. Without
        # it, the connections are the plain ConnectionProtocol and count nothing.
        self.metrics: Metrics | None = Metrics() if config.metrics_port is not None else None
        self.probes: ProbeServer | None = None
        self.metrics_worker = "1"  # the worker label of the per-worker figures

    @property
    def read_buffer(self) -> memoryview:
        """What LargeFrameReaders read into between large frames, shared: each read is handed
        on before the next one starts."""
        buffer = self._read_buffer
        if buffer is None:
            buffer = self._read_buffer = memoryview(bytearray(READ_BUFFER))
        return buffer

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, sockets: list[socket.socket] | None = None, *, signals: bool = True) -> int:
        """Serve until :meth:`stop` (SIGINT, SIGTERM), then shut down; the exit status: 0, 1
        (cannot listen, forced exit, lifespan shutdown failed), 2 (TLS files), 3 (lifespan
        startup failed)."""
        try:
            self._ssl = ssl_context(self.config)
            if self._ssl is not None and self.config.ssl_certfile is not None:
                self.tls = TLSInfo(self._ssl, self.config.ssl_certfile)
        except TLSConfigError as exc:
            logger.error("%s", exc)
            self.startup_error = str(exc)
            return 2
        if signals:
            self._install_signal_handlers()
        if eager.SUPPORTED:
            self._eager = eager.EagerStart(self.loop)
            self._eager.install()
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                return await self._serve(sockets)
            finally:
                # Normally nothing is left; after a failed startup the lifespan task may be, and
                # when run() itself is cancelled, the listeners too.
                for listener in self._listeners:
                    listener.close()
                if self.probes is not None:
                    self.probes.close()
                self._cancel_all()
                self.lifespan.cancel()
                self._group = None
                if self._eager is not None:
                    self._eager.uninstall()
                    self._eager = None
                self._closed.set()

    async def _serve(self, sockets: list[socket.socket] | None) -> int:
        if self.metrics is not None:
            missing = missing_extra()  # asgiws.run(metrics_port=...) without the extra
            if missing is not None:
                logger.error("%s", missing)
                self.startup_error = missing
                return 1
            try:
                await self._start_probes()
            except OSError as exc:
                where = f"{self.config.metrics_host}:{self.config.metrics_port}"
                message = f"could not listen on --metrics-port {where}: {exc.strerror or exc}"
                logger.error("%s", message)
                self.startup_error = message
                return 1
        try:
            await self.lifespan.startup(self._in_group)
        except LifespanError as exc:
            logger.error("%s", exc)
            self.startup_error = str(exc)
            return 3
        try:
            await self.start(sockets)
        except OSError as exc:
            where = describe_address(self.config)
            logger.error("could not listen on %s: %s", where, exc.strerror or exc)
            self.startup_error = f"could not listen on {where}: {exc.strerror or exc}"
            with contextlib.suppress(LifespanError):
                await self.lifespan.shutdown()
            return 1
        for url in self.bound if self.announce else ():
            logger.info("asgiws %s running on %s (press CTRL+C to quit)", __version__, url)
        self.started.set()
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

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run an app call as a task of the server's task group; None when the task started
        eagerly and is done already (Python 3.12+: asgiws.asyncio.eager)."""
        group = self._group
        if group is None:
            coro.close()
            raise RuntimeError("the server is not running: start it with run()")
        starter = self._eager
        if starter is None:
            task = group.create_task(coro)
        else:
            task = starter.create(group, coro)
            if task.done():
                return None  # (it was never in self.tasks: it ended inside create)
        # The task leaves self.tasks by task_done(), called as its coroutine ends: no done
        # callback (each is one more loop handle per request). A task cancelled before it ever
        # ran stays in the set, done: only shutdown's last wait sees it, and it is done.
        self.tasks.add(task)
        return task

    def _in_group(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """The lifespan task: in the group, not among the app tasks."""
        assert self._group is not None
        return self._group.create_task(coro)

    def task_done(self, task: asyncio.Task[None]) -> None:
        """An app task's coroutine is ending."""
        self.tasks.discard(task)
        if self.shutting_down:
            self._check_drained()

    def forget(self, proto: ConnectionProtocol) -> None:
        """A connection is gone."""
        self.connections.discard(proto)
        if self.shutting_down:
            self._check_drained()

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        loop = self.loop
        if self._loop_errors is None:
            self._loop_errors = LoopErrors(loop)
            self._loop_errors.install()
        if self._date_timer is None and self.config.date_header:
            self._tick_date()
        if sockets is None:
            sockets = [make_socket(config)]
            # A Unix socket bound here is removed at the end; one handed over (--fd, a gunicorn
            # arbiter's) belongs to whoever bound it.
            self._unlink_uds = config.fd is None
        tls = self._ssl
        for sock in sockets:
            shared = Listener(sock, tls is not None, config.uds)

            protocol = ConnectionProtocol if self.metrics is None else MeteredConnectionProtocol

            # A partial, not a closure: no Python frame of its own per connection.
            factory: Callable[[], ConnectionProtocol] = functools.partial(protocol, self, shared)

            if shared.unix:
                listener = await self._unix_server(factory, sock, tls)
                name = sock.getsockname()
                self.uds = name if isinstance(name, str) else config.uds
                self.bound.append(f"unix:{self.uds}")
                self.addresses.append(str(self.uds))
            else:
                listener = await loop.create_server(
                    factory, sock=sock, backlog=config.backlog, ssl=tls
                )
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                self.bound.append(f"{'https' if tls else 'http'}://{shown}:{port}")
                self.addresses.append((str(host), int(port)))
            self._listeners.append(listener)

    async def _unix_server(
        self, factory: Callable[[], ConnectionProtocol], sock: socket.socket, tls: Any
    ) -> asyncio.AbstractServer:
        """Serve a Unix socket. Its file is this server's to remove or not (``_unlink_uds``):
        since Python 3.13 the loop removes it when the server closes unless told not to, which
        took the socket of a gunicorn arbiter or a supervisor away when one worker stopped."""
        backlog = self.config.backlog
        if sys.version_info >= (3, 13):
            try:
                return await self.loop.create_unix_server(
                    factory, sock=sock, backlog=backlog, ssl=tls, cleanup_socket=False
                )
            except TypeError:
                pass  # a loop (uvloop) that has no such argument, and removes nothing
        return await self.loop.create_unix_server(factory, sock=sock, backlog=backlog, ssl=tls)

    # -- metrics and probes (--metrics-port) ----------------------------------------------------

    async def _start_probes(self) -> None:
        config = self.config
        assert self.metrics is not None and config.metrics_port is not None
        metrics = self.metrics

        def on_lag(seconds: float) -> None:
            metrics.loop_lag = seconds

        async def text() -> bytes:
            return render(merge({self.metrics_worker: self.metrics_snapshot()}))

        self.probes = ProbeServer(
            config.metrics_host,
            config.metrics_port,
            metrics=text,
            ready=self.ready,
            snapshot=self.metrics_snapshot,
            on_lag=on_lag,
        )
        await self.probes.start()
        if self.announce:
            host = config.metrics_host
            shown = f"[{host}]" if ":" in host else host
            logger.info("metrics on http://%s:%d/metrics", shown, self.probes.port)

    def ready(self) -> bool:
        """/ready: serving (the lifespan startup done, listening), and not stopping."""
        return self.started.is_set() and not self._stop.is_set()

    def metrics_snapshot(self) -> dict[str, Any]:
        metrics = self.metrics
        assert metrics is not None
        metrics.lifespan_exceptions = self.lifespan.exceptions
        # Counted now rather than as they open, upgrade and close: nothing per connection.
        websockets = sum(1 for proto in self.connections if proto.ws is not None)
        metrics.websocket_open = websockets
        metrics.http_open = len(self.connections) - websockets
        return metrics.snapshot()

    def stop(self, code: int | None = None) -> None:
        """Begin a graceful shutdown (what SIGINT and SIGTERM do). WebSockets are closed with
        ``code`` (1001 Going Away, 1012 Service Restart), by default --ws-shutdown-code."""
        if code is not None and not self.shutting_down:
            self.shutdown_code = code
        self._stop.set()

    def force(self) -> None:
        """Stop without waiting for the graceful end (what a second SIGINT/SIGTERM does): the
        shutdown still writes each WebSocket its Close frame, then cancels app tasks and drops
        connections at once."""
        self._stop.set()
        self._forced = True
        self._drained.set()
        if self.shutting_down:
            self._cancel_all()
        # Otherwise shutdown() is about to begin: it writes the Close frames, skips the wait
        # and cancels.

    def request_done(self) -> None:
        """An HTTP request cycle finished: stop after --limit-max-requests of them."""
        self.requests += 1
        limit = self.request_limit
        if limit is not None and self.requests == limit:
            logger.info("served %d requests (--limit-max-requests), shutting down", limit)
            self.stop()

    async def wait_closed(self) -> None:
        """Wait until :meth:`run` has finished: no listener, connection or task is left."""
        await self._closed.wait()

    async def shutdown(self) -> None:
        """Stop listening; let HTTP requests finish and close every WebSocket with
        --ws-shutdown-code; cancel what is left after --timeout-graceful-shutdown."""
        self.shutting_down = True
        if self._loop_errors is not None:
            self._loop_errors.stopping = True
        for listener in self._listeners:
            listener.close()
        # One loop turn first: a connection accepted just before the listeners closed has its
        # request read (and then answered) instead of being closed unanswered as idle. Under
        # --workers the socket stays open in the other processes, so this is what makes a
        # rolling restart lose no request.
        await asyncio.sleep(0)
        for proto in list(self.connections):
            proto.shutdown()
        self._check_drained()
        if not self._drained.is_set() and not self._forced:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self.config.timeout_graceful_shutdown)
        if self.tasks or self.connections:
            logger.warning(
                "cancelling %d task(s) and %d connection(s) still open after the graceful "
                "shutdown timeout",
                len(self.tasks),
                len(self.connections),
            )
        self._cancel_all()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=CANCEL_WAIT_S)
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 1.0)
        if self._date_timer is not None:
            self._date_timer.cancel()
        self.timers.close()
        if self.uds and self._unlink_uds:
            with contextlib.suppress(OSError):
                os.unlink(self.uds)

    def _cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for proto in list(self.connections):
            proto.abort()

    def _check_drained(self) -> None:
        if not self.connections and not self.tasks:
            self._drained.set()

    # -- signals and the Date header ------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self.loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        if self._stop.is_set():
            # A second signal: stop waiting for the graceful end.
            self.force()
            return
        logger.info("received %s, shutting down", signal.Signals(sig).name)
        self._stop.set()

    def _tick_date(self) -> None:
        # RFC 9110 §6.6.1: an origin server with a clock sends Date; one value a second.
        self.server_headers.headers = [
            (b"date", email.utils.formatdate(usegmt=True).encode("ascii")),
            *self._static_headers,
        ]
        self._date_timer = self.loop.call_later(1.0, self._tick_date)
