"""One asyncio protocol per connection: bytes between the transport and the sans-IO
connection, the app's ``receive()`` and ``send()``, and the one timer the connection asks for.

It uses the connection through :class:`asgiws.protocol.SansIOConnection` only, and applies
back-pressure both ways: reading pauses while the connection says so (the app has
``max_queue`` unread messages), and ``send()`` waits while the transport's write buffer is
above its high-water mark.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .. import logs
from ..http import HTTPConnection
from ..limits import Slot
from ..protocol import UNCHANGED, AccessRecord, InPlaceReads, SansIOConnection
from ..states import (
    HTTP,
    HTTP_CLOSED,
    OPEN,
    TIMER_NONE,
    WS_CLOSED,
    WS_CONNECTING,
    ClientDisconnected,
    Timer,
)
from .timers import Within

if TYPE_CHECKING:
    from .server import Server
    from .sockets import Listener

# What a send's wait for the transport ends with when --ws-send-timeout ran out.
_TIMED_OUT = object()
_POLICY_VIOLATION = 1008

logger = logging.getLogger("asgiws.error")

# Answers to queued messages are written together, up to this many frames per write.
WRITE_BATCH = 64
# Messages another task sends (a broadcast) wait for it to yield when at most this long (str
# characters, 4 KiB of UTF-8 at most, or bytes), up to BROADCAST_BATCH of them.
BROADCAST_SMALL = 1024
BROADCAST_BATCH = 16
# A read at least this large that leaves a large binary frame unfinished switches the connection
# to a LargeFrameReader; smaller reads are not worth checking.
LARGE_READ = 16 * 1024
# A buffer this large is written on its own rather than copied into a joined one.
LARGE_WRITE = 64 * 1024

_F = TypeVar("_F")


def own_caches(function: _F) -> _F:
    """``function`` again, with a code object (so inline caches) of its own.

    CPython 3.11+ specializes each instruction for the types it meets, in a cache that belongs
    to the code object: an attribute read that meets an HTTPConnection, then a
    WebSocketConnection, misses and takes the generic path (some 100 instructions more per
    read on 3.11). A step for data the HTTP phase reads runs the copy this makes
    (``ConnectionProtocol._http_step``), so the copy meets HTTPConnections only, and the plain
    ``_step`` (the accept's, the WebSocket's) mostly WebSocketConnections: about twenty
    generic reads less per handshake.
    """
    code: types.CodeType = function.__code__  # type: ignore[attr-defined]
    copy = types.FunctionType(
        code.replace(),
        function.__globals__,  # type: ignore[attr-defined]
        function.__name__,  # type: ignore[attr-defined]
        function.__defaults__,  # type: ignore[attr-defined]
        function.__closure__,  # type: ignore[attr-defined]
    )
    copy.__kwdefaults__ = function.__kwdefaults__  # type: ignore[attr-defined]
    copy.__qualname__ = function.__qualname__  # type: ignore[attr-defined]
    copy.__doc__ = function.__doc__
    return copy  # type: ignore[return-value]


class _Listed:
    """``ConnectionProtocol._flush`` while the connection waits in its server's ``deferred``
    list (a broadcast's messages, see ``send``): like the handle of a scheduled flush, it is
    cancelled by a write that takes the output first."""

    __slots__ = ()

    def cancel(self) -> None:
        pass  # write_deferred() skips a connection whose _flush is no longer LISTED


LISTED: Final = _Listed()


def write_deferred(server: Server) -> None:
    """Write the broadcast messages that waited for their sender to yield (once a tick)."""
    deferred = server.deferred
    server.deferred = []
    for proto in deferred:
        if proto._flush is LISTED:  # (ConnectionProtocol._flush_now, inline)
            proto._flush = None
            proto._batched = 0
            output = proto.conn.data_to_send()
            if output and not proto._closed:
                if len(output) == 1:
                    proto.transport.write(output[0])  # type: ignore[union-attr]
                else:
                    write_buffers(proto.transport, output, server.vectored)


def write_buffers(transport: Any, output: list[bytes], vectored: bool) -> None:
    """Write a connection's buffers: small ones joined into one, a large payload passed on as
    it is, uncopied; ``vectored`` (uvloop) writes several with one writev()."""
    if len(output) == 1:
        transport.write(output[0])
        return
    if not output:
        return
    # Several frames: batched answers, or a large payload after its header.
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
    if vectored and len(parts) > 1:
        # uvloop writes a list with one writev() (header and payload in one segment run).
        transport.writelines(parts)
    else:
        # Not writelines() on asyncio's own transports: on CPython 3.12 and 3.13 it neither
        # applies flow control (pause_writing is never called) nor finishes when an empty
        # buffer is among its arguments.
        for part in parts:
            transport.write(part)


class LargeFrameReader(asyncio.BufferedProtocol):
    """A connection's protocol from its first large binary frame on: the transport reads into
    the frame's payload buffer (WebSocketConnection.read_target) while such a frame arrives,
    and into the server's read buffer otherwise. A 1 MiB payload then comes in one or two
    reads, copied once, by the kernel, where uvloop's 256 KiB read buffer took five reads and
    two more copies. Connections that never see a large frame keep the plain protocol: it costs one
    Python call per read, this one two."""

    __slots__ = ("_into", "owner")

    def __init__(self, owner: ConnectionProtocol) -> None:
        self.owner = owner
        self._into = False

    @classmethod
    def take_over(cls, owner: ConnectionProtocol) -> None:
        """Become the protocol of ``owner``'s transport for the rest of the connection, when
        a large binary frame is arriving. Reading restarts, so that the transport takes the
        other kind of protocol (uvloop picks its read callbacks when reading starts)."""
        ws = owner.ws
        transport = owner.transport
        if ws is None or ws.read_target() is None or transport is None or owner._closed:
            return
        owner._large = True
        transport.set_protocol(cls(owner))
        if not owner._read_paused:
            transport.pause_reading()
            transport.resume_reading()

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
        if busy:
            owner._step()
        else:
            owner._wake()

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
        "_due_tick",
        "_flush",
        "_large",
        "_opened",
        "_read_paused",
        "_slot",
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
    # What reads a large frame in place (asgiws.asyncio.metered counts its reads).
    large_reader = LargeFrameReader
    # Set by connection_made, which asyncio calls first (not in __init__ too).
    transport: asyncio.Transport | None
    conn: SansIOConnection
    _slot: Slot | None  # our place under --limit-*, while the connection is open

    def __init__(self, server: Server, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.config = server.config
        self.loop = server.loop
        self.app = server.app
        self.ws: InPlaceReads | None = None  # the connection again, once it is a WebSocket
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None  # the app waits in receive()
        self._drain: asyncio.Future[object] | None = None  # the app waits in send()
        self._timer_tick = 0  # the server's TimerWheel tick of our timer; 0: none armed
        self._timer_kind = TIMER_NONE
        self._due_tick = 0  # the tick the timer of that kind is due at (_arm_timer)
        self._timer_epoch = -1
        self._read_paused = False
        self._write_paused = False
        self._closed = False
        self._large = False  # a LargeFrameReader reads for us
        # A batched write waiting for the app to yield: its handle, or LISTED (a broadcast's).
        self._flush: asyncio.Handle | _Listed | None = None
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
            # (host, port): a TCP peer's name is a str and an int already; IPv6 adds two more.
            client = peer[:2] if peer else None
            if server is None:
                local = transport.get_extra_info("sockname")
                server = (str(local[0]), int(local[1])) if local else None
        owner = self.server
        limits = owner.limits
        slot = self._slot = limits.opened() if limits is not None else None
        tls = owner.tls
        ssl_object = transport.get_extra_info("ssl_object") if tls is not None else None
        lifespan = owner.lifespan
        # Positional: CPython 3.11 does not specialize a call with keywords (client, server,
        # scheme, server_headers, lifespan_state, pool, slot, tls).
        self.conn = HTTPConnection(
            self.config, client, server, listener.scheme, owner.server_headers,
            lifespan.state if lifespan.supported else None, owner.pool, slot,
            tls.of(ssl_object) if tls is not None and ssl_object is not None else None,
        )  # fmt: skip
        owner.connections.add(self)
        if owner.shutting_down:
            self.conn.shutdown(owner.shutdown_code)
            self._step()
        else:
            # A new connection has nothing to write, read or start yet: only its head timer.
            conn = self.conn
            self._arm_timer(conn.timer_epoch, conn.timer)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn.receive_data(data):
            if conn is self.ws:
                waiter = self._waiter
                if waiter is not None and conn.state is not OPEN:
                    # The peer's Close (or a failure) while the app waits in receive(): that
                    # steps as soon as it runs, this loop iteration, and answers the Close first
                    # when nothing is ahead of it. Stepping here too would arm --ws-close-timeout
                    # only for the answer to disarm it. (_wake(), inline.)
                    if not waiter.done():
                        waiter.set_result(None)
                    return
                if len(data) >= LARGE_READ and not self._large:
                    self.large_reader.take_over(self)  # when a large binary frame is arriving
                self._step()
            else:
                self._http_step()
        else:
            # The hot path: messages for the app and nothing else to do (_wake(), inline).
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool:
        return False  # Close our side too: a client that stops sending is gone.

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        refused = self.conn.connection_lost()
        if refused is not None:
            self.cycle_ended(refused, self._opened)
        if self._timer_tick:
            self.server.timers.disarm(self, self._timer_tick)
            self._timer_tick = 0
        slot = self._slot
        if slot is not None:
            self._slot = None
            slot.limits.closed(slot)
        waiter = self._waiter  # (_wake(), inline: once per connection)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        server = self.server
        if server.shutting_down:
            server.forget(self)  # which also tells whether the server is drained
        else:
            server.connections.discard(self)  # (as connection_made adds it: no call)

    def cycle_ended(self, record: AccessRecord, started: float) -> None:
        """A request cycle's access record, the cycle begun at loop time ``started``: its
        access line (the duration is reckoned only when there is a line to write)."""
        if self.config.access_log:
            logs.log_access(record, self.loop.time() - started, self.server.access_format)

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
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
            self._batched = 0  # (only ever counted while a flush is scheduled)
        output = conn.data_to_send()
        if not self._closed:
            transport: Any = self.transport
            if output:
                if len(output) == 1:
                    transport.write(output[0])
                else:
                    write_buffers(self.transport, output, self.server.vectored)
            state = conn.state
            # (CLOSED_STATES by identity: ``in`` would compare the state with every item
            # that is not it, each a rich comparison.)
            if state is HTTP_CLOSED or state is WS_CLOSED:
                # Written data is flushed before the socket closes.
                transport.close()
                self._closed = True
            else:
                epoch = conn.timer_epoch
                if epoch != self._timer_epoch:
                    kind = conn.timer
                    if kind is TIMER_NONE:
                        # No timer wanted (a request being served): _arm_timer's first case,
                        # inline, as an armed tick is left to come to nothing.
                        self._timer_epoch = epoch
                        self._timer_kind = TIMER_NONE
                    else:
                        self._arm_timer(epoch, kind)
                paused = conn.reading_paused()
                if paused is not self._read_paused:
                    self._read_paused = paused
                    if paused:
                        transport.pause_reading()
                    else:
                        transport.resume_reading()
        waiter = self._waiter  # _wake(), inline: this runs several times per connection
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._task is None:
            scope = conn.next_scope()
            if scope is not None:
                # None when an eager task has answered already (asgiws.asyncio.eager); then
                # its end may have started the next cycle's task, which this must not hide.
                task = self.server.spawn(self._run_app(scope))
                if task is not None:
                    self._task = task

    # The same step for data that arrives in the HTTP phase, with inline caches of its own.
    _http_step = own_caches(_step)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm_timer(self, epoch: int, kind: Timer) -> None:
        """Arm the timer ``kind`` the connection asks for at ``epoch`` (the caller read both:
        see own_caches), lazily. A tick already armed that comes no later than the new deadline
        stays (when it comes, on_tick arms the rest), and a timer no longer wanted is left to
        come to nothing: a keep-alive connection's requests, each clearing the keep-alive timer
        and setting it again, then touch the wheel about once per timeout, not twice a request."""
        self._timer_epoch = epoch
        self._timer_kind = kind
        if kind is TIMER_NONE:
            return
        server = self.server
        delay = server.timer_delays[kind]
        timers = server.timers
        tick = self._timer_tick
        if isinstance(delay, Within):
            self._timer_tick = self._due_tick = timers.arm(self, delay, tick)
            return
        due = self._due_tick = timers.tick_for(delay)
        if not tick or tick > due:
            self._timer_tick = timers.arm_tick(self, due, tick)

    def on_tick(self, tick: int) -> None:
        """The server's TimerWheel: our timer is due, or the tick of an earlier one came."""
        if tick != self._timer_tick:
            return
        self._timer_tick = 0
        kind = self._timer_kind
        if kind is TIMER_NONE:
            return  # no longer wanted (see _arm_timer)
        if tick < self._due_tick:
            self._timer_tick = self.server.timers.arm_tick(self, self._due_tick)  # the rest
            return
        self._timer_epoch = -1
        self.conn.timeout(kind)
        self._step()

    def shutdown(self) -> None:
        if not self._closed:
            self.conn.shutdown(self.server.shutdown_code)
            self._step()

    def abort(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.abort()

    # -- the app's side ------------------------------------------------------------------------

    async def receive(self) -> MutableMapping[str, Any]:
        while True:
            conn = self.conn  # again after each wait: an accept may have swapped it
            message = conn.next_message()
            state = conn.state
            if self._closed:
                pass  # nothing to write or read any more: the app only hears the end
            elif (
                (
                    state is not OPEN
                    and state is not WS_CONNECTING
                    and (state is not HTTP or message is None)
                )
                or self._read_paused
                or conn.timer_epoch != self._timer_epoch
            ):
                # An answered Close, a 100 Continue, room in a full inbox ... (An upgrade
                # request waiting for its accept has nothing to write after websocket.connect;
                # nor has a request whose next body message was taken: the 100 Continue is
                # asked for only by a receive() that finds the inbox empty, and room in a
                # paused inbox is the clause below.)
                self._step()
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
            if (
                self._waiter is not None
                and not self._write_paused
                and self._batched < BROADCAST_BATCH
            ):
                # Another task sends while this connection's app waits in receive(): a
                # broadcast, whose sender often has its next message queued too. Small
                # messages wait for it to yield (BROADCAST_BATCH x 4 KiB at most, the
                # transport's high-water mark): one syscall for them, not one each. A large
                # one, or one to a client that does not read, goes now (and waits for room).
                data = message.get("text")
                if data is None:
                    data = message.get("bytes", b"")
                if len(data) <= BROADCAST_SMALL:
                    self._batched += 1
                    if self._flush is None:
                        # One callback for all the connections of a broadcast, not one each.
                        self._flush = LISTED
                        server = self.server
                        deferred = server.deferred
                        if not deferred:
                            self.loop.call_soon(write_deferred, server)
                        deferred.append(self)
                    return
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
                self._batched = 0
            output = conn.data_to_send()
            if not self._closed:
                if len(output) == 1:
                    self.transport.write(output[0])  # type: ignore[union-attr]
                else:
                    write_buffers(self.transport, output, self.server.vectored)
        elif waiting == UNCHANGED:
            pass  # an HTTP response start, held until its body
        elif conn.state is HTTP and conn.timer_epoch == self._timer_epoch:
            # An HTTP response body while the app runs: the cycle cannot end, the inbox and the
            # parked bytes stay as they were, so only the bytes are to write.
            output = conn.data_to_send()
            if output and not self._closed:
                if len(output) == 1:
                    self.transport.write(output[0])  # type: ignore[union-attr]
                else:
                    write_buffers(self.transport, output, self.server.vectored)
        else:
            if conn is not self.ws:
                upgraded = conn.upgraded
                if upgraded is not None:
                    # The app accepted: the WebSocketConnection (the 101 first in its output)
                    # serves the socket from here on, with timers of its own. (Looked for
                    # here, not at each step: its upgraded is a read 3.11 cannot specialize.)
                    self.conn = self.ws = upgraded
                    self._timer_epoch = -1
            self._step()
        if self._write_paused and not self._closed:
            await self._wait_for_room()

    async def _wait_for_room(self) -> None:
        """The client reads slower than the app sends: wait until the transport's buffer has
        room, for at most --ws-send-timeout on a WebSocket (one stalled reader must not stall
        an app that sends to many); then the session is closed with 1008 and this raises."""
        drain = self.loop.create_future()
        self._drain = drain
        limit = self.config.ws_send_timeout
        timer = None
        if limit > 0 and self.ws is not None:
            timer = self.loop.call_later(limit, self._send_timed_out, drain)
        try:
            await drain
        finally:
            self._drain = None
            if timer is not None:
                timer.cancel()
        if timer is not None and drain.result() is _TIMED_OUT:
            raise ClientDisconnected(
                f"send() did not complete within --ws-send-timeout {limit:g} s: the client is "
                "not reading; the connection is closed with 1008"
            )

    def _send_timed_out(self, drain: asyncio.Future[object]) -> None:
        if drain.done() or self._closed:
            return
        ws = self.ws
        assert ws is not None
        client = self.transport.get_extra_info("peername") if self.transport else None
        logger.warning(
            "closing the WebSocket of %s with 1008: send() waited over --ws-send-timeout "
            "%g s for a client that is not reading",
            logs.format_client(client),
            self.config.ws_send_timeout,
        )
        ws.shutdown(_POLICY_VIOLATION, "send timeout: the client is not reading")
        self._step()  # the Close goes out behind what is buffered; --ws-close-timeout bounds it
        drain.set_result(_TIMED_OUT)

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
            write_buffers(self.transport, output, self.server.vectored)

    async def _run_app(self, scope: dict[str, Any]) -> None:
        """The app, for one request cycle: a task in the server's task group."""
        started = self.loop.time()
        error: BaseException | None = None
        try:
            await self.app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # The client left and the app noticed: nothing went wrong on our side.
        except Exception as exc:
            error = exc
            logger.error("Exception in ASGI application", exc_info=exc)
        except BaseException as exc:
            # Cancelled (shutdown ran out of time), or KeyboardInterrupt / SystemExit, which
            # stop the whole server: it propagates once the connection knows.
            error = exc
            raise
        finally:
            self._app_finished(scope, error, started)

    def _app_finished(
        self, scope: dict[str, Any], error: BaseException | None, started: float
    ) -> None:
        record = self.conn.app_finished(error)
        if record.problem is not None:
            logger.error("%s (%s %s)", record.problem, scope.get("type"), scope.get("path"))
        self.cycle_ended(record, started)
        server = self.server
        if scope["type"] == "http":
            server.request_done()
        task, self._task = self._task, None
        if task is not None:
            if server.shutting_down:
                server.task_done(task)  # which also tells whether the server is drained
            else:
                server.tasks.discard(task)  # (Server.task_done's part: no call)
        if not self._closed:
            self._step()  # the end of a response, the next request cycle, an error answer
