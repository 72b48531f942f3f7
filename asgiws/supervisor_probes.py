"""``--metrics-port`` under ``--workers``: the supervisor serves the port, and each scrape adds up
what the workers say at that moment.

Each worker serves its own probe listener on a free port of 127.0.0.1 (it says which with its
``ready`` message), whose ``/metrics.json`` is the worker's :meth:`asgiws.metrics.Metrics.snapshot`.
A scrape of the supervisor's ``/metrics`` fetches every serving or draining worker's snapshot at
once and renders their sum (:func:`asgiws.metrics.merge`), with a ``worker`` label on the
per-worker figures; so the totals are exact at the time of the scrape, with no shared files and
no state in the supervisor beyond the restart count. A worker that does not answer within
FETCH_TIMEOUT_S (its loop is blocked) is left out of that scrape; the figures of a worker that
exited leave the totals with it (Prometheus's ``rate()`` reads a drop as a counter reset).

``/ready`` is 200 while at least one worker is ready and the supervisor is not stopping;
``/live`` answers from the supervisor's loop (the supervisor's health check restarts a worker
whose loop is blocked: --timeout-worker-healthcheck).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from .asyncio.probes import ProbeServer
from .metrics import merge, render

logger = logging.getLogger("asgiws.error")

# How long a scrape waits for one worker's figures.
FETCH_TIMEOUT_S = 2.0
# The largest /metrics.json read from a worker.
MAX_SNAPSHOT = 1024 * 1024


async def fetch_snapshot(port: int) -> dict[str, Any]:
    """A worker's /metrics.json (OSError, TimeoutError or ValueError when it cannot be had)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics.json HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        response = await reader.read(MAX_SNAPSHOT)
        while True:
            more = await reader.read(MAX_SNAPSHOT)
            if not more or len(response) > MAX_SNAPSHOT:
                break
            response += more
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise ValueError(f"the worker answered {head[:40]!r}")
    snapshot = json.loads(body)
    if not isinstance(snapshot, dict):
        raise ValueError("the worker's /metrics.json is not an object")
    return snapshot


class SupervisorProbes:
    """The supervisor's probe listener. ``workers()`` gives ``(worker label, probe port)`` of
    the workers to scrape, ``ready()`` whether /ready is 200, ``restarts()`` the restart
    count."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        workers: Callable[[], Iterable[tuple[str, int]]],
        ready: Callable[[], bool],
        restarts: Callable[[], int],
    ) -> None:
        self._workers = workers
        self._restarts = restarts
        self.server = ProbeServer(host, port, metrics=self.text, ready=ready)

    async def start(self) -> None:
        await self.server.start()

    def close(self) -> None:
        self.server.close()

    async def text(self) -> bytes:
        workers = list(self._workers())

        async def one(port: int) -> dict[str, Any] | None:
            try:
                return await asyncio.wait_for(fetch_snapshot(port), FETCH_TIMEOUT_S)
            except (OSError, TimeoutError, ValueError) as exc:
                logger.debug("no metrics from the worker on port %d: %s", port, exc)
                return None

        snapshots = await asyncio.gather(*(one(port) for _, port in workers))
        found = {label: s for (label, _), s in zip(workers, snapshots, strict=True) if s}
        return render(merge(found), self._restarts())
