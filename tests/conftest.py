"""Shared fixtures: a real asgiws server on 127.0.0.1, port 0, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from apps import serving
from cli_process import Stoppable
from transitions import legal_transitions  # noqa: F401  (autouse, for every test)

import asgiws
from asgiws.asyncio.server import Server as CoreServer


@dataclasses.dataclass
class Running:
    server: asgiws.Server
    host: str
    port: int
    closing: asyncio.Future[None] | None = None

    @property
    def core(self) -> CoreServer:
        """The internal server, for tests of its bookkeeping (connections, tasks, lifespan)."""
        core = self.server.core
        assert core is not None
        return core

    def stop(self, code: int | None = None) -> None:
        """Begin the graceful shutdown (``server.shutdown()`` in a task) without waiting."""
        if self.closing is None:
            self.closing = asyncio.ensure_future(self.server.shutdown(code))

    async def wait_closed(self) -> None:
        """Shut down (if not begun yet) and wait until the server is closed."""
        self.stop()
        assert self.closing is not None
        await self.closing

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def raw(self, data: bytes, *, timeout: float = 5.0) -> bytes:
        """Send raw bytes on a fresh connection and read until the server closes it."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(data)
            return await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    """``await serve(app, **options)`` starts a server; it is shut down after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(app: Any, **options: Any) -> Running:
            options.setdefault("access_log", False)
            options.setdefault("lifespan", "off")
            server = asgiws.Server(app, host="127.0.0.1", port=0, **options)
            await stack.enter_async_context(serving(server))
            (address,) = server.addresses
            assert isinstance(address, tuple)
            return Running(server, *address)

        yield start


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Take away the handlers configure_logging() installs (they hold pytest's capture streams)."""
    import logging

    yield
    for name in ("asgiws", "asgiws.access"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if getattr(handler, "_asgiws_handler", False):
                logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


@pytest.fixture
def servers() -> Iterator[list[Stoppable]]:
    """The subprocesses a test appends (cli_process.ServerProcess and the like): each is
    stopped after the test, whatever it did."""
    started: list[Stoppable] = []
    yield started
    for server in started:
        server.stop()
