"""The event loop's exception handler while a server runs: one line for running out of file
descriptors, instead of a traceback per refused ``accept()``.

When the process is at its open-file limit, asyncio's own loop reports every failed
``accept()`` (EMFILE, ENFILE, ENOBUFS, ENOMEM) with a traceback, once per queued connection
(Python 3.11 goes on through the whole backlog after the first failure) and again every second
while the limit holds: some 150,000 tracebacks in 10 s were measured here at 10,000 held
connections. It also schedules a restart of accepting that, when the server has closed its
socket meanwhile, fails with "Invalid file descriptor: -1". uvloop does neither (it resets the
new connection and logs nothing).

:class:`LoopErrors` turns the first into one warning every ``REPORT_INTERVAL`` seconds, naming
the error, the limit and how many accepts failed since the last line, and drops the second
once the server is stopping. Every other report goes to the handler that was there before (by
default the loop's own).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

__all__ = ["REPORT_INTERVAL", "LoopErrors"]

logger = logging.getLogger("asgiws.error")

REPORT_INTERVAL = 10.0  # seconds between two "out of file descriptors" lines
_ACCEPT_FAILED = "socket.accept() out of system resource"


class LoopErrors:
    """An ``asyncio`` exception handler, installed for the server's life (it outlives the
    listeners by the second asyncio waits before it retries an accept)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stopping = False  # the server closed its sockets: a late accept restart is moot
        self.failed = 0  # accepts failed since the last line
        self._next_report = 0.0
        self._previous: Any = None

    def install(self) -> None:
        self._previous = self.loop.get_exception_handler()
        self.loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") == _ACCEPT_FAILED and isinstance(exc, OSError):
            self.failed += 1
            now = loop.time()
            if now >= self._next_report:
                self._next_report = now + REPORT_INTERVAL
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                logger.warning(
                    "cannot accept new connections: %s (open files: limit %d, hard limit %d; "
                    "raise it with ulimit -n, systemd LimitNOFILE= or docker run --ulimit "
                    "nofile=); %d accept(s) failed, new connections wait in the backlog",
                    exc.strerror or exc, soft, hard, self.failed,
                )  # fmt: skip
                self.failed = 0
            return
        if self.stopping and _is_late_accept_restart(context):
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


def _is_late_accept_restart(context: dict[str, Any]) -> bool:
    """asyncio's restart of accepting, scheduled after an accept failed, run after the
    listening socket was closed."""
    return isinstance(context.get("exception"), ValueError | OSError) and "_start_serving" in repr(
        context.get("handle")
    )
