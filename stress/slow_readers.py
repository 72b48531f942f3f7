"""Slow readers: S clients ask for a flood (many large messages) and then read nothing, while F
clients echo small messages.

Promised: back-pressure holds the flood (the server's memory grows by no more than a bounded
buffer per slow reader, not by the flood); the echo clients keep getting answers; when the slow
readers finally read, they get every byte.
Usage: python -m stress.slow_readers [--slow 20] [--fast 10] [--seconds 3]
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

from websockets.asyncio.client import connect

from .common import HOST, Server, raise_fd_limit, script, session_problems, summary

MESSAGE = 64 * 1024
COUNT = 200  # 12.5 MiB asked for by each slow reader
ENOUGH_WAIT_S = 60.0  # the longest wait, past --seconds, for 10 answers per echo client


async def slow_reader(port: int, hold: asyncio.Event, received: list[int]) -> None:
    async with connect(f"ws://{HOST}:{port}/", max_size=None, max_queue=1) as ws:
        await ws.send(f"flood:{MESSAGE}:{COUNT}")
        await hold.wait()  # reads nothing until then: TCP and the server must hold back
        total = 0
        for _ in range(COUNT):
            total += len(await asyncio.wait_for(ws.recv(), 60))
        received.append(total)


async def fast_client(
    port: int, until: asyncio.Event, latencies: list[float], enough: asyncio.Event, want: int
) -> None:
    async with connect(f"ws://{HOST}:{port}/") as ws:
        while not until.is_set() and len(latencies) < 1_000_000:
            start = time.monotonic()
            await ws.send("ping")
            await asyncio.wait_for(ws.recv(), 10)
            latencies.append(time.monotonic() - start)
            if len(latencies) >= want:
                enough.set()


async def main(slow: int, fast: int, seconds: float) -> int:
    raise_fd_limit(4 * (slow + fast) + 256)
    server = Server()
    rss_before = server.rss_kib()
    hold, stop_fast, enough = asyncio.Event(), asyncio.Event(), asyncio.Event()
    received: list[int] = []
    latencies: list[float] = []
    slow_tasks = [
        asyncio.create_task(slow_reader(server.port, hold, received)) for _ in range(slow)
    ]
    fast_tasks = [
        asyncio.create_task(fast_client(server.port, stop_fast, latencies, enough, 10 * fast))
        for _ in range(fast)
    ]
    await asyncio.sleep(seconds)  # the flood pushes against the slow readers for this long
    # ... and until the echo clients got answers enough to measure, on a busy machine too.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), ENOUGH_WAIT_S)
    rss_held = server.rss_kib()
    stop_fast.set()
    await asyncio.wait_for(asyncio.gather(*fast_tasks), 30)
    hold.set()
    await asyncio.wait_for(asyncio.gather(*slow_tasks), 120)
    status, report = server.stop()
    growth_mib = (rss_held - rss_before) / 1024
    flood_mib = slow * MESSAGE * COUNT / 2**20
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 1 else 0.0
    problems = session_problems(report, slow + fast)
    if received != [MESSAGE * COUNT] * slow:
        problems.append("a slow reader did not get every byte")
    if growth_mib > max(16.0, flood_mib / 4):
        problems.append(f"memory grew by {growth_mib:.1f} MiB holding {flood_mib:.0f} MiB of flood")
    if not latencies:
        problems.append("the echo clients got no answer")
    return summary(
        f"slow readers: {slow} not reading a {flood_mib / slow:.1f} MiB flood each, server RSS "
        f"+{growth_mib:.1f} MiB while held; {fast} echo clients got {len(latencies)} answers "
        f"meanwhile (p99 {p99:.1f} ms); every flood delivered in full afterwards, exit {status}",
        problems,
        status,
    )


if __name__ == "__main__":
    script(main, __doc__ or "", slow=20, fast=10, seconds=3.0)
