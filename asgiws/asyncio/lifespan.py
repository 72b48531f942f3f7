"""The ASGI lifespan protocol: startup before serving, shutdown after, once per process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any

from ..types import ASGIApp

logger = logging.getLogger("asgiws.error")


class LifespanError(Exception):
    """Startup or shutdown failed; the message says how."""


class Lifespan:
    def __init__(self, app: ASGIApp, mode: str) -> None:
        self.app = app
        self.mode = mode  # "auto", "on" or "off"
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._failure: str | None = None
        # Whether requests get the lifespan state: not with "off", nor once the app has shown
        # it does not speak lifespan ("auto"). An attribute: every connection reads it.
        self.supported = mode != "off"
        self._task: asyncio.Task[None] | None = None
        self.exceptions = 0  # raised by the app's lifespan call (for --metrics-port)

    async def startup(
        self, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> None:
        """Start the app's lifespan call as a task made by ``spawn`` (the server's task group)
        and wait for its startup to complete; LifespanError says how it failed."""
        if self.mode == "off":
            return
        self._task = spawn(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        if self._failure is not None:
            raise LifespanError(f"lifespan startup failed: {self._failure}")

    async def shutdown(self) -> None:
        if self._task is None or not self.supported:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        if self._failure is not None:
            raise LifespanError(f"lifespan shutdown failed: {self._failure}")

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:  # KeyboardInterrupt, SystemExit, cancellation: propagate
            if not self._startup_done.is_set() and self.mode == "auto":
                # 'auto': an app without lifespan support raises on the unknown scope type.
                self.supported = False
                logger.info(
                    "ASGI 'lifespan' protocol appears unsupported (%s: %s)", type(exc).__name__, exc
                )
            else:
                self._failure = f"{type(exc).__name__}: {exc}"
                self.exceptions += 1
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
        else:
            if not self._startup_done.is_set():
                if self.mode == "on":
                    self._failure = "the app returned before completing startup"
                else:
                    self.supported = False
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    def cancel(self) -> None:
        """The server stops without a lifespan shutdown (its startup failed, say)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _receive(self) -> MutableMapping[str, Any]:
        return await self._inbox.get()

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._failure = str(message.get("message") or "lifespan.startup.failed")
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._failure = str(message.get("message") or "lifespan.shutdown.failed")
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected lifespan message type {kind!r}")
