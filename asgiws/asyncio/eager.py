"""App tasks that start eagerly, on Python 3.12 and later.

A request's app task is created in the server's :class:`asyncio.TaskGroup`, and a task normally
takes its first step on a later turn of the loop. Most HTTP apps answer a plain request without
ever waiting (``receive()`` has the body already, ``send()`` has room), so that turn, and the
done callback the group adds to every task still pending when it is created, are the whole of
what the task costs beyond the app itself. Since Python 3.12 a task can start eagerly: its
first step runs inside ``create_task``, and a task group does not schedule a done callback for
a task that finished there. With it, an app that answers without waiting costs the task's
object and nothing else; one that waits goes on as any task does.

``TaskGroup.create_task`` takes no ``eager_start`` before Python 3.14, so the server installs,
for as long as it runs, a task factory on its loop that starts eagerly the one task
:meth:`EagerStart.create` asks for and hands every other task to the factory that was there
before (or makes a plain task). Nothing else on the loop changes: the app's own tasks, and the
server's, start as they always did.

A task created while an eager step runs (a pipelined request whose cycle the first one's end
starts) is not eager: the first steps never nest, so a burst of pipelined requests cannot
recurse.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

# Whether this Python's tasks can start eagerly (asyncio.Task's eager_start, 3.12).
SUPPORTED = sys.version_info >= (3, 12)

TaskFactory = Callable[..., "asyncio.Future[Any]"]


class EagerStart:
    """The loop's task factory while a server runs (see the module docstring)."""

    __slots__ = ("_loop", "_next", "_previous", "_running")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous: TaskFactory | None = None
        self._next = False  # the next task the factory makes starts eagerly
        self._running = False  # an eager first step is running

    def install(self) -> None:
        self._previous = self._loop.get_task_factory()
        self._loop.set_task_factory(self._factory)  # type: ignore[arg-type,unused-ignore]

    def uninstall(self) -> None:
        """Put the previous factory back, unless someone has replaced ours meanwhile."""
        if self._loop.get_task_factory() == self._factory:
            self._loop.set_task_factory(self._previous)

    def create(
        self, group: asyncio.TaskGroup, coro: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """``group.create_task(coro)``, the task started eagerly unless one is starting."""
        if self._running:
            return group.create_task(coro)
        self._next = self._running = True
        try:
            return group.create_task(coro)
        finally:
            self._next = self._running = False

    def _factory(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        if self._next:
            self._next = False  # the tasks the app creates in its first step are not eager
            kwargs["eager_start"] = True  # (uvloop on 3.13 passes its own, None)
            try:
                return asyncio.Task(coro, loop=loop, **kwargs)
            except (KeyboardInterrupt, SystemExit) as exc:
                # A task's step lets these out of the loop, which stops; an eager step lets
                # them out of create_task, here, inside a protocol callback that would take
                # them for the transport's error. So both things a task's step does happen:
                # the group gets a task that failed with it (and cancels the rest), and the
                # loop, on its next turn, lets it out.
                failed = loop.create_future()
                failed.set_exception(exc)
                loop.call_soon(_raise, exc)
                return failed
        if self._previous is not None:
            return self._previous(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)


def _raise(exc: BaseException) -> None:
    raise exc
