"""The ``--metrics-port`` listener: ``/metrics`` (Prometheus text), ``/ready``, ``/live``, and
``/metrics.json`` (one process's figures, which a supervisor adds up), on a port of its own.

It is a small asyncio server on the serving loop itself, so that a loop that does not turn (an
app that blocks it) answers nothing, not even ``/live``: the orchestrator's liveness probe then
times out, which is the point. ``/ready`` is 200 while the process takes requests (after the
lifespan startup, until the first SIGTERM), 503 otherwise, so that a balancer stops routing to a
server that is draining before its connections are gone.

The loop lag is sampled here too: a timer due every LAG_INTERVAL_S records how late it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("asgiws.error")

# A probe's request head: at most this many bytes, read within this time.
MAX_HEAD = 8 * 1024
HEAD_TIMEOUT_S = 5.0
# The event loop's lag is sampled this often.
LAG_INTERVAL_S = 0.25

_REASONS = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed", 503: b"Unavailable"}
TEXT = b"text/plain; charset=utf-8"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


class ProbeServer:
    """Serves the probes on ``host:port`` with the loop it is started on.

    ``metrics()`` gives the /metrics body, ``snapshot()`` the /metrics.json data, ``ready()``
    whether /ready is 200; ``on_lag(seconds)`` gets each loop lag sample."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Callable[[], Awaitable[bytes]],
        ready: Callable[[], bool],
        snapshot: Callable[[], object] | None = None,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._metrics = metrics
        self._ready = ready
        self._snapshot = snapshot
        self._on_lag = on_lag
        self._server: asyncio.AbstractServer | None = None
        self._lag: asyncio.TimerHandle | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (OSError when the address is taken); ``port`` is then the bound one."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        if self._on_lag is not None:
            self._sample_lag()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lag is not None:
            self._lag.cancel()
            self._lag = None
        for task in list(self._handlers):
            task.cancel()

    def _sample_lag(self, due: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if due is not None and self._on_lag is not None:
            self._on_lag(max(0.0, now - due))
        self._lag = loop.call_at(now + LAG_INTERVAL_S, self._sample_lag, now + LAG_INTERVAL_S)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                head = await asyncio.wait_for(self._read_head(reader), HEAD_TIMEOUT_S)
                if head is not None:
                    status, kind, body = await self._answer(*head)
                    body_out = b"" if head[0] == "HEAD" else body
                    writer.write(
                        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                        b"connection: close\r\n\r\n%s"
                        % (status, _REASONS[status], kind, len(body), body_out)
                    )
                    await writer.drain()
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str] | None:
        """The method and path of the request, or None for a head that is too large."""
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return None
        if len(data) > MAX_HEAD:
            return None
        method, _, rest = data.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        return method.decode("latin-1"), path.decode("latin-1")

    async def _answer(self, method: str, path: str) -> tuple[int, bytes, bytes]:
        if path not in ("/metrics", "/ready", "/live", "/metrics.json"):
            return 404, TEXT, b"not found: the paths are /metrics, /ready and /live\n"
        if method not in ("GET", "HEAD"):
            return 405, TEXT, f"method {method} not allowed: GET or HEAD\n".encode()
        if path == "/live":
            return 200, TEXT, b"live\n"
        if path == "/ready":
            if self._ready():
                return 200, TEXT, b"ready\n"
            return 503, TEXT, b"not ready: starting or shutting down\n"
        if path == "/metrics.json":
            if self._snapshot is None:
                return 404, TEXT, b"not found\n"
            return 200, b"application/json", json.dumps(self._snapshot()).encode()
        return 200, PROMETHEUS, await self._metrics()
