"""The supervisor of --workers run in the test process (its worker processes are real), so that
its bookkeeping is seen line by line: recycling, replacement, the health check, a rolling
restart and one abandoned, one worker more and fewer, giving up. tests/test_workers.py drives
the same through the command."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_workers import APP
from wire import ws_request

from asgiws.asyncio.sockets import make_socket
from asgiws.options import build_config
from asgiws.supervisor import Supervisor, exit_text, listen_url

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class LogWatch(logging.Handler):
    """The supervisor's log messages, and a wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.changed.set()

    def matches(self, pattern: str) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        return [m for m in map(regex.search, self.messages) if m is not None]

    async def wait_for(self, pattern: str, count: int = 1, timeout: float = 90) -> re.Match[str]:
        """The ``count``-th message matching ``pattern``."""
        async with asyncio.timeout(timeout):
            while len(found := self.matches(pattern)) < count:
                self.changed.clear()
                await self.changed.wait()
        return found[count - 1]


@pytest.fixture
def watch() -> Iterator[LogWatch]:
    logger = logging.getLogger("asgiws.error")
    handler = LogWatch()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
async def supervise(tmp_path: Path) -> AsyncIterator[Any]:
    """``supervise(**options)``: a Supervisor serving tests/test_workers.py's app, running."""
    (tmp_path / "pidapp.py").write_text(APP, encoding="utf-8")
    running: list[asyncio.Task[int]] = []

    def start(app: str = "pidapp:app", **options: Any) -> tuple[Supervisor, asyncio.Task[int]]:
        values = {"port": 0, "app_dir": str(tmp_path), "access_log": False, **options}
        config = build_config((values, lambda o: o.flag))
        sock = make_socket(config)
        supervisor = Supervisor(app, config, sock, listen_url(sock, False))
        task = asyncio.create_task(supervisor.run())
        task.add_done_callback(lambda _: sock.close())
        running.append(task)
        return supervisor, task

    yield start
    for task in running:
        if not task.done():
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the supervisor's loop handler
            await asyncio.wait_for(task, 60)


async def fetch(port: int, path: str = "/") -> bytes:
    """The whole answer to one request on its own connection (b"" when it was cut)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def get(port: int, path: str = "/") -> int:
    data = await fetch(port, path)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return int(body)


async def answering(port: int, wanted: set[int]) -> set[int]:
    seen: set[int] = set()
    for _ in range(500):
        seen.add(await get(port))
        if wanted <= seen:
            break
    return seen


def serving(supervisor: Supervisor) -> set[int]:
    return {w.pid for w in supervisor.workers.values() if w.state == "ready"}


async def until(watch: LogWatch, done: Callable[[], bool], timeout: float = 90) -> None:
    """Wait until ``done()``: the supervisor logs a line at every change of its workers."""
    async with asyncio.timeout(timeout):
        while not done():
            watch.changed.clear()
            await watch.changed.wait()


async def test_replacing_recycling_scaling_and_restarting(
    supervise: Any, watch: LogWatch, tmp_path: Path
) -> None:
    # Each step waits for the state it leads to, never for a count of log lines: on a loaded
    # machine the steps' log lines may come in another order than here.
    supervisor, task = supervise(workers=2, timeout_worker_healthcheck=2, limit_max_requests=300)
    await watch.wait_for(r"running on http://127\.0\.0\.1:\d+ with 2 workers")
    port = supervisor.sock.getsockname()[1]
    first = serving(supervisor)
    assert len(first) == 2
    assert await answering(port, first) == first

    def two_serving_without(*gone: int) -> Callable[[], bool]:
        return lambda: len(serving(supervisor)) == 2 and not set(gone) & set(supervisor.workers)

    # kill -9: replaced, not a failed start.
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    await watch.wait_for(rf"\(pid {victim}\) died \(killed by SIGKILL\); starting a replacement")
    await until(watch, two_serving_without(victim))
    assert supervisor.failures == []

    # A blocked event loop: killed after --timeout-worker-healthcheck, replaced.
    blocking = asyncio.create_task(fetch(port, "/block"))
    killed = await watch.wait_for(
        r"\(pid (\d+)\): it did not answer within 2 s \(--timeout-worker-healthcheck\)"
    )
    assert await blocking == b""  # the connection was cut, no answer
    await until(watch, two_serving_without(victim, int(killed[1])))

    # --limit-max-requests: recycled through the drain, replaced at once.
    for _ in range(1000):
        if watch.matches(r"reached --limit-max-requests"):
            break
        await get(port)
    recycled = await watch.wait_for(
        r"\(pid (\d+)\) reached --limit-max-requests: draining, starting another"
    )
    await until(watch, two_serving_without(int(recycled[1])))
    await watch.wait_for(rf"\(pid {recycled[1]}\) exited \(exit status 0\)")

    # One more, one fewer.
    os.kill(os.getpid(), signal.SIGTTIN)
    await watch.wait_for(r"received SIGTTIN: 3 workers")
    await until(watch, lambda: len(serving(supervisor)) == 3)
    os.kill(os.getpid(), signal.SIGTTOU)
    await watch.wait_for(r"one worker fewer, draining it")
    await until(watch, lambda: len(supervisor.workers) == 2 and len(serving(supervisor)) == 2)

    # A rolling restart: all new pids.
    old = serving(supervisor)
    os.kill(os.getpid(), signal.SIGHUP)
    await watch.wait_for(r"rolling restart done: 2 workers serving")
    await until(watch, two_serving_without(*old))  # drained: until then one may still accept
    new = serving(supervisor)
    for pid in old:
        await watch.wait_for(rf"\(pid {pid}\) exited \(exit status 0\)")
    assert await answering(port, new) == new

    # A rolling restart onto code that cannot be imported: abandoned, the old workers serve on.
    (tmp_path / "pidapp.py").write_text("raise RuntimeError('a broken deploy')\n")
    os.kill(os.getpid(), signal.SIGHUP)
    await watch.wait_for(
        r"rolling restart abandoned: worker \d+ \(pid \d+\) failed to start: error while "
        r"importing module 'pidapp': RuntimeError: a broken deploy; the old workers keep serving"
    )
    assert await answering(port, new) == new
    await until(watch, lambda: serving(supervisor) == new and len(supervisor.workers) == 2)

    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 60) == 0
    await watch.wait_for(r"received SIGTERM: stopping 2 workers")


async def test_every_start_failing_the_same_way_gives_up(supervise: Any, watch: LogWatch) -> None:
    supervisor, task = supervise("pidapp:missing", workers=2)
    assert await asyncio.wait_for(task, 90) == 3
    failed = watch.matches(r"failed to start: module 'pidapp' has no attribute 'missing'")
    assert len(failed) == 4
    assert [m[1] for m in watch.matches(r"starting another in (\S+) s")] == [
        "0.25",
        "0.5",
        "1",
        "2",
    ]
    assert watch.matches(r"giving up: the last 5 worker starts failed the same way")
    assert supervisor.workers == {}


def test_exit_texts() -> None:
    assert exit_text(0) == "exit status 0"
    assert exit_text(3) == "exit status 3"
    assert exit_text(-9) == "killed by SIGKILL"
    assert exit_text(-200) == "killed by signal 200"


async def test_a_second_sigterm_forces_and_nothing_starts_while_stopping(
    supervise: Any, watch: LogWatch
) -> None:
    supervisor, task = supervise(workers=2, timeout_graceful_shutdown=300, ws_close_timeout=300)
    await watch.wait_for(r"running on http://127\.0\.0\.1:\d+ with 2 workers")
    # A WebSocket whose client never answers the server's Close: its worker waits.
    reader, writer = await asyncio.open_connection("127.0.0.1", supervisor.sock.getsockname()[1])
    writer.write(ws_request("/ws"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 101 ")
    await asyncio.wait_for(reader.readexactly(2), 30)  # the pid's text frame has begun
    os.kill(os.getpid(), signal.SIGTERM)
    await watch.wait_for(r"received SIGTERM: stopping 2 workers")
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):  # ignored while stopping
        os.kill(os.getpid(), sig)
    os.kill(os.getpid(), signal.SIGTERM)
    await watch.wait_for(r"received SIGTERM again: forcing the workers to exit")
    os.kill(os.getpid(), signal.SIGTERM)  # a third: nothing more to do
    assert await asyncio.wait_for(task, 60) == 1  # that worker's exit was forced
    assert not watch.matches(r"rolling restart|received SIGTT")
    writer.close()
