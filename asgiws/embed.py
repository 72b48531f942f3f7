"""Embedding: run asgiws inside an event loop you own, as ``asgiws.Server``.

::

    server = asgiws.Server(app, host="127.0.0.1", port=0)
    task = asyncio.create_task(server.serve())
    await server.wait_started()
    print(server.urls)          # ['http://127.0.0.1:54321']
    ...
    await server.shutdown()     # graceful: WebSockets get 1001
    status = await task         # 0

The keyword options are those of :func:`asgiws.run` and of the command line, converted and
checked the same way. Unlike ``run()``, the environment is not read unless asked
(``environ=os.environ``), no signal handler is installed unless asked (``signals=True``), and
logging is left to the host program: asgiws logs to the ``asgiws.error`` and ``asgiws.access``
loggers (:func:`asgiws.logs.configure_logging` sets them up as the command does; ``log_level`` is
otherwise not applied, nor is ``log_config``). ``loop`` and ``malloc_keep`` concern a whole
process and are ignored: the server runs in the running loop. ``env_file`` is read as one more
environment layer, under ``environ``, and not put into ``os.environ``. Several servers can run
in one loop.

This is a thin layer over :class:`asgiws.asyncio.server.Server`, which does the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Mapping
from typing import Any, cast

from .asyncio.server import Server as CoreServer
from .config import Config
from .envfile import check_values, read_env_file
from .importer import import_app
from .options import build_config, convert, env_values, keyword_values, options_by_name
from .types import ASGIApp

__all__ = ["Server", "StartupError"]


class StartupError(RuntimeError):
    """The server could not start: it cannot listen (port in use, permission), a TLS file cannot
    be loaded, or the lifespan startup failed. ``status`` is the exit status the command would
    have returned (1, 2 or 3); the message says what went wrong."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Server:
    """An asgiws server to run in your own event loop.

    ``app`` is an ASGI callable or a ``"module:attribute"`` string (imported now, with the
    ``factory`` and ``app_dir`` options; an import failure raises
    :class:`asgiws.importer.AppImportError`). An unknown option or a value of the wrong type
    raises ``TypeError``, a value out of range ``ValueError``, as :func:`asgiws.run` does.
    ``environ``: a mapping to read ``ASGIWS_*`` variables from (keywords win), for example
    ``os.environ``; by default none is read.
    """

    def __init__(
        self,
        app: Callable[..., Any] | str,
        *,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        given = keyword_values(options, "Server")
        layers: list[Any] = [(given, lambda o: f"Server({o.name}=...)")]
        if environ is not None:
            layers.append((env_values(environ), lambda o: o.env))
        if given.get("env_file") is not None:
            label = "Server(env_file=...)"
            values = read_env_file(given["env_file"], label)
            check_values(values, given["env_file"], label)
            layers.append((env_values(values), lambda o: o.env))
        config = build_config(*layers)
        if config.reload:
            raise ValueError(
                "Server(reload=...): reloading restarts a whole process; use the asgiws "
                "command or asgiws.run() with --reload"
            )
        if options.get("workers", 1) != 1:  # (WEB_CONCURRENCY in ``environ`` is not for it)
            raise ValueError(
                f"Server(workers={config.workers}): a Server runs in one process, in the running "
                "event loop; worker processes are for asgiws.run() and the asgiws command"
            )
        if isinstance(app, str):
            target: ASGIApp = import_app(app, factory=config.factory, app_dir=config.app_dir)
        elif not callable(app):
            raise TypeError(
                f"Server(app=...): expected an ASGI app or a 'module:attribute' string, "
                f"got {type(app).__name__}"
            )
        else:
            target = cast(ASGIApp, app() if config.factory else app)
        self.app = target
        self.config: Config = config
        self._core: CoreServer | None = None
        self._started = asyncio.Event()
        self._finished = asyncio.Event()
        self._error: StartupError | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True once the server listens (and the lifespan startup is done), until it is closed."""
        return self._started.is_set() and not self._finished.is_set()

    @property
    def addresses(self) -> list[tuple[str, int] | str]:
        """Where the server listens: ``(host, port)`` of each TCP socket (the real port when
        ``port=0``), the path of a Unix socket. Empty until started."""
        return list(self._core.addresses) if self._core is not None else []

    @property
    def urls(self) -> list[str]:
        """The URLs of :attr:`addresses`: ``http://127.0.0.1:8000``, ``unix:/run/app.sock``."""
        return list(self._core.bound) if self._core is not None else []

    @property
    def core(self) -> CoreServer | None:
        """The internal server while :meth:`serve` runs (connections, tasks, lifespan state),
        for tests and debugging; not a stable API."""
        return self._core

    # -- running -------------------------------------------------------------------------------

    async def serve(
        self, sockets: list[socket.socket] | None = None, *, signals: bool = False
    ) -> int:
        """Serve until :meth:`shutdown` (or SIGINT/SIGTERM with ``signals=True``: a second one
        cancels what is left; the handlers are removed when it returns) and return the
        exit status: 0 after a clean shutdown, 1 when connections had to be cancelled or the
        lifespan shutdown failed. A failed start raises :class:`StartupError` (and so does
        :meth:`wait_started`). ``sockets``: listening sockets to serve instead of binding
        ``host``/``port``, ``uds`` or ``fd``. A server serves once."""
        if self._core is not None:
            raise RuntimeError("this Server has already been served: create a new one")
        core = self._core = CoreServer(self.app, self.config)
        started = asyncio.ensure_future(core.started.wait())
        started.add_done_callback(lambda f: None if f.cancelled() else self._started.set())
        try:
            status = await core.run(sockets, signals=signals)
        finally:
            started.cancel()
            if signals:
                # Give SIGINT and SIGTERM back to the host program.
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                        core.loop.remove_signal_handler(sig)
            if core.started.is_set():
                self._started.set()
            self._finished.set()
        if not core.started.is_set():
            message = core.startup_error or f"the server did not start (status {status})"
            self._error = StartupError(message, status)
            raise self._error
        return status

    async def wait_started(self) -> None:
        """Wait until the server listens; raise :class:`StartupError` if it failed to start, and
        ``RuntimeError`` if it stopped before starting. Waits for :meth:`serve` to be called."""
        waiters = [
            asyncio.ensure_future(self._started.wait()),
            asyncio.ensure_future(self._finished.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._error is not None:
            raise self._error
        if not self._started.is_set():
            raise RuntimeError("the server stopped before it started")

    async def shutdown(self, code: int | None = None) -> None:
        """Shut down gracefully and wait until done: stop listening, let HTTP requests finish,
        close WebSockets with ``code`` (default ``ws_shutdown_code``, 1001 Going Away; 1012
        tells clients to reconnect), cancel what is left after ``timeout_graceful_shutdown``.
        Nothing to do if the server is not serving."""
        if code is not None:
            code = convert(
                options_by_name()["ws_shutdown_code"], code, "shutdown(code=...)", from_text=False
            )
        core = self._core
        if core is None or self._finished.is_set():
            return
        core.stop(code)
        await self._finished.wait()
