"""asgiws.asyncio.eager: on Python 3.12+, an app task takes its first step inside create_task.

The unit tests drive EagerStart on a real event loop with a real TaskGroup; the server tests
drive what eager starts could break, through real sockets on every Python: a long burst of
pipelined requests (the first steps must not nest), and an app that asks, before its first
await, which task and which async library it runs in (anyio and Starlette ask sniffio)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import sniffio
from apps import TIMEOUT
from wire import http_request

from asgiws.asyncio import eager

needs_eager = pytest.mark.skipif(
    not eager.SUPPORTED, reason="asyncio.Task(eager_start=...) is Python 3.12+"
)


Body = Callable[[eager.EagerStart, asyncio.TaskGroup], Coroutine[Any, Any, None]]


def run_with(body: Body) -> None:
    """``body(starter, group)`` on a fresh loop, with the factory installed around it."""

    async def main() -> None:
        starter = eager.EagerStart(asyncio.get_running_loop())
        starter.install()
        try:
            async with asyncio.TaskGroup() as group:
                await body(starter, group)
        finally:
            starter.uninstall()

    asyncio.run(main())


@needs_eager
def test_the_task_asked_for_takes_its_first_step_inside_create() -> None:
    seen: list[object] = []

    async def app() -> None:
        seen.append(asyncio.current_task())

    async def body(starter: eager.EagerStart, group: asyncio.TaskGroup) -> None:
        task = starter.create(group, app())
        assert task.done()  # it never waited: done before create returned
        assert seen == [task]  # ... and it ran as itself: current_task() is the task

    run_with(body)


@needs_eager
def test_a_task_that_waits_goes_on_as_any_task() -> None:
    steps: list[str] = []

    async def app() -> None:
        steps.append("first")
        await asyncio.sleep(0)
        steps.append("second")

    async def body(starter: eager.EagerStart, group: asyncio.TaskGroup) -> None:
        task = starter.create(group, app())
        assert steps == ["first"] and not task.done()
        await task
        assert steps == ["first", "second"]

    run_with(body)


@needs_eager
def test_tasks_made_during_the_first_step_are_not_eager() -> None:
    steps: list[str] = []

    async def child() -> None:
        steps.append("child")

    async def nested() -> None:
        steps.append("nested")

    async def body(starter: eager.EagerStart, group: asyncio.TaskGroup) -> None:
        async def app() -> None:
            plain = asyncio.get_running_loop().create_task(child())
            inner = starter.create(group, nested())  # a pipelined request's cycle, say
            steps.append("app")
            assert not plain.done() and not inner.done()

        starter.create(group, app())
        assert steps == ["app"]  # neither the app's task nor the nested one has run yet
        await asyncio.sleep(0)
        assert sorted(steps) == ["app", "child", "nested"]
        steps.clear()
        starter.create(group, nested())  # and the next one asked for is eager again
        assert steps == ["nested"]

    run_with(body)


@needs_eager
def test_other_tasks_go_to_the_factory_that_was_there_and_it_comes_back() -> None:
    made: list[Any] = []

    def previous(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def noop() -> None:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(previous)
        starter = eager.EagerStart(loop)
        starter.install()
        assert loop.get_task_factory() is not previous
        async with asyncio.TaskGroup() as group:
            starter.create(group, noop())
            assert made == []  # the eager one is made by EagerStart
            coro = noop()
            await loop.create_task(coro)
            assert made == [coro]
        starter.uninstall()
        assert loop.get_task_factory() is previous

        starter = eager.EagerStart(loop)
        starter.install()
        loop.set_task_factory(None)  # replaced meanwhile: uninstall leaves it
        starter.uninstall()
        assert loop.get_task_factory() is None

    asyncio.run(main())


@needs_eager
def test_system_exit_in_the_first_step_stops_the_loop_and_the_group() -> None:
    cancelled: list[bool] = []

    async def bystander() -> None:
        try:
            await asyncio.sleep(TIMEOUT)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def app() -> None:
        raise SystemExit(3)

    async def body(starter: eager.EagerStart, group: asyncio.TaskGroup) -> None:
        group.create_task(bystander())
        await asyncio.sleep(0)
        failed = starter.create(group, app())  # it does not raise here, in the caller
        assert failed.done() and isinstance(failed.exception(), SystemExit)
        await asyncio.sleep(TIMEOUT)

    with pytest.raises(SystemExit) as info:
        run_with(body)
    assert info.value.code == 3
    assert cancelled == [True]


# -- through the server, on every Python --------------------------------------------------------


async def numbered(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers each request with its target, without ever waiting."""
    await receive()
    body = scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_a_long_pipelined_burst_is_answered_in_order(serve: Any) -> None:
    running = await serve(numbered)
    count = 2000  # well past the recursion limit, were each cycle's first step to nest
    burst = b"".join(http_request(target=f"/{i}") for i in range(count))
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(burst)
        bodies: list[bytes] = []
        async with asyncio.timeout(TIMEOUT):
            while len(bodies) < count:
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                bodies.append(await reader.readexactly(length))
    finally:
        writer.close()
    assert bodies == [f"/{i}".encode() for i in range(count)]


async def test_an_app_finds_its_task_and_library_before_its_first_await(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        body = f"{sniffio.current_async_library()} {task is not None}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    running = await serve(app)
    response = await running.raw(http_request(headers=[("Host", "t"), ("Connection", "close")]))
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\nasyncio True"), response
