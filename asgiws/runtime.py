"""Process concerns: the event loop, glibc's allocator, serve(), which runs one Server, and
serve_workers(), which runs a supervisor and its worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import platform
import socket
import sys
from collections.abc import Callable

from .asyncio.server import Server
from .asyncio.sockets import TLSConfigError, describe_address, make_socket, ssl_context
from .config import Config
from .types import ASGIApp

logger = logging.getLogger("asgiws.error")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
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
        factory = loop_factory(config.loop)
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


def serve_workers(app_spec: str, config: Config) -> int:
    """--workers N (N > 1): bind the socket, then run a supervisor and its N worker processes,
    each of which imports ``app_spec`` itself (so that a rolling restart serves new code), until
    SIGTERM or SIGINT. The exit status: 0, 1 (cannot listen, a worker had to be killed or failed
    to shut down), 2 (TLS files), 3 (every worker start failed)."""
    from .supervisor import Supervisor, listen_url

    try:
        tls = ssl_context(config) is not None  # checked once here, not once per worker
    except TLSConfigError as exc:
        logger.error("%s", exc)
        return 2
    try:
        loop_factory(config.loop)
    except ImportError:
        logger.error("--loop uvloop: uvloop is not installed (pip install 'asgiws[fast]')")
        return 1
    try:
        sock = make_socket(config)
    except OSError as exc:
        logger.error("could not listen on %s: %s", describe_address(config), exc.strerror or exc)
        return 1
    supervisor = Supervisor(app_spec, config, sock, listen_url(sock, tls))
    try:
        # The supervisor runs asyncio's own loop: it serves no connection.
        with asyncio.Runner() as runner:
            return runner.run(supervisor.run())
    finally:
        sock.close()
        if config.uds and config.fd is None:
            with contextlib.suppress(OSError):
                os.unlink(config.uds)
